//! The one access policy: who may do what to which patient's data.
//!
//! Guards and services ask here and nowhere else. A granted check hands out a
//! [`PatientScope`], which services that touch a patient's data require, so an unchecked
//! call does not compile. The same decision also exists as a SQL condition
//! ([`visible_patients`]) so lists, counts and cursors only ever see what a single read may.
//!
//! Every scope is decided in the same order: first whether the viewer may see the patient
//! at all (NOT_FOUND otherwise, archived patients included), then role, care team and
//! break-glass, and consent last. Writes to demographics and clinical data need a
//! [`WriteScope`], which no break-glass grant yields: emergency access is read-only by type.
pub mod billing;
mod consent_scope;
pub mod graphql;
pub mod history;
pub mod messaging;
pub mod reads;
pub mod schedule;
pub mod service;
pub mod shares;

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Utc;
use sea_orm::sea_query::Query;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect,
};
use uuid::Uuid;

pub use crate::identity::{RequestMeta, Role, USER_AGENT_MAX, Viewer, clip};
pub use consent_scope::ConsentScope;

use crate::audit::{AuditEvent, Outcome, PatientGrant};
use crate::error::{AppError, AppResult};
use crate::identity::Standing;
use crate::state::AppState;
use entity::{care_team, consents, emergency_access, patients};

/// What a [`PatientScope`] lets its holder read. Sealed: only the purposes below exist.
pub trait ReadPurpose: sealed::Sealed + 'static {}

/// Purpose marker: only the patient themself or an ADMIN (consents, access history).
#[derive(Debug)]
pub enum OwnerOnly {}

/// Purpose marker: an ADMIN acting on a patient (archive, restore, care team).
#[derive(Debug)]
pub enum AdminOnly {}

impl ReadPurpose for Demographics {}
impl ReadPurpose for OwnerOnly {}
impl ReadPurpose for AdminOnly {}

/// Proof that the viewer may touch this patient's data for purpose `P`
/// (`PatientScope<Demographics>`, `PatientScope<OwnerOnly>`, `PatientScope<AdminOnly>`).
/// Only this module constructs one, so a service that takes `&PatientScope<OwnerOnly>`
/// cannot be called with a demographics scope, nor with one made up for any id. Clinical
/// reads take a [`ClinicalGrant`]; changes take a [`WriteScope`], which break-glass never
/// yields.
pub struct PatientScope<P: ReadPurpose> {
    patient_id: Uuid,
    break_glass: bool,
    purpose: std::marker::PhantomData<fn() -> P>,
}

impl<P: ReadPurpose> PatientScope<P> {
    fn granted(patient_id: Uuid, break_glass: bool) -> Self {
        PatientScope {
            patient_id,
            break_glass,
            purpose: std::marker::PhantomData,
        }
    }
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    /// Access rests on an emergency (break-glass) grant; audit rows are flagged.
    pub fn break_glass(&self) -> bool {
        self.break_glass
    }
}

impl<P: ReadPurpose> Clone for PatientScope<P> {
    fn clone(&self) -> Self {
        PatientScope::granted(self.patient_id, self.break_glass)
    }
}

impl<P: ReadPurpose> PartialEq for PatientScope<P> {
    fn eq(&self, other: &Self) -> bool {
        self.patient_id == other.patient_id && self.break_glass == other.break_glass
    }
}

impl<P: ReadPurpose> Eq for PatientScope<P> {}

/// Scopes key DataLoaders: a loader reaches only rows a granted scope names.
impl<P: ReadPurpose> std::hash::Hash for PatientScope<P> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.patient_id.hash(state);
        self.break_glass.hash(state);
    }
}

impl<P: ReadPurpose> std::fmt::Debug for PatientScope<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientScope")
            .field("purpose", &std::any::type_name::<P>())
            .field("patient_id", &self.patient_id)
            .field("break_glass", &self.break_glass)
            .finish()
    }
}

impl<P: ReadPurpose> PatientGrant for PatientScope<P> {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        self.break_glass
    }
}

/// What a [`WriteScope`] lets its holder change. Sealed: only the purposes below exist.
pub trait WritePurpose: sealed::Sealed {}

