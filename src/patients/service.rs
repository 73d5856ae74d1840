//! Patient rules and all database access of the domain.
use chrono::{NaiveDate, Utc};
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::types::*;
use crate::access::{self, AdminOnly, Demographics, PatientScope, Viewer, WriteScope};
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::{care_team, idempotency_keys, patients};

pub const TABLE: &str = "patients";

/// Validated demographics for a new patient.
#[derive(Clone, serde::Serialize)]
pub struct NewPatient {
    pub mrn: Option<String>,
    pub given_name: String,
    pub middle_name: Option<String>,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex_at_birth: SexAtBirth,
    pub gender_identity: GenderIdentity,
    pub gender_identity_other: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub emergency_contact: Option<EmergencyContact>,
    pub ssn: Option<String>,
    pub preferred_language: Option<String>,
    pub consent_to_contact: bool,
}

/// A partial update: `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Clone, Default)]
pub struct PatientChanges {
    pub given_name: Option<String>,
    pub middle_name: Option<Option<String>>,
    pub family_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub sex_at_birth: Option<SexAtBirth>,
    pub gender_identity: Option<(GenderIdentity, Option<String>)>,
    pub email: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub address: Option<Option<Address>>,
    pub emergency_contact: Option<Option<EmergencyContact>>,
    pub ssn: Option<Option<String>>,
    pub preferred_language: Option<Option<String>>,
    pub consent_to_contact: Option<bool>,
}

impl PatientChanges {
    /// Does this update touch identity fields (names, birth date, sex at birth, SSN), which
    /// only staff may correct?
    pub fn touches_identity(&self) -> bool {
        self.given_name.is_some()
            || self.middle_name.is_some()
            || self.family_name.is_some()
            || self.birth_date.is_some()
            || self.sex_at_birth.is_some()
            || self.ssn.is_some()
    }

    /// Names of the fields this update touches (for the audit row; no values).
    pub fn field_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! f { ($($n:ident => $s:literal),*) => { $( if self.$n.is_some() { v.push($s) } )* } }
        f!(given_name => "givenName", middle_name => "middleName", family_name => "familyName",
           birth_date => "birthDate", sex_at_birth => "sexAtBirth", gender_identity => "genderIdentity",
           email => "email", phone => "phone", address => "address", emergency_contact => "emergencyContact",
           ssn => "ssn", preferred_language => "preferredLanguage", consent_to_contact => "consentToContact");
        v
    }
}

/// Filters on `patients(...)`; exact matches through blind indexes.
#[derive(Clone, Default)]
pub struct PatientFilter {
    pub family_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub mrn: Option<String>,
    pub include_archived: bool,
}

crate::redacted_debug!(NewPatient, PatientChanges, PatientFilter);

pub struct Bidx<'a>(pub &'a KeyRing);

impl Bidx<'_> {
    pub fn family_name(&self, v: &str) -> Vec<u8> {
        self.0
            .blind_index(TABLE, "family_name", &name_index_form(v))
    }
    pub fn birth_date(&self, d: NaiveDate) -> Vec<u8> {
        self.0.blind_index(TABLE, "birth_date", &d.to_string())
    }
    pub fn email(&self, v: &str) -> Vec<u8> {
        self.0.blind_index(TABLE, "email", v)
    }
    pub fn phone(&self, v: &str) -> Vec<u8> {
        self.0.blind_index(TABLE, "phone", v)
    }
    pub fn mrn(&self, v: &str) -> Vec<u8> {
        self.0.blind_index(TABLE, "mrn", v)
    }
}

fn seal(keys: &KeyRing, id: &Uuid, column: &'static str, v: &str) -> AppResult<Vec<u8>> {
    keys.seal_str(
        Slot {
            table: TABLE,
            column,
            row: id,
        },
        v,
    )
}

fn seal_json<T: serde::Serialize>(
    keys: &KeyRing,
    id: &Uuid,
    column: &'static str,
    v: &T,
) -> AppResult<Vec<u8>> {
    let json = serde_json::to_vec(v).map_err(AppError::internal)?;
    keys.seal(
        Slot {
            table: TABLE,
            column,
            row: id,
        },
        &json,
    )
}

fn generate_mrn() -> String {
    format!(
        "CG{:010}",
        rand::thread_rng().gen_range(0..10_000_000_000u64)
    )
}

