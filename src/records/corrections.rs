//! The right to amend (45 CFR 164.526). A patient asks to correct one of their records; the
//! record's author (or an ADMIN) answers: accepting amends the record in the same
//! transaction as the answer (a `CORRECTION` version, linked as `amendedVersion`), denying
//! says why and leaves the record as it is. After a denial the patient may file a statement
//! of disagreement, which stays linked to the record and travels with it in the FHIR export.
//!
//! The request, the answer and the statement are sealed, each bound to its table, column
//! and row. Every read and every write is audited, under the grant it rests on.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::family::{self, Change};
use super::graphql::AmendRecordInput;
use super::kinds::RecordStatus;
use super::scope;
use super::types::{CorrectionStatus, parse_correction_text};
use crate::access::{self, OwnerOnly, PatientScope, Role};
use crate::audit::{AuditEvent, PatientGrant, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::relay::parse_id;
use crate::identity::Viewer;
use crate::state::AppState;
use entity::{correction_requests, medical_records};

pub const TABLE: &str = "correction_requests";

const ONLY_AUTHOR: &str =
    "only the record's author or an administrator answers a request to correct it";
const ONLY_PATIENT: &str = "only the patient asks to correct their record";
const ANSWERED: &str = "the request was already answered";

fn slot<'a>(column: &'static str, row: &'a Uuid) -> Slot<'a> {
    Slot {
        table: TABLE,
        column,
        row,
    }
}

// ---------------------------------------------------------------------------------------
// Storage

/// A stored correction request with its texts opened.
#[derive(Clone)]
pub struct Correction {
    pub row: correction_requests::Model,
    pub status: CorrectionStatus,
    /// What the patient asked to correct.
    pub text: String,
    /// The reason of a denial, or the note of an acceptance.
    pub response: Option<String>,
    /// The patient's statement of disagreement with a denial.
    pub disagreement: Option<String>,
}

impl std::fmt::Debug for Correction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The texts are PHI: ids and status only.
        f.debug_struct("Correction")
            .field("id", &self.row.id)
            .field("record_id", &self.row.record_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Open a stored row.
pub fn open(keys: &KeyRing, row: correction_requests::Model) -> AppResult<Correction> {
    let status = CorrectionStatus::parse(&row.status)
        .ok_or_else(|| AppError::internal_msg("stored correction status is unknown"))?;
    let opt = |column, ct: &Option<Vec<u8>>| {
        ct.as_deref()
            .map(|c| keys.open_str(slot(column, &row.id), c))
            .transpose()
    };
    Ok(Correction {
        status,
        text: keys.open_str(slot("text", &row.id), &row.text_enc)?,
        response: opt("response", &row.response_enc)?,
        disagreement: opt("disagreement", &row.disagreement_enc)?,
        row,
    })
}

/// The correction requests of each of `record_ids`, oldest first, in one query. The caller
/// has decided the viewer may read these records (they were read under a grant).
pub async fn by_records(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    record_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<Correction>>> {
    let mut out: HashMap<Uuid, Vec<Correction>> = HashMap::new();
    if record_ids.is_empty() {
        return Ok(out);
    }
    let rows = correction_requests::Entity::find()
        .filter(correction_requests::Column::RecordId.is_in(record_ids.iter().copied()))
        .order_by_asc(correction_requests::Column::RequestedAt)
        .order_by_asc(correction_requests::Column::Id)
        .all(db)
        .await?;
    for row in rows {
        out.entry(row.record_id).or_default().push(open(keys, row)?);
    }
    Ok(out)
}

/// Every correction request of the scope's patient, newest first.
pub async fn for_patient(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    scope: &PatientScope<OwnerOnly>,
) -> AppResult<Vec<Correction>> {
    correction_requests::Entity::find()
        .filter(correction_requests::Column::PatientId.eq(scope.patient_id()))
        .order_by_desc(correction_requests::Column::RequestedAt)
        .order_by_desc(correction_requests::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|r| open(keys, r))
        .collect()
}

/// One request as stored now, inside the transaction (for an answer to start from); only
/// of the grant's patient (NOT_FOUND otherwise).
pub async fn current(
    tx: &WriteTxn,
    grant: &impl PatientGrant,
    id: Uuid,
) -> AppResult<correction_requests::Model> {
    correction_requests::Entity::find_by_id(id)
        .filter(correction_requests::Column::PatientId.eq(grant.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)
}

/// File the patient's request to correct `record` (read under `grant`), and its audit row.
pub async fn file(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &impl PatientGrant,
    record: &medical_records::Model,
    text: &str,
) -> AppResult<Correction> {
    let id = Uuid::new_v4();
    let row = correction_requests::Model {
        id,
        record_id: record.id,
        patient_id: record.patient_id,
        requested_by: viewer.user_id,
        requested_at: Utc::now(),
        text_enc: keys.seal_str(slot("text", &id), text)?,
        status: CorrectionStatus::Requested.as_str().to_owned(),
        responded_by: None,
        responded_at: None,
        response_enc: None,
        amended_version: None,
        disagreement_enc: None,
        disagreed_at: None,
    };
    correction_requests::Entity::insert(correction_requests::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "record.correction_request", "medical_record")
            .scope(grant)
            .resource(record.id.to_string())
            .detail(serde_json::json!({ "correctionRequest": id.to_string() })),
    );
    open(keys, row)
}

/// How a request is answered. (No `Debug`: it holds the answer's text.)
pub enum Answer<'a> {
    /// The record was amended to `amended_version` (in the same transaction), with an
    /// optional note.
    Accepted {
        amended_version: i32,
        note: Option<&'a str>,
    },
    /// Refused, saying why.
    Denied { reason: &'a str },
}

/// Answer `before` (read by [`current`] in this transaction), and its audit row. Only a
/// REQUESTED request is answered: CONFLICT otherwise, also when another answer raced this
/// one.
pub async fn answer(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &impl PatientGrant,
    before: correction_requests::Model,
    answer: Answer<'_>,
) -> AppResult<Correction> {
    if before.status != CorrectionStatus::Requested.as_str() {
        return Err(AppError::Conflict(ANSWERED));
    }
    let (status, text, version) = match answer {
        Answer::Accepted {
            amended_version,
            note,
        } => (CorrectionStatus::Accepted, note, Some(amended_version)),
        Answer::Denied { reason } => (CorrectionStatus::Denied, Some(reason), None),
    };
    let id = before.id;
    let row = correction_requests::Model {
        status: status.as_str().to_owned(),
        responded_by: Some(viewer.user_id),
        responded_at: Some(Utc::now()),
        response_enc: text
            .map(|t| keys.seal_str(slot("response", &id), t))
            .transpose()?,
        amended_version: version,
        ..before
    };
    let done = correction_requests::Entity::update_many()
        .set(correction_requests::ActiveModel {
            status: Set(row.status.clone()),
            responded_by: Set(row.responded_by),
            responded_at: Set(row.responded_at),
            response_enc: Set(row.response_enc.clone()),
            amended_version: Set(row.amended_version),
            ..Default::default()
        })
        .filter(correction_requests::Column::Id.eq(id))
        .filter(correction_requests::Column::Status.eq(CorrectionStatus::Requested.as_str()))
        .exec(tx.conn())
        .await?;
    if done.rows_affected != 1 {
        return Err(AppError::Conflict(ANSWERED));
    }
    let mut detail = serde_json::json!({
        "correctionRequest": id.to_string(),
        "status": status.as_str(),
    });
    if let Some(v) = version {
        detail["version"] = v.into();
    }
    tx.audit(
        AuditEvent::by(viewer, "record.correction_respond", "medical_record")
            .scope(grant)
            .resource(row.record_id.to_string())
            .detail(detail),
    );
    open(keys, row)
}

/// Add the patient's statement of disagreement to `before` (read by [`current`] in this
/// transaction), and its audit row. Only a DENIED request takes one (VALIDATION), and only
/// one (CONFLICT).
pub async fn disagree(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &impl PatientGrant,
    before: correction_requests::Model,
    text: &str,
) -> AppResult<Correction> {
    if before.status != CorrectionStatus::Denied.as_str() {
        return Err(AppError::validation(
            "correctionRequestId",
            "only a denied request takes a statement of disagreement",
        ));
    }
    const FILED: &str = "a statement of disagreement was already filed for this request";
    if before.disagreement_enc.is_some() {
        return Err(AppError::Conflict(FILED));
    }
    let id = before.id;
    let row = correction_requests::Model {
        disagreement_enc: Some(keys.seal_str(slot("disagreement", &id), text)?),
        disagreed_at: Some(Utc::now()),
        ..before
    };
    let done = correction_requests::Entity::update_many()
        .set(correction_requests::ActiveModel {
            disagreement_enc: Set(row.disagreement_enc.clone()),
            disagreed_at: Set(row.disagreed_at),
            ..Default::default()
        })
        .filter(correction_requests::Column::Id.eq(id))
        .filter(correction_requests::Column::Status.eq(CorrectionStatus::Denied.as_str()))
        .filter(correction_requests::Column::DisagreementEnc.is_null())
        .exec(tx.conn())
        .await?;
    if done.rows_affected != 1 {
        return Err(AppError::Conflict(FILED));
    }
    tx.audit(
        AuditEvent::by(viewer, "record.correction_disagree", "medical_record")
            .scope(grant)
            .resource(row.record_id.to_string())
            .detail(serde_json::json!({ "correctionRequest": id.to_string() })),
    );
    open(keys, row)
}

/// A request's patient and record, without its texts (for deciding access).
async fn locate(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<(Uuid, Uuid)>> {
    use sea_orm::QuerySelect;
    Ok(correction_requests::Entity::find_by_id(id)
        .select_only()
        .column(correction_requests::Column::PatientId)
        .column(correction_requests::Column::RecordId)
        .into_tuple()
        .one(db)
        .await?)
}

/// The per-request loader of a record's correction requests. Keyed by the record's id: it
/// is asked only by a `MedicalRecord`, which exists only under a read grant for that record.
pub struct CorrectionsByRecord {
    pub db: DatabaseConnection,
    pub keys: KeyRing,
}

impl Loader<Uuid> for CorrectionsByRecord {
    type Value = Vec<Correction>;
    type Error = Arc<AppError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        by_records(&self.db, &self.keys, keys)
            .await
            .map_err(Arc::new)
    }
}

// ---------------------------------------------------------------------------------------
// GraphQL

/// A patient's request to correct one of their records (45 CFR 164.526), its answer, and
/// the patient's statement of disagreement after a denial.
#[derive(SimpleObject)]
pub struct CorrectionRequest {
    /// The request's id (`respondToCorrection`, `fileDisagreement`).
    pub id: ID,
    /// The record it asks to correct.
    pub record_id: ID,
    /// REQUESTED until it is accepted or denied.
    pub status: CorrectionStatus,
    /// What the patient asked to correct, and why.
    pub text: String,
    /// When the patient filed it.
    pub requested_at: DateTime<Utc>,
    /// When it was accepted or denied.
    pub responded_at: Option<DateTime<Utc>>,
    /// The reason of a denial, or the note that came with an acceptance.
    pub response: Option<String>,
    /// The record version an accepted request produced (see the record's `history`).
    pub amended_version: Option<i32>,
    /// The patient's statement of disagreement with a denial.
    pub disagreement: Option<String>,
    /// When the statement of disagreement was filed.
    pub disagreed_at: Option<DateTime<Utc>>,
}

impl From<Correction> for CorrectionRequest {
    fn from(c: Correction) -> Self {
        CorrectionRequest {
            id: ID(c.row.id.to_string()),
            record_id: ID(c.row.record_id.to_string()),
            status: c.status,
            text: c.text,
            requested_at: c.row.requested_at,
            responded_at: c.row.responded_at,
            response: c.response,
            amended_version: c.row.amended_version,
            disagreement: c.disagreement,
            disagreed_at: c.row.disagreed_at,
        }
    }
}

fn ids(list: &[Correction]) -> Vec<String> {
    list.iter().map(|c| c.row.id.to_string()).collect()
}

/// Every correction request of the patient, newest first (`Patient.correctionRequests`:
/// the patient or ADMIN). Audited, naming the requests and their records.
pub async fn of_patient(ctx: &Context<'_>, patient_id: Uuid) -> AppResult<Vec<CorrectionRequest>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let scope =
        access::owner_or_admin_scope(state, viewer, patient_id, "record.correction_read").await?;
    let list = for_patient(&state.db, &state.keys, &scope).await?;
    let records: Vec<String> = list.iter().map(|c| c.row.record_id.to_string()).collect();
    state
        .audit
        .record(
            AuditEvent::by(viewer, "record.correction_read", "patient")
                .scope(&scope)
                .resource(patient_id.to_string())
                .detail(serde_json::json!({
                    "field": "correctionRequests",
                    "count": list.len(),
                    "correctionRequests": ids(&list),
                    "records": records,
                })),
        )
        .await?;
    Ok(list.into_iter().map(Into::into).collect())
}

/// The correction requests of a record the viewer read (`MedicalRecord.correctionRequests`),
/// oldest first, batched by the request's loader. Audited.
pub async fn of_record(
    ctx: &Context<'_>,
    record: &medical_records::Model,
    under: &impl crate::audit::PatientGrant,
) -> AppResult<Vec<CorrectionRequest>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let loader = ctx
        .data::<DataLoader<CorrectionsByRecord>>()
        .map_err(|_| AppError::internal_msg("corrections loader missing"))?;
    let list = loader
        .load_one(record.id)
        .await
        .map_err(|e| {
            tracing::error!(error = ?e, "corrections loader failed");
            AppError::internal_msg("loading correction requests failed")
        })?
        .unwrap_or_default();
    state
        .audit
        .record(
            AuditEvent::by(viewer, "record.correction_read", "medical_record")
                .scope(under)
                .resource(record.id.to_string())
                .detail(serde_json::json!({
                    "field": "correctionRequests",
                    "count": list.len(),
                    "correctionRequests": ids(&list),
                })),
        )
        .await?;
    Ok(list.into_iter().map(Into::into).collect())
}

/// `amendRecord` calls its content `input`; here it is `amendment`.
fn as_amendment(e: AppError) -> AppError {
    match e {
        AppError::Validation {
            field: "input",
            reason,
        } => AppError::Validation {
            field: "amendment",
            reason,
        },
        e => e,
    }
}

/// Refuse (audited) a request id that names no request.
async fn unknown_request<T>(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    action: &'static str,
) -> AppResult<T> {
    access::refuse(
        state,
        viewer,
        action,
        "correction_request",
        id.to_string(),
        None,
        AppError::NotFound,
    )
    .await
}

#[derive(Default)]
pub struct CorrectionsMutation;

#[Object]
impl CorrectionsMutation {
    /// Ask to correct one of your records (45 CFR 164.526), saying what is wrong and why
    /// (5 to 2000 characters). The patient only; a record you may not see is NOT_FOUND.
    async fn request_correction(
        &self,
        ctx: &Context<'_>,
        record_id: ID,
        text: String,
    ) -> Result<CorrectionRequest> {
        const ACTION: &str = "record.correction_request";
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let record_id = parse_id("recordId", &record_id)?;
        let text = parse_correction_text("text", &text)?;
        let (grant, rec) = scope::one(state, viewer, record_id, ACTION).await?;
        let own = viewer.role == Role::Patient && viewer.patient_id == Some(rec.row.patient_id);
        if !own {
            let e = AppError::Forbidden(ONLY_PATIENT);
            return access::deny(state, viewer, rec.row.patient_id, ACTION, e)
                .await
                .map_err(Into::into);
        }
        if rec.row.record_status == RecordStatus::EnteredInError.as_str() {
            return Err(AppError::validation(
                "recordId",
                "the record was marked entered in error and can no longer change",
            )
            .into());
        }
        let mut tx = WriteTxn::begin(&state.db).await?;
        let c = file(&mut tx, &state.keys, viewer, &grant, &rec.row, &text).await?;
        tx.commit().await?;
        Ok(c.into())
    }

    /// Answer a correction request: the record's author or an ADMIN (FORBIDDEN for anyone
    /// else who may see the record; NOT_FOUND for who may not). `accept` needs `amendment`,
    /// exactly one field of the record's kind as `amendRecord` takes it, and amends the
    /// record in the same transaction (its version's change is CORRECTION; `reason` is kept
    /// as the version's reason). Denying needs `reason`, which the patient sees, and leaves
    /// the record as it is. Only a REQUESTED request is answered (CONFLICT otherwise).
    async fn respond_to_correction(
        &self,
        ctx: &Context<'_>,
        id: ID,
        accept: bool,
        reason: Option<String>,
        amendment: Option<AmendRecordInput>,
    ) -> Result<CorrectionRequest> {
        const ACTION: &str = "record.correction_respond";
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let reason = reason
            .as_deref()
            .map(|r| parse_correction_text("reason", r))
            .transpose()?;
        let amendment = match (accept, amendment, &reason) {
            (true, Some(a), _) => Some(a.amendment(state, viewer).await.map_err(as_amendment)?),
            (true, None, _) => {
                return Err(AppError::validation(
                    "amendment",
                    "is required to accept: the record's corrected content",
                )
                .into());
            }
            (false, Some(_), _) => {
                return Err(
                    AppError::validation("amendment", "must be left out when denying").into(),
                );
            }
            (false, None, None) => {
                return Err(AppError::validation(
                    "reason",
                    "is required to deny: say why, in plain language",
                )
                .into());
            }
            (false, None, Some(_)) => None,
        };
        let Some((_, record_id)) = locate(&state.db, id).await? else {
            return unknown_request(state, viewer, id, ACTION)
                .await
                .map_err(Into::into);
        };
        // Who may not see the record gets NOT_FOUND (audited), as for an unknown request.
        let (_, rec) = scope::one(state, viewer, record_id, ACTION).await?;
        let author = rec.row.recorded_by == viewer.user_id || viewer.role == Role::Admin;
        if !author {
            let e = AppError::Forbidden(ONLY_AUTHOR);
            return access::deny(state, viewer, rec.row.patient_id, ACTION, e)
                .await
                .map_err(Into::into);
        }
        // Answering is a write on the record: never under break-glass, and under the
        // record's category consent for a provider.
        let grant = scope::modify(state, viewer, record_id, ACTION).await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let before = current(&tx, &grant, id).await?;
        if before.status != CorrectionStatus::Requested.as_str() {
            return Err(AppError::Conflict(ANSWERED).into());
        }
        let how = match amendment {
            Some(a) => {
                let record =
                    family::current(&tx, &state.keys, grant.patient_id(), record_id).await?;
                let after = a.apply(&record).map_err(as_amendment)?;
                let amended = family::change(
                    &mut tx,
                    &state.keys,
                    viewer,
                    &grant,
                    record,
                    after,
                    Change::Correction,
                    reason.as_deref(),
                    None,
                )
                .await?;
                Answer::Accepted {
                    amended_version: amended.row.version,
                    note: reason.as_deref(),
                }
            }
            None => Answer::Denied {
                reason: reason.as_deref().unwrap_or_default(),
            },
        };
        let c = answer(&mut tx, &state.keys, viewer, &grant, before, how).await?;
        tx.commit().await?;
        Ok(c.into())
    }

    /// File your statement of disagreement with a denied correction request (5 to 2000
    /// characters): it stays linked to the record and goes with it wherever the record is
    /// disclosed (the FHIR export). The patient only, once per request; a request that was
    /// not denied is VALIDATION.
    async fn file_disagreement(
        &self,
        ctx: &Context<'_>,
        correction_request_id: ID,
        text: String,
    ) -> Result<CorrectionRequest> {
        const ACTION: &str = "record.correction_disagree";
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("correctionRequestId", &correction_request_id)?;
        let text = parse_correction_text("text", &text)?;
        let Some((patient_id, _)) = locate(&state.db, id).await? else {
            return unknown_request(state, viewer, id, ACTION)
                .await
                .map_err(Into::into);
        };
        // Another patient's request is NOT_FOUND (audited), as for an unknown one.
        let scope = access::owner_or_admin_scope(state, viewer, patient_id, ACTION).await?;
        if viewer.role != Role::Patient {
            let e = AppError::Forbidden("only the patient files a statement of disagreement");
            return access::deny(state, viewer, patient_id, ACTION, e)
                .await
                .map_err(Into::into);
        }
        let mut tx = WriteTxn::begin(&state.db).await?;
        let before = current(&tx, &scope, id).await?;
        let c = disagree(&mut tx, &state.keys, viewer, &scope, before, &text).await?;
        tx.commit().await?;
        Ok(c.into())
    }
}