/// A clinical category: care-team providers change it only under the patient's consent
/// for [`ClinicalCategory::CONSENT`].
pub trait ClinicalCategory: WritePurpose {
    const CONSENT: ConsentScope;
}

/// Purpose marker: a patient's demographics (names, birth date, contact details).
#[derive(Debug)]
pub enum Demographics {}

/// Clinical categories, one marker each, matching the consent scope of the same name.
macro_rules! clinical_categories {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[derive(Debug)]
            pub enum $name {}
            impl sealed::Sealed for $name {}
            impl WritePurpose for $name {}
            impl ClinicalCategory for $name {
                const CONSENT: ConsentScope = ConsentScope::$name;
            }
        )*
    };
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Demographics {}
    impl Sealed for super::OwnerOnly {}
    impl Sealed for super::AdminOnly {}
}

impl WritePurpose for Demographics {}

clinical_categories!(
    /// Purpose marker: lab results and visit notes (consent scope RECORDS).
    Records,
    /// Purpose marker: medications.
    Medications,
    /// Purpose marker: allergies and intolerances.
    Allergies,
    /// Purpose marker: immunizations.
    Immunizations,
    /// Purpose marker: clinical documents.
    Documents,
    /// Purpose marker: secure messages.
    Messages,
);

/// A read grant over clinical categories of one patient's data, for lists that mix them
/// (a patient's records across kinds) and single reads alike: which categories the viewer
/// may read, whether SENSITIVE records count, and whether it rests on break-glass. Only
/// [`clinical_grant`] builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClinicalGrant {
    patient_id: Uuid,
    break_glass: bool,
    categories: Vec<ConsentScope>,
    sensitive: bool,
}

impl ClinicalGrant {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    pub fn break_glass(&self) -> bool {
        self.break_glass
    }
    /// The categories this grant reads (a subset of those asked for).
    pub fn categories(&self) -> &[ConsentScope] {
        &self.categories
    }
    /// Whether SENSITIVE records are included.
    pub fn sensitive(&self) -> bool {
        self.sensitive
    }
}

impl PatientGrant for ClinicalGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        self.break_glass
    }
}

/// Proof that the viewer may *change* this patient's data of kind `P`. Only this module
/// constructs it ([`clinical_write_scope`], [`demographics_write_scope`]), and never from a
/// break-glass grant: emergency access is read-only, so a write service, which takes
/// `&WriteScope<P>`, cannot be called under it, and a [`PatientScope`] (what break-glass
/// yields) does not convert into one.
#[derive(Debug)]
pub struct WriteScope<P: WritePurpose> {
    patient_id: Uuid,
    purpose: std::marker::PhantomData<fn() -> P>,
}

impl<P: WritePurpose> WriteScope<P> {
    fn granted(patient_id: Uuid) -> Self {
        WriteScope {
            patient_id,
            purpose: std::marker::PhantomData,
        }
    }
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
}

impl<P: WritePurpose> PatientGrant for WriteScope<P> {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    /// A write never rests on break-glass.
    fn break_glass(&self) -> bool {
        false
    }
}

/// The viewer's standing towards one patient, loaded once per request.
#[derive(Clone, Debug, Default)]
struct Relationship {
    /// The viewer may see the patient at all: it exists, is not archived (ADMIN sees
    /// archived ones), and the viewer is the patient, an ADMIN, or a provider on the care
    /// team or holding emergency access. Decided before anything else, consent included.
    visible: bool,
    care_team: bool,
    emergency: bool,
    /// Active consent scopes; `None` until a clinical field needs them.
    scopes: Option<Vec<ConsentScope>>,
}

impl Relationship {
    fn consents_to(&self, scope: ConsentScope) -> bool {
        self.care_team && self.scopes.as_ref().is_some_and(|s| s.contains(&scope))
    }
}

/// The per-request cache on the [`Viewer`] holds plain [`Standing`] values; consent scopes
/// travel as a bitset (`ConsentScope::bits`).
impl From<Standing> for Relationship {
    fn from(s: Standing) -> Self {
        Relationship {
            visible: s.visible,
            care_team: s.care_team,
            emergency: s.emergency,
            scopes: s.consents.map(ConsentScope::from_bits),
        }
    }
}