/// The encrypted row for a new patient (used by the API and by bulk seeding alike).
pub fn build_row(
    keys: &KeyRing,
    id: Uuid,
    p: &NewPatient,
    created_by: Option<Uuid>,
) -> AppResult<patients::ActiveModel> {
    let now = Utc::now();
    let b = Bidx(keys);
    let mrn = p.mrn.clone().unwrap_or_else(generate_mrn);
    let opt = |col, v: &Option<String>| -> AppResult<Option<Vec<u8>>> {
        v.as_deref().map(|s| seal(keys, &id, col, s)).transpose()
    };
    Ok(patients::ActiveModel {
        id: Set(id),
        mrn_enc: Set(seal(keys, &id, "mrn", &mrn)?),
        mrn_bidx: Set(b.mrn(&mrn)),
        given_name_enc: Set(seal(keys, &id, "given_name", &p.given_name)?),
        middle_name_enc: Set(opt("middle_name", &p.middle_name)?),
        family_name_enc: Set(seal(keys, &id, "family_name", &p.family_name)?),
        family_name_bidx: Set(b.family_name(&p.family_name)),
        birth_date_enc: Set(seal(keys, &id, "birth_date", &p.birth_date.to_string())?),
        birth_date_bidx: Set(b.birth_date(p.birth_date)),
        sex_at_birth: Set(String::new()),
        gender_identity: Set(String::new()),
        sex_at_birth_enc: Set(Some(seal(
            keys,
            &id,
            "sex_at_birth",
            p.sex_at_birth.as_str(),
        )?)),
        gender_identity_enc: Set(Some(seal(
            keys,
            &id,
            "gender_identity",
            p.gender_identity.as_str(),
        )?)),
        gender_identity_other_enc: Set(opt("gender_identity_other", &p.gender_identity_other)?),
        email_enc: Set(opt("email", &p.email)?),
        email_bidx: Set(p.email.as_deref().map(|e| b.email(e))),
        phone_enc: Set(opt("phone", &p.phone)?),
        phone_bidx: Set(p.phone.as_deref().map(|e| b.phone(e))),
        address_enc: Set(p
            .address
            .as_ref()
            .map(|a| seal_json(keys, &id, "address", a))
            .transpose()?),
        emergency_contact_enc: Set(p
            .emergency_contact
            .as_ref()
            .map(|c| seal_json(keys, &id, "emergency_contact", c))
            .transpose()?),
        ssn_enc: Set(opt("ssn", &p.ssn)?),
        ssn_last4_enc: Set(opt(
            "ssn_last4",
            &p.ssn.as_ref().map(|s| s[s.len() - 4..].to_owned()),
        )?),
        preferred_language: Set(p.preferred_language.clone()),
        consent_to_contact: Set(p.consent_to_contact),
        version: Set(1),
        created_by: Set(created_by),
        created_at: Set(now),
        updated_at: Set(now),
        archived_at: Set(None),
        archive_reason_enc: Set(None),
    })
}

/// Keyed (HMAC) fingerprint of the request: an unkeyed hash of demographics would let
/// anyone holding a dump confirm guessed values, SSN included.
fn request_hash(keys: &KeyRing, p: &NewPatient) -> AppResult<Vec<u8>> {
    let json = serde_json::to_string(p).map_err(AppError::internal)?;
    Ok(keys.blind_index("idempotency_keys", "request", &json))
}

/// The client's idempotency key is stored keyed-hashed too: clients may put anything in it.
fn stored_key(keys: &KeyRing, key: &str) -> String {
    hex::encode(keys.blind_index("idempotency_keys", "key", key))
}

/// A fresh MRN no other patient has. Runs inside a `WriteTxn`, which serialises writers, so
/// the check cannot race another insert.
async fn unused_mrn(keys: &KeyRing, db: &impl ConnectionTrait) -> AppResult<String> {
    for _ in 0..20 {
        let mrn = generate_mrn();
        if !mrn_taken(keys, db, &mrn).await? {
            return Ok(mrn);
        }
    }
    Err(AppError::internal_msg("could not find a free MRN"))
}

async fn mrn_taken(keys: &KeyRing, db: &impl ConnectionTrait, mrn: &str) -> AppResult<bool> {
    any_patient(db, patients::Column::MrnBidx.eq(Bidx(keys).mrn(mrn))).await
}