impl From<&Relationship> for Standing {
    fn from(r: &Relationship) -> Self {
        Standing {
            visible: r.visible,
            care_team: r.care_team,
            emergency: r.emergency,
            consents: r.scopes.as_deref().map(ConsentScope::bits),
        }
    }
}

impl From<Relationship> for Standing {
    fn from(r: Relationship) -> Self {
        Standing::from(&r)
    }
}

/// SQL condition on `patients` selecting exactly the rows the viewer may read
/// (archived rows are filtered by the caller). RESEARCHER reads no identified patient.
pub fn visible_patients(viewer: &Viewer) -> AppResult<Condition> {
    match viewer.role {
        Role::Admin => Ok(Condition::all()),
        Role::Patient => match viewer.patient_id {
            Some(id) => Ok(Condition::all().add(patients::Column::Id.eq(id))),
            None => Ok(Condition::any()), // matches nothing
        },
        Role::Provider => {
            let Some(provider) = viewer.provider_id else {
                return Ok(Condition::any());
            };
            use sea_orm::sea_query::Expr;
            let (team, emergency) = provider_standing(Expr::val(provider), Expr::val(Utc::now()));
            Ok(Condition::any().add(team).add(emergency))
        }
        Role::Researcher => Err(AppError::Forbidden(
            "researchers receive de-identified extracts only, not identified patient data",
        )),
    }
}

/// A provider's standing towards the `patients` row in scope, as two correlated EXISTS: on
/// the patient's care team, and holding unexpired emergency access. `provider` and `now` are
/// expressions, so lists bind them as values and the batched read (`patients::reads`) can
/// take the provider from each pair and `now` from a placeholder.
///
/// Correlated EXISTS, not `id IN (subquery)`: PostgreSQL answers an IN over an OR by hashing
/// the provider's whole care team on every query (25 ms at 100,000 patients, growing with
/// the team), while EXISTS probes the care-team index for just the rows the other conditions
/// leave (0.2 ms for a family-name search).
pub fn provider_standing(
    provider: impl Into<sea_orm::sea_query::SimpleExpr>,
    now: impl Into<sea_orm::sea_query::SimpleExpr>,
) -> (
    sea_orm::sea_query::SimpleExpr,
    sea_orm::sea_query::SimpleExpr,
) {
    use sea_orm::sea_query::Expr;
    let provider: sea_orm::sea_query::SimpleExpr = provider.into();
    let team = Query::select()
        .expr(Expr::val(1))
        .from(care_team::Entity)
        .and_where(
            Expr::col((care_team::Entity, care_team::Column::PatientId))
                .equals((patients::Entity, patients::Column::Id)),
        )
        .and_where(
            Expr::col((care_team::Entity, care_team::Column::ProviderId)).eq(provider.clone()),
        )
        .to_owned();
    let emergency = Query::select()
        .expr(Expr::val(1))
        .from(emergency_access::Entity)
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::PatientId,
            ))
            .equals((patients::Entity, patients::Column::Id)),
        )
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::ProviderId,
            ))
            .eq(provider),
        )
        .and_where(
            Expr::col((
                emergency_access::Entity,
                emergency_access::Column::ExpiresAt,
            ))
            .gt(now),
        )
        .to_owned();
    (Expr::exists(team), Expr::exists(emergency))
}

/// The patient themself and ADMIN hold every scope on a patient's data they may see.
fn own_or_admin<P: ReadPurpose>(viewer: &Viewer, patient_id: Uuid) -> Option<PatientScope<P>> {
    is_own_or_admin(viewer, patient_id).then(|| PatientScope::granted(patient_id, false))
}

fn is_own_or_admin(viewer: &Viewer, patient_id: Uuid) -> bool {
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    own || viewer.role == Role::Admin
}

/// Refuse (audited) a viewer who holds no scope: NOT_FOUND for other patients (and anyone
/// who must not learn the patient exists), FORBIDDEN with `researcher` for researchers.
async fn refuse_outsider<T>(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
    researcher: &'static str,
) -> AppResult<T> {
    let e = match viewer.role {
        Role::Researcher => AppError::Forbidden(researcher),
        _ => AppError::NotFound,
    };
    deny(state, viewer, patient_id, action, e).await
}

const DE_IDENTIFIED_ONLY: &str = "researchers receive de-identified extracts only";

/// Why a write that rests on emergency access is refused.
pub const BREAK_GLASS_READ_ONLY: &str = "break-glass (emergency) access is read-only; ask an administrator to add you to the patient's care team to change the record";

/// The viewer's standing towards a patient they may see, or the (audited) refusal. Every
/// scope below starts here, so visibility is the first thing decided: a patient that does
/// not exist, is archived, or is not the viewer's to see is NOT_FOUND before consent or
/// break-glass is looked at, whatever else the viewer holds.
async fn visible_standing(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    need_scopes: bool,
    action: &'static str,
    researcher: &'static str,
) -> AppResult<Relationship> {
    let rel = relationship(state, viewer, patient_id, need_scopes).await?;
    if rel.visible {
        Ok(rel)
    } else {
        refuse_outsider(state, viewer, patient_id, action, researcher).await
    }
}

/// The scope for reading a patient's demographics. Providers learn whether it rests on
/// break-glass.
pub async fn demographics_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
) -> AppResult<PatientScope<Demographics>> {
    let rel = visible_standing(
        state,
        viewer,
        patient_id,
        false,
        "patient.read",
        DE_IDENTIFIED_ONLY,
    )
    .await?;
    if let Some(scope) = own_or_admin(viewer, patient_id) {
        return Ok(scope);
    }
    // A visible provider: on the care team, or holding emergency access.
    Ok(PatientScope::granted(patient_id, !rel.care_team))
}

/// The scope for changing a patient's demographics: the patient, an ADMIN, or a care-team
/// provider; never break-glass (FORBIDDEN, audited). A change that `touches_identity`
/// (names, birth date, SSN) is for staff: the patient may change contact details, language
/// and gender identity only.
pub async fn demographics_write_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    touches_identity: bool,
    action: &'static str,
) -> AppResult<WriteScope<Demographics>> {
    let rel =
        visible_standing(state, viewer, patient_id, false, action, DE_IDENTIFIED_ONLY).await?;
    if touches_identity && viewer.role == Role::Patient {
        let e = AppError::Forbidden(
            "patients may change contact details, language and gender identity; ask your clinic to correct names, birth date or SSN",
        );
        return deny(state, viewer, patient_id, action, e).await;
    }
    if is_own_or_admin(viewer, patient_id) || rel.care_team {
        return Ok(WriteScope::granted(patient_id));
    }
    let e = AppError::Forbidden(BREAK_GLASS_READ_ONLY);
    deny(state, viewer, patient_id, action, e).await
}

/// What the viewer may read of `wanted` clinical categories of this patient. The patient
/// and ADMIN read them all, SENSITIVE records included. A care-team provider reads the
/// categories the patient consented to, SENSITIVE records only under the SENSITIVE consent;
/// when `explicit` (the caller asked for these categories by name), a missing one is
/// CONSENT_REQUIRED naming it, otherwise the grant narrows to what is consented, and is
/// CONSENT_REQUIRED (naming the first wanted) when nothing is. A provider holding emergency
/// access reads everything wanted, flagged as break-glass. Refusals are audited.
pub async fn clinical_grant(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    wanted: &[ConsentScope],
    explicit: bool,
    action: &'static str,
) -> AppResult<ClinicalGrant> {
    let rel = visible_standing(state, viewer, patient_id, true, action, DE_IDENTIFIED_ONLY).await?;
    let all = |break_glass| ClinicalGrant {
        patient_id,
        break_glass,
        categories: wanted.to_vec(),
        sensitive: true,
    };
    if is_own_or_admin(viewer, patient_id) {
        return Ok(all(false));
    }
    let consented: Vec<ConsentScope> = wanted
        .iter()
        .copied()
        .filter(|c| rel.consents_to(*c))
        .collect();
    let missing = wanted.iter().copied().find(|c| !consented.contains(c));
    let complete = missing.is_none();
    // Asked for everything consentable, some of it consented, no emergency access: narrow.
    let narrow = !(complete || explicit || consented.is_empty() || rel.emergency);
    if narrow {
        return Ok(ClinicalGrant {
            patient_id,
            break_glass: false,
            categories: consented,
            sensitive: rel.consents_to(ConsentScope::Sensitive),
        });
    }
    if complete && !wanted.is_empty() {
        return Ok(ClinicalGrant {
            patient_id,
            break_glass: false,
            categories: consented,
            sensitive: rel.consents_to(ConsentScope::Sensitive) || rel.emergency,
        });
    }
    if rel.emergency {
        return Ok(all(true));
    }
    // A visible provider without emergency access is on the care team.
    let scope = missing
        .or(wanted.first().copied())
        .unwrap_or(ConsentScope::Records);
    let e = AppError::ConsentRequired {
        scope: scope.as_str(),
    };
    deny(state, viewer, patient_id, action, e).await
}