/// Whether any patient row matches, visible or not (uniqueness checks and ADMIN paths only;
/// never used to answer anyone else).
async fn any_patient(
    db: &impl ConnectionTrait,
    condition: impl sea_orm::sea_query::IntoCondition,
) -> AppResult<bool> {
    Ok(patients::Entity::find()
        .filter(condition)
        .select_only()
        .column(patients::Column::Id)
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .is_some())
}

/// Create a patient, in the caller's transaction. The same idempotency key with the same
/// input returns the first result; with a different input it is CONFLICT. A PROVIDER who
/// registers a patient joins their care team.
pub async fn create(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    _registration: &access::Registration,
    mut input: NewPatient,
    idempotency_key: Option<&str>,
) -> AppResult<patients::Model> {
    if input.mrn.is_some() {
        access::may_assign_mrn(viewer)?;
    }
    let hash = request_hash(keys, &input)?;
    let key = idempotency_key.map(|k| stored_key(keys, k));
    if let Some(key) = &key {
        let prior = idempotency_keys::Entity::find_by_id((viewer.user_id, key.clone()))
            .one(tx.conn())
            .await?;
        if let Some(prior) = prior {
            if prior.operation != "createPatient" || prior.request_hash != hash {
                return Err(AppError::Conflict(
                    "this idempotency key was already used with a different input; use a new key",
                ));
            }
            // A replay is a read of the patient: visible rows only, and audited.
            let row = find_visible(tx.conn(), viewer, prior.resource_id)
                .await?
                .ok_or(AppError::NotFound)?;
            tx.audit(
                AuditEvent::by(viewer, "patient.read", "patient")
                    .patient(row.id)
                    .resource(row.id.to_string())
                    .detail(serde_json::json!({ "idempotentReplay": true })),
            );
            return Ok(row);
        }
    }
    match &input.mrn {
        Some(mrn) if mrn_taken(keys, tx.conn(), mrn).await? => {
            return Err(AppError::Conflict("a patient with this MRN already exists"));
        }
        Some(_) => {}
        None => input.mrn = Some(unused_mrn(keys, tx.conn()).await?),
    }
    let id = Uuid::new_v4();
    let row = build_row(keys, id, &input, Some(viewer.user_id))?;
    patients::Entity::insert(row)
        .exec_without_returning(tx.conn())
        .await?;
    if let Some(provider) = viewer
        .provider_id
        .filter(|_| viewer.role == access::Role::Provider)
    {
        care_team::Entity::insert(care_team::ActiveModel {
            patient_id: Set(id),
            provider_id: Set(provider),
            assigned_by: Set(Some(viewer.user_id)),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(tx.conn())
        .await?;
    }
    if let Some(key) = key {
        idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            actor_id: Set(viewer.user_id),
            key: Set(key),
            operation: Set("createPatient".into()),
            request_hash: Set(hash),
            resource_id: Set(id),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(tx.conn())
        .await?;
    }
    tx.audit(
        AuditEvent::by(viewer, "patient.create", "patient")
            .patient(id)
            .resource(id.to_string()),
    );
    let created = patients::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(created)
}

/// Load one patient the viewer may see (archived ones only for ADMIN). `None` both when it
/// does not exist and when the viewer may not see it.
pub async fn find_visible(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<patients::Model>> {
    let mut q = patients::Entity::find_by_id(id).filter(access::visible_patients(viewer)?);
    if viewer.role != access::Role::Admin {
        q = q.filter(patients::Column::ArchivedAt.is_null());
    }
    Ok(q.one(db).await?)
}

fn filter_condition(keys: &KeyRing, f: &PatientFilter) -> AppResult<Condition> {
    let b = Bidx(keys);
    let mut c = Condition::all();
    if let Some(n) = &f.family_name {
        c = c
            .add(patients::Column::FamilyNameBidx.eq(b.family_name(&parse_name("familyName", n)?)));
    }
    if let Some(d) = f.birth_date {
        c = c.add(patients::Column::BirthDateBidx.eq(b.birth_date(d)));
    }
    if let Some(e) = &f.email {
        c = c.add(patients::Column::EmailBidx.eq(b.email(&parse_email(e)?)));
    }
    if let Some(p) = &f.phone {
        c = c.add(patients::Column::PhoneBidx.eq(b.phone(&parse_phone("phone", p)?)));
    }
    if let Some(m) = &f.mrn {
        c = c.add(patients::Column::MrnBidx.eq(b.mrn(&parse_mrn(m)?)));
    }
    Ok(c)
}

pub struct Page {
    pub rows: Vec<patients::Model>,
    pub has_next: bool,
    pub total: u64,
}

/// One page of the patients the viewer may see, ordered by id, after the cursor id.
pub async fn list(
    state: &AppState,
    viewer: &Viewer,
    filter: &PatientFilter,
    first: u64,
    after: Option<Uuid>,
    want_total: bool,
) -> AppResult<Page> {
    let mut base = patients::Entity::find()
        .filter(access::visible_patients(viewer)?)
        .filter(filter_condition(&state.keys, filter)?);
    if !(filter.include_archived && viewer.role == access::Role::Admin) {
        base = base.filter(patients::Column::ArchivedAt.is_null());
    }
    let total = if want_total {
        base.clone().count(&state.db).await?
    } else {
        0
    };
    let mut q = base.order_by_asc(patients::Column::Id).limit(first + 1);
    if let Some(a) = after {
        q = q.filter(patients::Column::Id.gt(a));
    }
    let mut rows = q.all(&state.db).await?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(Page {
        rows,
        has_next,
        total,
    })
}

/// Apply `changes` when the stored version is `expected_version`; CONFLICT (and nothing
/// changed) when it is stale.
pub async fn update(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    scope: &WriteScope<Demographics>,
    expected_version: i32,
    changes: PatientChanges,
) -> AppResult<patients::Model> {
    let id = scope.patient_id();
    let b = Bidx(keys);
    let mut am = patients::ActiveModel {
        ..Default::default()
    };
    if let Some(v) = &changes.given_name {
        am.given_name_enc = Set(seal(keys, &id, "given_name", v)?);
    }
    if let Some(v) = &changes.middle_name {
        am.middle_name_enc = Set(v
            .as_deref()
            .map(|s| seal(keys, &id, "middle_name", s))
            .transpose()?);
    }
    if let Some(v) = &changes.family_name {
        am.family_name_enc = Set(seal(keys, &id, "family_name", v)?);
        am.family_name_bidx = Set(b.family_name(v));
    }
    if let Some(d) = changes.birth_date {
        am.birth_date_enc = Set(seal(keys, &id, "birth_date", &d.to_string())?);
        am.birth_date_bidx = Set(b.birth_date(d));
    }
    if let Some(s) = changes.sex_at_birth {
        am.sex_at_birth = Set(String::new());
        am.sex_at_birth_enc = Set(Some(seal(keys, &id, "sex_at_birth", s.as_str())?));
    }
    if let Some((g, other)) = &changes.gender_identity {
        am.gender_identity = Set(String::new());
        am.gender_identity_enc = Set(Some(seal(keys, &id, "gender_identity", g.as_str())?));
        am.gender_identity_other_enc = Set(other
            .as_deref()
            .map(|s| seal(keys, &id, "gender_identity_other", s))
            .transpose()?);
    }
    if let Some(v) = &changes.email {
        am.email_enc = Set(v
            .as_deref()
            .map(|s| seal(keys, &id, "email", s))
            .transpose()?);
        am.email_bidx = Set(v.as_deref().map(|s| b.email(s)));
    }
    if let Some(v) = &changes.phone {
        am.phone_enc = Set(v
            .as_deref()
            .map(|s| seal(keys, &id, "phone", s))
            .transpose()?);
        am.phone_bidx = Set(v.as_deref().map(|s| b.phone(s)));
    }
    if let Some(v) = &changes.address {
        am.address_enc = Set(v
            .as_ref()
            .map(|a| seal_json(keys, &id, "address", a))
            .transpose()?);
    }
    if let Some(v) = &changes.emergency_contact {
        am.emergency_contact_enc = Set(v
            .as_ref()
            .map(|c| seal_json(keys, &id, "emergency_contact", c))
            .transpose()?);
    }
    if let Some(v) = &changes.ssn {
        am.ssn_enc = Set(v
            .as_deref()
            .map(|s| seal(keys, &id, "ssn", s))
            .transpose()?);
        am.ssn_last4_enc = Set(v
            .as_deref()
            .map(|s| seal(keys, &id, "ssn_last4", &s[s.len() - 4..]))
            .transpose()?);
    }
    if let Some(v) = &changes.preferred_language {
        am.preferred_language = Set(v.clone());
    }
    if let Some(v) = changes.consent_to_contact {
        am.consent_to_contact = Set(v);
    }
    am.updated_at = Set(Utc::now());
    am.version = Set(expected_version + 1);

    let res = patients::Entity::update_many()
        .set(am)
        .filter(patients::Column::Id.eq(id))
        .filter(patients::Column::Version.eq(expected_version))
        .exec(tx.conn())
        .await?;
    if res.rows_affected == 0 {
        return Err(AppError::Conflict(
            "the patient was changed by someone else; reload it and apply your change to the current version",
        ));
    }
    tx.audit(
        AuditEvent::by(viewer, "patient.update", "patient")
            .scope(scope)
            .resource(id.to_string())
            .detail(serde_json::json!({ "fields": changes.field_names() })),
    );
    let row = patients::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row)
}

/// Soft-archive (ADMIN) with a reason, or restore, in the caller's transaction.
pub async fn set_archived(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    scope: &PatientScope<AdminOnly>,
    reason: Option<&str>,
) -> AppResult<patients::Model> {
    let id = scope.patient_id();
    let row = patients::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    let archiving = reason.is_some();
    if archiving == row.archived_at.is_some() {
        return Err(AppError::Conflict(if archiving {
            "the patient is already archived"
        } else {
            "the patient is not archived"
        }));
    }
    let reason_enc = reason
        .map(|r| seal(keys, &id, "archive_reason", r))
        .transpose()?;
    patients::Entity::update_many()
        .col_expr(
            patients::Column::ArchivedAt,
            Expr::value(if archiving { Some(Utc::now()) } else { None }),
        )
        .col_expr(patients::Column::ArchiveReasonEnc, Expr::value(reason_enc))
        .col_expr(
            patients::Column::Version,
            Expr::col(patients::Column::Version).add(1),
        )
        .col_expr(patients::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(patients::Column::Id.eq(id))
        .exec(tx.conn())
        .await?;
    let action = if archiving {
        "patient.archive"
    } else {
        "patient.restore"
    };
    tx.audit(
        AuditEvent::by(viewer, action, "patient")
            .scope(scope)
            .resource(id.to_string()),
    );
    let row = patients::Entity::find_by_id(id)
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row)
}

/// Whether a patient row exists at all (ADMIN paths only; never used to answer others).
pub async fn exists(db: &impl ConnectionTrait, id: Uuid) -> AppResult<bool> {
    any_patient(db, patients::Column::Id.eq(id)).await
}

/// Seal the sex at birth and gender identity of rows written before they were encrypted
/// (migration m20261201_150000), and empty the old plaintext columns, in one transaction
/// with one audit row. Run at start-up; a database without such rows costs one query.
pub async fn seal_legacy_sex_and_gender(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
) -> AppResult<usize> {
    let rows: Vec<(Uuid, String, String)> = patients::Entity::find()
        .filter(patients::Column::SexAtBirthEnc.is_null())
        .select_only()
        .column(patients::Column::Id)
        .column(patients::Column::SexAtBirth)
        .column(patients::Column::GenderIdentity)
        .into_tuple()
        .all(db)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut tx = WriteTxn::begin(db).await?;
    for (id, sex, gender) in &rows {
        patients::Entity::update_many()
            .set(patients::ActiveModel {
                sex_at_birth: Set(String::new()),
                gender_identity: Set(String::new()),
                sex_at_birth_enc: Set(Some(seal(keys, id, "sex_at_birth", sex)?)),
                gender_identity_enc: Set(Some(seal(keys, id, "gender_identity", gender)?)),
                ..Default::default()
            })
            .filter(patients::Column::Id.eq(*id))
            .exec(tx.conn())
            .await?;
    }
    tx.audit(
        AuditEvent::new("patients.seal_sex_gender", "system")
            .detail(serde_json::json!({ "sealed": rows.len() })),
    );
    tx.commit().await?;
    Ok(rows.len())
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn phi_types_print_no_values() {
        let f = PatientFilter {
            family_name: Some("Secretson".into()),
            email: Some("secret@example.test".into()),
            ..PatientFilter::default()
        };
        let c = PatientChanges {
            ssn: Some(Some("123-45-6789".into())),
            address: Some(Some(Address {
                line1: Some("1 Secret Lane".into()),
                ..Address::default()
            })),
            ..PatientChanges::default()
        };
        let printed = format!("{f:?} {c:?} {:?}", c.address);
        assert_eq!(
            printed,
            "PatientFilter { .. } PatientChanges { .. } Some(Some(Address { .. }))"
        );
    }
}