/// The scope for changing clinical category `C` of this patient, which every clinical
/// write asks for: an ADMIN, or a care-team provider under the patient's consent for `C`
/// (and for SENSITIVE when the record is `sensitive`). Patients and researchers do not
/// write clinical data (FORBIDDEN). Break-glass never yields it (FORBIDDEN, audited):
/// emergency access is read-only, and it does not stand in for a missing consent either.
pub async fn clinical_write_scope<C: ClinicalCategory>(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    sensitive: bool,
    action: &'static str,
) -> AppResult<WriteScope<C>> {
    let rel = visible_standing(state, viewer, patient_id, true, action, DE_IDENTIFIED_ONLY).await?;
    let e = match viewer.role {
        Role::Admin => return Ok(WriteScope::granted(patient_id)),
        Role::Patient | Role::Researcher => {
            AppError::Forbidden("clinical records are written by the care team")
        }
        Role::Provider if !rel.care_team => AppError::Forbidden(BREAK_GLASS_READ_ONLY),
        Role::Provider if !rel.consents_to(C::CONSENT) => AppError::ConsentRequired {
            scope: C::CONSENT.as_str(),
        },
        Role::Provider if sensitive && !rel.consents_to(ConsentScope::Sensitive) => {
            AppError::ConsentRequired {
                scope: ConsentScope::Sensitive.as_str(),
            }
        }
        Role::Provider => return Ok(WriteScope::granted(patient_id)),
    };
    deny(state, viewer, patient_id, action, e).await
}

/// Only the patient themself or an ADMIN (consent management, access history).
pub async fn owner_or_admin_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
) -> AppResult<PatientScope<OwnerOnly>> {
    const ONLY_OWNER: &str = "only the patient or an administrator may do this";
    visible_standing(state, viewer, patient_id, false, action, ONLY_OWNER).await?;
    if let Some(s) = own_or_admin(viewer, patient_id) {
        return Ok(s);
    }
    // A provider who may see the patient learns nothing new from FORBIDDEN; one who may
    // not got NOT_FOUND above.
    deny(
        state,
        viewer,
        patient_id,
        action,
        AppError::Forbidden(ONLY_OWNER),
    )
    .await
}

/// Scope for a patient the ADMIN acts on (archive, restore, care-team changes).
pub async fn admin_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
) -> AppResult<PatientScope<AdminOnly>> {
    if viewer.role == Role::Admin {
        return Ok(PatientScope::granted(patient_id, false));
    }
    let e = AppError::Forbidden("this operation is for administrators");
    deny(state, viewer, patient_id, action, e).await
}

/// Proof that the viewer may register patients (ADMIN or PROVIDER). It names no patient: the
/// new patient's scope comes from [`scopes_for_rows`] once the row exists, like any other.
#[derive(Debug)]
pub struct Registration {
    _sealed: (),
}

/// May the viewer register new patients? FORBIDDEN otherwise.
pub fn registration(viewer: &Viewer) -> AppResult<Registration> {
    match viewer.role {
        Role::Admin | Role::Provider => Ok(Registration { _sealed: () }),
        _ => Err(AppError::Forbidden(
            "only providers and administrators register patients",
        )),
    }
}

/// Who may give a patient a medical record number of their choosing: ADMIN only (anyone
/// else could use CONFLICT to learn that an MRN exists). The system assigns one otherwise.
pub fn may_assign_mrn(viewer: &Viewer) -> AppResult<()> {
    if viewer.role == Role::Admin {
        return Ok(());
    }
    Err(AppError::Forbidden(
        "MRNs are assigned by the system or by administrators",
    ))
}

/// Who sees a patient's SSN digits: the patient and ADMIN; anyone else FORBIDDEN (audited).
pub async fn ssn_digits(
    state: &AppState,
    viewer: &Viewer,
    scope: &PatientScope<Demographics>,
) -> AppResult<()> {
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(scope.patient_id);
    if own || viewer.role == Role::Admin {
        return Ok(());
    }
    let e = AppError::Forbidden("only the patient and administrators see SSN digits");
    deny(state, viewer, scope.patient_id, "patient.read_ssn", e).await
}

/// Load one patient for reading, with the viewer's demographics scope: NOT_FOUND (audited)
/// when it does not exist or is not the viewer's to see. A provider's read is one statement,
/// shared with concurrent reads ([`reads`]): the row with the provider's standing, so the
/// scope needs no query of its own.
pub async fn read_patient(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<(patients::Model, PatientScope<Demographics>)> {
    let row = match (viewer.role, viewer.provider_id) {
        (Role::Provider, Some(provider)) => {
            let reads = state.service::<reads::ProviderReads>()?;
            reads.read(provider, id).await?.and_then(|r| {
                (r.care_team || r.emergency).then(|| {
                    remember(viewer, &r.row, r.care_team, r.emergency, r.scopes);
                    r.row
                })
            })
        }
        _ => {
            let mut q = patients::Entity::find_by_id(id).filter(visible_patients(viewer)?);
            if viewer.role != Role::Admin {
                q = q.filter(patients::Column::ArchivedAt.is_null());
            }
            let row = q.one(&state.db).await?;
            if let Some(row) = &row {
                remember_row(viewer, row);
            }
            row
        }
    };
    match row {
        Some(row) => {
            let scope = demographics_scope(state, viewer, id).await?;
            Ok((row, scope))
        }
        None => deny(state, viewer, id, "patient.read", AppError::NotFound).await,
    }
}

/// The demographics scope for each of `rows` (a page of patients, a patient just created),
/// deciding the page's relationships in a few queries whatever its length. A row the viewer
/// may no longer see (a care-team removal between the page query and here) is left out, its
/// denial audited, rather than the whole page failed.
pub async fn scopes_for_rows(
    state: &AppState,
    viewer: &Viewer,
    rows: Vec<patients::Model>,
) -> AppResult<Vec<(patients::Model, PatientScope<Demographics>)>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    preload(state, viewer, &ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        remember_row(viewer, &row);
        match demographics_scope(state, viewer, row.id).await {
            Ok(scope) => out.push((row, scope)),
            Err(AppError::NotFound) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Record the denial of an action on a patient's data in the audit log (durably) and
/// return the error.
pub async fn deny<T>(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    action: &'static str,
    err: AppError,
) -> AppResult<T> {
    refuse(
        state,
        viewer,
        action,
        "patient",
        patient_id.to_string(),
        Some(patient_id),
        err,
    )
    .await
}

/// Record any denial (durably) and return the error.
pub async fn refuse<T>(
    state: &AppState,
    viewer: &Viewer,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    patient_id: Option<Uuid>,
    err: AppError,
) -> AppResult<T> {
    let mut ev = AuditEvent::by(viewer, action, resource_type)
        .resource(resource_id)
        .outcome(Outcome::Denied)
        .detail(serde_json::json!({ "code": err.code() }));
    ev.patient_id = patient_id;
    state.audit.record(ev).await?;
    Err(err)
}

async fn relationship(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    need_scopes: bool,
) -> AppResult<Relationship> {
    // Consent scopes matter only to a care-team provider.
    let cached = || {
        lock(&viewer.standing)
            .get(&patient_id)
            .copied()
            .map(Relationship::from)
    };
    let enough = |r: &Relationship| !(need_scopes && r.care_team && r.scopes.is_none());
    if let Some(r) = cached().filter(enough) {
        return Ok(r);
    }
    // One load at a time per request: fields that resolve concurrently (a chart's lists)
    // wait for the first one's answer rather than each loading the same standing.
    let _gate = viewer.standing_load.lock().await;
    let rel = match cached() {
        Some(r) if enough(&r) => return Ok(r),
        Some(mut r) => {
            if let Some(provider) = viewer.provider_id {
                r.scopes = Some(
                    load_scopes(&state.db, provider, &[patient_id])
                        .await?
                        .remove(&patient_id)
                        .unwrap_or_default(),
                );
            }
            r
        }
        None => match (viewer.role, viewer.provider_id, viewer.patient_id) {
            // One statement, shared with concurrent reads ([`reads`]), that brings the
            // consent scopes too: cheaper than the three lookups it stands for.
            (Role::Provider, Some(provider), _) => {
                let reads = state.service::<reads::ProviderReads>()?;
                match reads.read(provider, patient_id).await? {
                    Some(r) => Relationship {
                        visible: r.care_team || r.emergency,
                        care_team: r.care_team,
                        emergency: r.emergency,
                        scopes: Some(r.scopes),
                    },
                    None => Relationship::default(),
                }
            }
            (Role::Patient, _, Some(own)) if own == patient_id => Relationship {
                visible: patient_exists(&state.db, patient_id, false).await?,
                ..Relationship::default()
            },
            (Role::Admin, _, _) => Relationship {
                visible: patient_exists(&state.db, patient_id, true).await?,
                ..Relationship::default()
            },
            _ => Relationship::default(),
        },
    };
    lock(&viewer.standing).insert(patient_id, Standing::from(&rel));
    Ok(rel)
}

/// Whether the patient row exists (and, unless `archived_too`, is not archived).
async fn patient_exists(
    db: &impl ConnectionTrait,
    patient_id: Uuid,
    archived_too: bool,
) -> AppResult<bool> {
    let mut q = patients::Entity::find_by_id(patient_id);
    if !archived_too {
        q = q.filter(patients::Column::ArchivedAt.is_null());
    }
    Ok(q.select_only()
        .column(patients::Column::Id)
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .is_some())
}

/// Record what a provider's combined read already established ([`reads`]): the row, the
/// provider's standing towards it and the consent scopes the patient granted them, so the
/// scope checks that follow, clinical ones included, need no query of their own.
fn remember(
    viewer: &Viewer,
    row: &patients::Model,
    care_team: bool,
    emergency: bool,
    scopes: Vec<ConsentScope>,
) {
    let visible = row.archived_at.is_none() && (care_team || emergency);
    lock(&viewer.standing).entry(row.id).or_insert(
        Relationship {
            visible,
            care_team: care_team && visible,
            emergency: emergency && visible,
            scopes: Some(scopes),
        }
        .into(),
    );
}

/// Record, for the patient themself or an ADMIN, that `row` was loaded: for them the row
/// alone decides visibility (their own record unless archived; every record), so the scope
/// checks that follow need no query. A provider's standing is not in the row: nothing is
/// recorded for providers.
fn remember_row(viewer: &Viewer, row: &patients::Model) {
    let visible = match viewer.role {
        Role::Admin => true,
        Role::Patient => viewer.patient_id == Some(row.id) && row.archived_at.is_none(),
        Role::Provider | Role::Researcher => return,
    };
    lock(&viewer.standing).entry(row.id).or_insert(
        Relationship {
            visible,
            ..Relationship::default()
        }
        .into(),
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Load the viewer's relationships to many patients at once (three queries, whatever the
/// count) into the per-request cache, so a page of patients does not query per row.
async fn preload(state: &AppState, viewer: &Viewer, patient_ids: &[Uuid]) -> AppResult<()> {
    let Some(provider) = viewer.provider_id.filter(|_| viewer.role == Role::Provider) else {
        return Ok(());
    };
    let missing: Vec<Uuid> = {
        let cache = lock(&viewer.standing);
        patient_ids
            .iter()
            .copied()
            .filter(|id| !cache.contains_key(id))
            .collect()
    };
    if missing.is_empty() {
        return Ok(());
    }
    let loaded = load_relationships(&state.db, provider, &missing, true).await?;
    lock(&viewer.standing).extend(loaded.into_iter().map(|(id, r)| (id, r.into())));
    Ok(())
}

async fn load_relationships(
    db: &impl ConnectionTrait,
    provider: Uuid,
    patient_ids: &[Uuid],
    with_scopes: bool,
) -> AppResult<HashMap<Uuid, Relationship>> {
    let now = Utc::now();
    let ids = || patient_ids.iter().copied();
    let mut out: HashMap<Uuid, Relationship> =
        ids().map(|id| (id, Relationship::default())).collect();
    // An archived patient gives no standing: it is not visible, whatever the provider holds.
    let team: Vec<Uuid> = care_team::Entity::find()
        .join(
            JoinType::InnerJoin,
            care_team::Entity::belongs_to(patients::Entity)
                .from(care_team::Column::PatientId)
                .to(patients::Column::Id)
                .into(),
        )
        .filter(patients::Column::ArchivedAt.is_null())
        .filter(care_team::Column::PatientId.is_in(ids()))
        .filter(care_team::Column::ProviderId.eq(provider))
        .select_only()
        .column(care_team::Column::PatientId)
        .into_tuple()
        .all(db)
        .await?;
    for id in team {
        out.entry(id).or_default().care_team = true;
    }
    let emergency: Vec<Uuid> = emergency_access::Entity::find()
        .join(
            JoinType::InnerJoin,
            emergency_access::Entity::belongs_to(patients::Entity)
                .from(emergency_access::Column::PatientId)
                .to(patients::Column::Id)
                .into(),
        )
        .filter(patients::Column::ArchivedAt.is_null())
        .filter(emergency_access::Column::PatientId.is_in(ids()))
        .filter(emergency_access::Column::ProviderId.eq(provider))
        .filter(emergency_access::Column::ExpiresAt.gt(now))
        .select_only()
        .column(emergency_access::Column::PatientId)
        .into_tuple()
        .all(db)
        .await?;
    for id in emergency {
        out.entry(id).or_default().emergency = true;
    }
    for r in out.values_mut() {
        r.visible = r.care_team || r.emergency;
    }
    if with_scopes {
        for (id, scopes) in load_scopes(db, provider, patient_ids).await? {
            out.entry(id).or_default().scopes = Some(scopes);
        }
        for r in out.values_mut() {
            r.scopes.get_or_insert_with(Vec::new);
        }
    }
    Ok(out)
}

/// Active, unexpired consent scopes the patients granted this provider, by patient.
async fn load_scopes(
    db: &impl ConnectionTrait,
    provider: Uuid,
    patient_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<ConsentScope>>> {
    let grants = Condition::all()
        .add(consents::Column::PatientId.is_in(patient_ids.iter().copied()))
        .add(consents::Column::GranteeProviderId.eq(provider));
    active_scopes(db, grants, consents::Column::PatientId).await
}

/// Active, unexpired consent scopes this patient granted each of these providers, by
/// provider.
async fn load_consents_of_patient(
    db: &impl ConnectionTrait,
    patient_id: Uuid,
    providers: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<ConsentScope>>> {
    let grants = Condition::all()
        .add(consents::Column::PatientId.eq(patient_id))
        .add(consents::Column::GranteeProviderId.is_in(providers.iter().copied()));
    active_scopes(db, grants, consents::Column::GranteeProviderId).await
}

/// The active, unexpired scopes of the consents matching `grants`, grouped by `key` (the
/// patient or the grantee column).
async fn active_scopes(
    db: &impl ConnectionTrait,
    grants: Condition,
    key: consents::Column,
) -> AppResult<HashMap<Uuid, Vec<ConsentScope>>> {
    let now = Utc::now();
    let rows: Vec<(Uuid, String, Option<chrono::DateTime<Utc>>)> = consents::Entity::find()
        .filter(grants)
        .filter(consents::Column::Status.eq("ACTIVE"))
        .select_only()
        .column(key)
        .column(consents::Column::Scopes)
        .column(consents::Column::ExpiresAt)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<ConsentScope>> = HashMap::new();
    for (id, stored, expires) in rows {
        if expires.is_none_or(|t| t > now) {
            out.entry(id)
                .or_default()
                .extend(ConsentScope::split(&stored));
        }
    }
    Ok(out)
}
