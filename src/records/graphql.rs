//! The medical-record family over GraphQL: the `MedicalRecord` interface and its six
//! types, the patient's record lists (through `records::scope`, which turns an `access`
//! grant into the only set of rows a read may touch), `record(id)`, and the writes.
use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputObject, Interface, Json, Object, Result, SimpleObject,
};
use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use uuid::Uuid;

use super::corrections::CorrectionRequest;
use super::family::{self, Change, Changed, NewRecord, Record};
use super::kinds::*;
use super::scope::{self, ReadGrant};
use super::types::{AllergySeverity, AllergyStatus};
use crate::access::history::AccessHistoryConnection;
use crate::appointments::graphql::Provider;
use crate::audit::{AuditEvent, PatientGrant, WriteTxn};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read};
use crate::graphql::relay::{self, Connection, Edge, PageInfo};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use crate::input::{parse_clinical_text, parse_reason};
use crate::state::AppState;

/// What a record object was obtained under: the read grant it was read with, or the write
/// that produced it (never break-glass). Its fields' own audit rows (document content,
/// correction requests) carry it, break-glass flag included.
#[derive(Clone, Debug)]
pub enum Under {
    Read(Arc<ReadGrant>),
    Written(Uuid),
}

impl PatientGrant for Under {
    fn patient_id(&self) -> Uuid {
        match self {
            Under::Read(g) => g.patient_id(),
            Under::Written(p) => *p,
        }
    }
    fn break_glass(&self) -> bool {
        match self {
            Under::Read(g) => g.break_glass(),
            Under::Written(_) => false,
        }
    }
}

impl From<ReadGrant> for Under {
    fn from(g: ReadGrant) -> Self {
        Under::Read(Arc::new(g))
    }
}

/// A record as the API shows it: opened, under the grant it was read with.
#[derive(Clone)]
pub struct Node {
    rec: Record,
    under: Under,
}

impl Node {
    fn id(&self) -> ID {
        ID(self.rec.row.id.to_string())
    }
}

/// The fields every record type has, followed by the kind's own (a declarative macro, so
/// the shared fields are written once and every type still resolves them itself, as
/// GraphQL interfaces require).
macro_rules! record_type {
    ($(#[$doc:meta])* $ty:ident, $variant:ident => $content:ty, { $($fields:tt)* }) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $ty(Node);

        impl $ty {
            fn c(&self) -> &$content {
                match &self.0.rec.content {
                    Content::$variant(c) => c,
                    // Built only from records of this kind (see `MedicalRecord::from`).
                    _ => unreachable!("record type and content disagree"),
                }
            }
        }

        #[Object]
        impl $ty {
            async fn id(&self) -> ID {
                self.0.id()
            }
            async fn kind(&self) -> RecordKind {
                self.0.rec.kind()
            }
            /// When it was entered into the record.
            async fn recorded_at(&self) -> DateTime<Utc> {
                self.0.rec.row.recorded_at
            }
            /// User id of who entered it.
            async fn recorded_by(&self) -> ID {
                ID(self.0.rec.row.recorded_by.to_string())
            }
            /// Increments on every change; pass it to `amendRecord` as `expectedVersion`.
            async fn version(&self) -> i32 {
                self.0.rec.row.version
            }
            async fn record_status(&self) -> Result<RecordStatus> {
                Ok(RecordStatus::parse(&self.0.rec.row.record_status)
                    .ok_or_else(|| AppError::internal_msg("bad record status"))?)
            }
            async fn sensitivity(&self) -> Result<Sensitivity> {
                Ok(Sensitivity::parse(&self.0.rec.row.sensitivity)
                    .ok_or_else(|| AppError::internal_msg("bad sensitivity"))?)
            }
            /// Earlier versions, oldest first, with who changed what and when.
            async fn history(&self, ctx: &Context<'_>) -> Result<Vec<RecordVersion>> {
                Ok(history(ctx, &self.0).await?)
            }
            /// The record as a FHIR R4 resource.
            async fn fhir(&self) -> Json<serde_json::Value> {
                Json(super::fhir::resource(&self.0.rec, None))
            }
            /// Who read or changed this record, when, and under which grant (the patient,
            /// or ADMIN; FORBIDDEN for anyone else).
            #[graphql(
                complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
            )]
            async fn access_history(
                &self,
                ctx: &Context<'_>,
                #[graphql(default = 20)] first: i32,
                after: Option<String>,
            ) -> Result<Option<AccessHistoryConnection>> {
                let state = ctx.state()?;
                let viewer = ctx.viewer()?;
                let row = &self.0.rec.row;
                Ok(Some(
                    crate::access::history::page(state, viewer, row.patient_id, Some(row.id), first, after)
                        .await?,
                ))
            }
            /// The patient's requests to correct this record (45 CFR 164.526), oldest first,
            /// with their answers and any statement of disagreement: for whoever may read the
            /// record. Audited.
            async fn correction_requests(
                &self,
                ctx: &Context<'_>,
            ) -> Result<Option<Vec<CorrectionRequest>>> {
                Ok(Some(
                    super::corrections::of_record(ctx, &self.0.rec.row, &self.0.under).await?,
                ))
            }
            $($fields)*
        }
    };
}

record_type!(
    /// A laboratory result.
    LabResult, Lab => LabContent, {
    /// Test code in `system` (LOINC unless the lab says otherwise).
    async fn code(&self) -> &str {
        &self.c().code
    }
    async fn system(&self) -> &str {
        &self.c().system
    }
    /// The test's name as the lab reports it.
    async fn display(&self) -> Option<&str> {
        self.c().display.as_deref()
    }
    async fn value(&self) -> &str {
        &self.c().value
    }
    /// UCUM unit.
    async fn unit(&self) -> Option<&str> {
        self.c().unit.as_deref()
    }
    async fn reference_range(&self) -> Option<&str> {
        self.c().reference_range.as_deref()
    }
    async fn abnormal(&self) -> bool {
        self.c().abnormal
    }
    async fn observed_at(&self) -> DateTime<Utc> {
        self.0.rec.row.occurred_at
    }
});

record_type!(
    /// A note written at a visit.
    VisitNote, Note => NoteContent, {
    /// Provider id of the author.
    async fn author_id(&self) -> Option<ID> {
        provider(&self.0)
    }
    /// Who wrote it.
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<Provider>> {
        Ok(provider_of(ctx, &self.0).await?)
    }
    async fn encounter_on(&self) -> NaiveDate {
        self.0.rec.row.occurred_at.date_naive()
    }
    async fn text(&self) -> &str {
        &self.c().text
    }
});

record_type!(
    /// A medication prescribed.
    Medication, Medication => MedicationContent, {
    async fn drug(&self) -> &str {
        &self.c().drug
    }
    async fn dose(&self) -> &str {
        &self.c().dose
    }
    async fn route(&self) -> &str {
        &self.c().route
    }
    async fn frequency(&self) -> &str {
        &self.c().frequency
    }
    /// Provider id of the prescriber.
    async fn prescriber_id(&self) -> Option<ID> {
        provider(&self.0)
    }
    /// Who prescribed it.
    async fn prescriber(&self, ctx: &Context<'_>) -> Result<Option<Provider>> {
        Ok(provider_of(ctx, &self.0).await?)
    }
    async fn status(&self) -> Result<MedicationStatus> {
        Ok(self.0.rec.row.status.as_deref().and_then(MedicationStatus::parse)
            .ok_or_else(|| AppError::internal_msg("bad medication status"))?)
    }
    async fn start_on(&self) -> NaiveDate {
        self.0.rec.row.occurred_at.date_naive()
    }
    async fn stop_on(&self) -> Option<NaiveDate> {
        self.c().stop_on
    }
    async fn stop_reason(&self) -> Option<&str> {
        self.c().stop_reason.as_deref()
    }
});

record_type!(
    /// An allergy or intolerance.
    Allergy, Allergy => AllergyContent, {
    /// What the patient reacts to.
    async fn substance(&self) -> &str {
        &self.c().substance
    }
    async fn reaction(&self) -> Option<&str> {
        self.c().reaction.as_deref()
    }
    async fn severity(&self) -> AllergySeverity {
        self.c().severity
    }
    async fn status(&self) -> Result<AllergyStatus> {
        Ok(self.0.rec.row.status.as_deref().and_then(AllergyStatus::parse)
            .ok_or_else(|| AppError::internal_msg("bad allergy status"))?)
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.c().resolved_at
    }
});

record_type!(
    /// A vaccine given, coded in CVX.
    Immunization, Immunization => ImmunizationContent, {
    async fn cvx_code(&self) -> &str {
        &self.c().cvx_code
    }
    /// The CVX table's name for the code.
    async fn vaccine(&self) -> &str {
        &self.c().vaccine
    }
    async fn administered_on(&self) -> NaiveDate {
        self.0.rec.row.occurred_at.date_naive()
    }
    async fn lot(&self) -> Option<&str> {
        self.c().lot.as_deref()
    }
    async fn site(&self) -> Option<&str> {
        self.c().site.as_deref()
    }
    async fn route(&self) -> Option<&str> {
        self.c().route.as_deref()
    }
    async fn dose(&self) -> Option<&str> {
        self.c().dose.as_deref()
    }
    async fn dose_unit(&self) -> Option<&str> {
        self.c().dose_unit.as_deref()
    }
    /// Provider id of who gave it.
    async fn performer_id(&self) -> Option<ID> {
        provider(&self.0)
    }
    /// Who gave it.
    async fn performer(&self, ctx: &Context<'_>) -> Result<Option<Provider>> {
        Ok(provider_of(ctx, &self.0).await?)
    }
});

record_type!(
    /// A clinical document (a scan, a letter, a report).
    ClinicalDocument, Document => DocumentContent, {
    async fn title(&self) -> &str {
        &self.c().title
    }
    async fn document_type(&self) -> &str {
        &self.c().document_type
    }
    async fn classification(&self) -> Option<&str> {
        self.c().classification.as_deref()
    }
    async fn content_type(&self) -> &str {
        &self.c().content_type
    }
    /// Size of the content in bytes.
    async fn size(&self) -> u32 {
        self.c().size
    }
    /// The document itself, base64. Loaded only when asked for; audited.
    async fn content(&self, ctx: &Context<'_>) -> Result<String> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let row = &self.0.rec.row;
        let body = family::document_body(&state.db, &state.keys, row.id, self.c().blob_id).await?;
        audit_read(ctx,
                AuditEvent::by(viewer, "record.read_content", "medical_record")
                    .scope(&self.0.under)
                    .resource(row.id.to_string()),
            )
            .await?;
        Ok(base64::engine::general_purpose::STANDARD.encode(body))
    }
});

fn provider(n: &Node) -> Option<ID> {
    n.rec.row.provider_id.map(|p| ID(p.to_string()))
}

/// The provider a record names, from the directory (batched by the providers loader;
/// provider names are not patient PHI).
async fn provider_of(ctx: &Context<'_>, n: &Node) -> AppResult<Option<Provider>> {
    match n.rec.row.provider_id {
        Some(id) => crate::appointments::graphql::provider_by_id(ctx, id).await,
        None => Ok(None),
    }
}

/// A patient's medical record, of any kind.
// Several fields share a type: not a repeated attribute, whatever clippy reads into it.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface, Clone)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "kind", ty = "RecordKind"),
    field(name = "recorded_at", ty = "DateTime<Utc>"),
    field(name = "recorded_by", ty = "ID"),
    field(name = "version", ty = "i32"),
    field(name = "record_status", ty = "RecordStatus"),
    field(name = "sensitivity", ty = "Sensitivity"),
    field(name = "history", ty = "Vec<RecordVersion>"),
    field(name = "fhir", ty = "Json<serde_json::Value>"),
    field(
        name = "access_history",
        ty = "Option<AccessHistoryConnection>",
        arg(name = "first", ty = "i32", default = 20),
        arg(name = "after", ty = "Option<String>")
    ),
    field(name = "correction_requests", ty = "Option<Vec<CorrectionRequest>>")
)]
pub enum MedicalRecord {
    LabResult(LabResult),
    VisitNote(VisitNote),
    Medication(Medication),
    Allergy(Allergy),
    Immunization(Immunization),
    ClinicalDocument(ClinicalDocument),
}

impl MedicalRecord {
    /// The record's GraphQL type, under what it was obtained with.
    pub fn new(rec: Record, under: Under) -> Self {
        let kind = rec.kind();
        let n = Node { rec, under };
        match kind {
            RecordKind::LabResult => MedicalRecord::LabResult(LabResult(n)),
            RecordKind::VisitNote => MedicalRecord::VisitNote(VisitNote(n)),
            RecordKind::Medication => MedicalRecord::Medication(Medication(n)),
            RecordKind::Allergy => MedicalRecord::Allergy(Allergy(n)),
            RecordKind::Immunization => MedicalRecord::Immunization(Immunization(n)),
            RecordKind::Document => MedicalRecord::ClinicalDocument(ClinicalDocument(n)),
        }
    }
}

/// How a version was replaced.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum RecordChange {
    Amend,
    EnteredInError,
    Stop,
    Resolve,
    /// Amended to accept the patient's correction request.
    Correction,
}

crate::text_enum!(RecordChange {
    Amend => "AMEND",
    EnteredInError => "ENTERED_IN_ERROR",
    Stop => "STOP",
    Resolve => "RESOLVE",
    Correction => "CORRECTION",
});

/// An earlier version of a record, and the change that replaced it.
#[derive(SimpleObject)]
pub struct RecordVersion {
    pub version: i32,
    /// The record as it was in this version.
    pub record: MedicalRecord,
    /// User id of who made this version, and when.
    pub made_by: ID,
    pub made_at: DateTime<Utc>,
    pub change: RecordChange,
    /// User id of who replaced it, when, and why.
    pub changed_by: ID,
    pub changed_at: DateTime<Utc>,
    pub reason: Option<String>,
}

async fn history(ctx: &Context<'_>, n: &Node) -> AppResult<Vec<RecordVersion>> {
    let state = ctx.state()?;
    let versions = family::history(&state.db, &state.keys, &n.rec.row).await?;
    versions
        .into_iter()
        .map(|v| {
            let row = entity::medical_records::Model {
                status: v.row.status.clone(),
                record_status: v.row.record_status.clone(),
                sensitivity: v.row.sensitivity.clone(),
                version: v.row.version,
                occurred_at: v.row.occurred_at,
                updated_at: v.row.made_at,
                updated_by: v.row.made_by,
                ..n.rec.row.clone()
            };
            Ok(RecordVersion {
                version: v.row.version,
                record: MedicalRecord::new(
                    Record {
                        row,
                        content: v.content,
                    },
                    n.under.clone(),
                ),
                made_by: ID(v.row.made_by.to_string()),
                made_at: v.row.made_at,
                change: RecordChange::parse(&v.row.change)
                    .ok_or_else(|| AppError::internal_msg("bad record change"))?,
                changed_by: ID(v.row.changed_by.to_string()),
                changed_at: v.row.changed_at,
                reason: v.reason,
            })
        })
        .collect()
}

impl relay::Node for MedicalRecord {
    const NAME: &'static str = "MedicalRecord";
}
impl relay::Node for LabResult {
    const NAME: &'static str = "LabResult";
}
impl relay::Node for VisitNote {
    const NAME: &'static str = "VisitNote";
}
impl relay::Node for Immunization {
    const NAME: &'static str = "Immunization";
}
impl relay::Node for ClinicalDocument {
    const NAME: &'static str = "ClinicalDocument";
}

/// Records cursors: `r1:<occurred_at micros>/<id>`.
const CURSOR: &str = "r1";

fn cursor(r: &Record) -> String {
    relay::encode_time_cursor(CURSOR, r.row.occurred_at, r.row.id)
}

fn position(after: &str) -> AppResult<family::Position> {
    relay::decode_time_cursor(CURSOR, after)
}

/// Filters on `Patient.records`.
#[derive(InputObject, Default)]
pub struct RecordFilter {
    /// Only these kinds. Asking for a kind your grant lacks is CONSENT_REQUIRED.
    pub kinds: Option<Vec<RecordKind>>,
    /// Event time at or after.
    pub from: Option<DateTime<Utc>>,
    /// Event time before.
    pub to: Option<DateTime<Utc>>,
    /// Exact code (lab code or CVX code).
    pub code: Option<String>,
    #[graphql(default = false)]
    pub include_entered_in_error: bool,
}

/// The audit row of a list read: which records were shown (ids and kinds, no values).
fn list_read(viewer: &Viewer, grant: &ReadGrant, field: &str, records: &[Record]) -> AuditEvent {
    let ids: Vec<String> = records.iter().map(|r| r.row.id.to_string()).collect();
    AuditEvent::by(viewer, "record.read", "patient")
        .scope(grant)
        .resource(grant.patient_id().to_string())
        .detail(serde_json::json!({ "field": field, "count": records.len(), "records": ids }))
}

/// One page of a patient's records of `kinds` (None: every kind the grant covers).
#[allow(clippy::too_many_arguments)]
async fn page<N: relay::Node>(
    ctx: &Context<'_>,
    patient_id: Uuid,
    field: &'static str,
    kinds: Option<&[RecordKind]>,
    filter: &RecordFilter,
    first: i32,
    after: Option<String>,
    node: impl Fn(Record, Under) -> N,
) -> AppResult<Connection<N>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let first = relay::page_size(first)?;
    let after = after.as_deref().map(position).transpose()?;
    let grant = scope::read(state, viewer, patient_id, kinds, "record.read").await?;
    let code = match &filter.code {
        Some(c) => {
            let c = short_text("code", c, 64)?;
            Some(
                grant
                    .set()
                    .kinds()
                    .iter()
                    .map(|k| family::code_filter(&state.keys, *k, &c))
                    .collect(),
            )
        }
        None => None,
    };
    let list = family::ListFilter {
        from: filter.from,
        to: filter.to,
        code,
        include_entered_in_error: filter.include_entered_in_error,
        status: None,
    };
    let want_total = ctx.look_ahead().field("totalCount").exists();
    let p = family::page(
        &state.db,
        state.service::<super::reads::RecordReads>()?,
        &state.keys,
        grant.set(),
        &list,
        first,
        after,
        want_total,
    )
    .await?;
    audit_read(ctx, list_read(viewer, &grant, field, &p.records)).await?;
    let under = Under::from(grant);
    let edges: Vec<Edge<N>> = p
        .records
        .into_iter()
        .map(|r| Edge {
            cursor: cursor(&r),
            node: node(r, under.clone()),
        })
        .collect();
    Ok(Connection {
        page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), p.has_next, after.is_some()),
        edges,
        total_count: p.total.unwrap_or(0),
    })
}

/// The patient's records across kinds, newest first, limited to what the viewer's grant
/// covers (a care-team provider sees only the categories the patient consented to).
pub async fn records(
    ctx: &Context<'_>,
    patient_id: Uuid,
    filter: Option<RecordFilter>,
    first: i32,
    after: Option<String>,
) -> AppResult<Connection<MedicalRecord>> {
    let filter = filter.unwrap_or_default();
    let kinds = filter.kinds.clone();
    page(
        ctx,
        patient_id,
        "records",
        kinds.as_deref(),
        &filter,
        first,
        after,
        MedicalRecord::new,
    )
    .await
}

macro_rules! kind_page {
    ($fn:ident, $field:literal, $kind:ident, $ty:ident) => {
        /// One page of the patient's records of this kind, newest first.
        pub async fn $fn(
            ctx: &Context<'_>,
            patient_id: Uuid,
            first: i32,
            after: Option<String>,
        ) -> AppResult<Connection<$ty>> {
            page(
                ctx,
                patient_id,
                $field,
                Some(&[RecordKind::$kind]),
                &RecordFilter::default(),
                first,
                after,
                |rec, under| $ty(Node { rec, under }),
            )
            .await
        }
    };
}

kind_page!(lab_results, "labResults", LabResult, LabResult);
kind_page!(visit_notes, "visitNotes", VisitNote, VisitNote);
kind_page!(immunizations, "immunizations", Immunization, Immunization);
kind_page!(documents, "documents", Document, ClinicalDocument);

/// The patient's medications (all, or only ACTIVE ones), oldest first; batched across
/// patients by the DataLoader.
pub async fn medications(
    ctx: &Context<'_>,
    patient_id: Uuid,
    active_only: bool,
) -> AppResult<Vec<Medication>> {
    let status = active_only.then_some(MedicationStatus::Active.as_str());
    let rows = by_patient(
        ctx,
        patient_id,
        RecordKind::Medication,
        "medications",
        status,
    )
    .await?;
    Ok(rows
        .0
        .into_iter()
        .map(|rec| {
            Medication(Node {
                rec,
                under: rows.1.clone(),
            })
        })
        .collect())
}

/// The patient's allergies, oldest first; batched across patients by the DataLoader.
pub async fn allergies(ctx: &Context<'_>, patient_id: Uuid) -> AppResult<Vec<Allergy>> {
    let (rows, under) = by_patient(ctx, patient_id, RecordKind::Allergy, "allergies", None).await?;
    Ok(rows
        .into_iter()
        .map(|rec| {
            Allergy(Node {
                rec,
                under: under.clone(),
            })
        })
        .collect())
}

async fn by_patient(
    ctx: &Context<'_>,
    patient_id: Uuid,
    kind: RecordKind,
    field: &'static str,
    status: Option<&'static str>,
) -> AppResult<(Vec<Record>, Under)> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let grant = scope::read(state, viewer, patient_id, Some(&[kind]), "record.read").await?;
    let reads = state.service::<super::reads::RecordReads>()?;
    let rows = family::all(reads, &state.keys, grant.set(), status).await?;
    audit_read(ctx, list_read(viewer, &grant, field, &rows)).await?;
    Ok((rows, grant.into()))
}

#[derive(Default)]
pub struct RecordsQuery;

#[Object]
impl RecordsQuery {
    /// One medical record. NOT_FOUND both when it does not exist and when you may not see
    /// it (a SENSITIVE record without the SENSITIVE consent included).
    async fn record(&self, ctx: &Context<'_>, id: ID) -> Result<MedicalRecord> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = relay::parse_id("id", &id)?;
        let (grant, rec) = scope::one(state, viewer, id, "record.read").await?;
        audit_read(
            ctx,
            AuditEvent::by(viewer, "record.read", "medical_record")
                .scope(&grant)
                .resource(id.to_string())
                .detail(read_detail(&grant, &rec.row.kind)),
        )
        .await?;
        Ok(MedicalRecord::new(rec, grant.into()))
    }
}

/// A clinical document attached to a message, as the viewer may read it: `None` when they
/// may not (no DOCUMENTS consent, a SENSITIVE document without that consent, no access),
/// which the message shows as withheld. A read is audited like `record(id)`; a refusal is
/// audited by `scope::one`.
pub async fn attached_document(
    ctx: &Context<'_>,
    viewer: &Viewer,
    id: Uuid,
) -> AppResult<Option<ClinicalDocument>> {
    let state = ctx.state()?;
    match scope::one(state, viewer, id, "record.read").await {
        Ok((grant, rec)) if rec.kind() == RecordKind::Document => {
            audit_read(
                ctx,
                AuditEvent::by(viewer, "record.read", "medical_record")
                    .scope(&grant)
                    .resource(id.to_string())
                    .detail(read_detail(&grant, &rec.row.kind)),
            )
            .await?;
            Ok(Some(ClinicalDocument(Node {
                rec,
                under: grant.into(),
            })))
        }
        Ok(_) => Ok(None),
        Err(e) if withheld(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the viewer may attach record `id` to a message about `patient_id`: a clinical
/// document of that patient that they may read.
pub async fn attachable(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    id: Uuid,
) -> AppResult<bool> {
    match scope::one(state, viewer, id, "message.attach").await {
        Ok((_, rec)) => Ok(rec.kind() == RecordKind::Document && rec.row.patient_id == patient_id),
        Err(e) if withheld(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The refusals that leave a document withheld rather than fail the request.
fn withheld(e: &AppError) -> bool {
    matches!(
        e,
        AppError::NotFound | AppError::ConsentRequired { .. } | AppError::Forbidden(_)
    )
}

/// A single read's audit detail: the kind, and the basis when it rests on a share.
fn read_detail(grant: &ReadGrant, kind: &str) -> serde_json::Value {
    if grant.shared() {
        serde_json::json!({ "kind": kind, "basis": crate::access::history::SHARE_BASIS })
    } else {
        serde_json::json!({ "kind": kind })
    }
}

/// Everything a new record is made of, parsed from one of the inputs below.
struct Parsed {
    content: Content,
    sensitivity: Sensitivity,
    occurred_at: DateTime<Utc>,
    provider_id: Option<Uuid>,
    body: Option<Vec<u8>>,
}

fn day(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

fn not_future(field: &'static str, t: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    // A minute of clock skew between a client and the server is not an error.
    if t > Utc::now() + chrono::Duration::minutes(1) {
        return Err(AppError::validation(field, "must not be in the future"));
    }
    Ok(t)
}

fn provider_arg(viewer: &Viewer, id: Option<&ID>, field: &'static str) -> AppResult<Option<Uuid>> {
    match id {
        Some(id) => relay::parse_id(field, id).map(Some),
        None => Ok(viewer.provider_id),
    }
}

/// A new lab result.
#[derive(InputObject)]
pub struct RecordLabResultInput {
    pub code: String,
    #[graphql(default = "http://loinc.org")]
    pub system: String,
    pub display: Option<String>,
    pub value: String,
    /// UCUM unit.
    pub unit: Option<String>,
    pub reference_range: Option<String>,
    #[graphql(default = false)]
    pub abnormal: bool,
    pub observed_at: DateTime<Utc>,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl RecordLabResultInput {
    fn parse(&self) -> AppResult<Parsed> {
        Ok(Parsed {
            content: Content::Lab(LabContent {
                code: short_text("code", &self.code, 64)?,
                system: short_text("system", &self.system, 200)?,
                display: short_text_opt("display", self.display.as_deref(), 200)?,
                value: short_text("value", &self.value, 200)?,
                unit: short_text_opt("unit", self.unit.as_deref(), 40)?,
                reference_range: short_text_opt(
                    "referenceRange",
                    self.reference_range.as_deref(),
                    100,
                )?,
                abnormal: self.abnormal,
            }),
            sensitivity: self.sensitivity,
            occurred_at: not_future("observedAt", self.observed_at)?,
            provider_id: None,
            body: None,
        })
    }
}

/// A new visit note.
#[derive(InputObject)]
pub struct AddVisitNoteInput {
    pub encounter_on: NaiveDate,
    pub text: String,
    /// The author's provider id; the signed-in provider when omitted.
    pub author_id: Option<ID>,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl AddVisitNoteInput {
    fn parse(&self, viewer: &Viewer) -> AppResult<Parsed> {
        Ok(Parsed {
            content: Content::Note(NoteContent {
                text: parse_clinical_text("text", &self.text, 20_000)?,
            }),
            sensitivity: self.sensitivity,
            occurred_at: not_future("encounterOn", day(self.encounter_on))?,
            provider_id: provider_arg(viewer, self.author_id.as_ref(), "authorId")?,
            body: None,
        })
    }
}

/// A new prescription.
#[derive(InputObject)]
pub struct PrescribeMedicationInput {
    pub drug: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    pub start_on: NaiveDate,
    pub stop_on: Option<NaiveDate>,
    /// The prescriber's provider id; the signed-in provider when omitted.
    pub prescriber_id: Option<ID>,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl PrescribeMedicationInput {
    fn parse(&self, viewer: &Viewer) -> AppResult<Parsed> {
        if self.stop_on.is_some_and(|s| s < self.start_on) {
            return Err(AppError::validation("stopOn", "must not be before startOn"));
        }
        Ok(Parsed {
            content: Content::Medication(MedicationContent {
                drug: short_text("drug", &self.drug, 200)?,
                dose: short_text("dose", &self.dose, 100)?,
                route: short_text("route", &self.route, 100)?,
                frequency: short_text("frequency", &self.frequency, 100)?,
                stop_on: self.stop_on,
                stop_reason: None,
            }),
            sensitivity: self.sensitivity,
            occurred_at: day(self.start_on),
            provider_id: provider_arg(viewer, self.prescriber_id.as_ref(), "prescriberId")?,
            body: None,
        })
    }
}

/// A new allergy.
#[derive(InputObject)]
pub struct RecordAllergyInput {
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: AllergySeverity,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl RecordAllergyInput {
    fn parse(&self) -> AppResult<Parsed> {
        Ok(Parsed {
            content: Content::Allergy(AllergyContent {
                substance: parse_clinical_text("substance", &self.substance, 200)?,
                reaction: self
                    .reaction
                    .as_deref()
                    .map(|r| parse_clinical_text("reaction", r, 1000))
                    .transpose()?,
                severity: self.severity,
                resolved_at: None,
                resolved_by: None,
            }),
            sensitivity: self.sensitivity,
            occurred_at: Utc::now(),
            provider_id: None,
            body: None,
        })
    }
}

/// A vaccine given.
#[derive(InputObject)]
pub struct RecordImmunizationInput {
    /// CVX code (CDC); an unknown code is VALIDATION.
    pub cvx_code: String,
    pub administered_on: NaiveDate,
    pub lot: Option<String>,
    pub site: Option<String>,
    pub route: Option<String>,
    pub dose: Option<String>,
    pub dose_unit: Option<String>,
    /// Who gave it (provider id); the signed-in provider when omitted.
    pub performer_id: Option<ID>,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl RecordImmunizationInput {
    fn parse(&self, viewer: &Viewer) -> AppResult<Parsed> {
        let vaccine = super::cvx::vaccine(&self.cvx_code).ok_or(AppError::validation(
            "cvxCode",
            "is not a CVX code in the CDC table",
        ))?;
        Ok(Parsed {
            content: Content::Immunization(ImmunizationContent {
                cvx_code: vaccine.code.to_owned(),
                vaccine: vaccine.name.to_owned(),
                lot: short_text_opt("lot", self.lot.as_deref(), 40)?,
                site: short_text_opt("site", self.site.as_deref(), 100)?,
                route: short_text_opt("route", self.route.as_deref(), 100)?,
                dose: short_text_opt("dose", self.dose.as_deref(), 20)?,
                dose_unit: short_text_opt("doseUnit", self.dose_unit.as_deref(), 20)?,
            }),
            sensitivity: self.sensitivity,
            occurred_at: not_future("administeredOn", day(self.administered_on))?,
            provider_id: provider_arg(viewer, self.performer_id.as_ref(), "performerId")?,
            body: None,
        })
    }
}

/// A new clinical document.
#[derive(InputObject)]
pub struct AddDocumentInput {
    pub title: String,
    pub document_type: String,
    pub classification: Option<String>,
    pub content_type: String,
    /// The document, base64 (standard alphabet), at most 1 MiB decoded.
    pub content: String,
    #[graphql(default_with = "Sensitivity::Normal")]
    pub sensitivity: Sensitivity,
}

impl AddDocumentInput {
    fn parse(&self) -> AppResult<Parsed> {
        // Checked before decoding: base64 is 4 characters per 3 bytes.
        if self.content.len() > family::MAX_DOCUMENT_BYTES.div_ceil(3) * 4 + 4 {
            return Err(AppError::validation("content", "must be at most 1 MiB"));
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(self.content.trim())
            .map_err(|_| AppError::validation("content", "must be base64"))?;
        if body.is_empty() {
            return Err(AppError::validation("content", "must not be empty"));
        }
        if body.len() > family::MAX_DOCUMENT_BYTES {
            return Err(AppError::validation("content", "must be at most 1 MiB"));
        }
        Ok(Parsed {
            content: Content::Document(DocumentContent {
                title: short_text("title", &self.title, 200)?,
                document_type: short_text("documentType", &self.document_type, 100)?,
                classification: short_text_opt(
                    "classification",
                    self.classification.as_deref(),
                    100,
                )?,
                content_type: content_type(&self.content_type)?,
                blob_id: Uuid::nil(),
                size: 0,
            }),
            sensitivity: self.sensitivity,
            occurred_at: Utc::now(),
            provider_id: None,
            body: Some(body),
        })
    }
}

/// A record's new content: exactly one field, of the record's own kind.
#[derive(InputObject, Default)]
pub struct AmendRecordInput {
    pub lab_result: Option<RecordLabResultInput>,
    pub visit_note: Option<AddVisitNoteInput>,
    pub medication: Option<PrescribeMedicationInput>,
    pub allergy: Option<RecordAllergyInput>,
    pub immunization: Option<RecordImmunizationInput>,
    pub document: Option<AddDocumentInput>,
}

impl AmendRecordInput {
    fn parse(&self, viewer: &Viewer) -> AppResult<Parsed> {
        let given = [
            self.lab_result.is_some(),
            self.visit_note.is_some(),
            self.medication.is_some(),
            self.allergy.is_some(),
            self.immunization.is_some(),
            self.document.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(AppError::validation(
                "input",
                "give exactly one field: the record's kind",
            ));
        }
        if let Some(i) = &self.lab_result {
            return i.parse();
        }
        if let Some(i) = &self.visit_note {
            return i.parse(viewer);
        }
        if let Some(i) = &self.medication {
            return i.parse(viewer);
        }
        if let Some(i) = &self.allergy {
            return i.parse();
        }
        if let Some(i) = &self.immunization {
            return i.parse(viewer);
        }
        match &self.document {
            Some(i) => i.parse(),
            None => Err(AppError::validation("input", "give exactly one field")),
        }
    }
}

/// A record's new content, parsed from an [`AmendRecordInput`] and checked, to apply to the
/// record as it is stored at the time of the change ([`Amendment::apply`]).
pub(super) struct Amendment(Parsed);

impl AmendRecordInput {
    /// Parse the input and check the provider it names exists (VALIDATION otherwise).
    pub(super) async fn amendment(
        &self,
        state: &AppState,
        viewer: &Viewer,
    ) -> AppResult<Amendment> {
        let parsed = self.parse(viewer)?;
        if let Some(provider) = parsed.provider_id {
            ensure_provider(state, provider).await?;
        }
        Ok(Amendment(parsed))
    }
}

impl Amendment {
    /// The record `r` after the amendment: of its own kind only, its sensitivity unchanged
    /// (VALIDATION otherwise); what the amendment does not describe stays as it was.
    pub(super) fn apply(self, r: &Record) -> AppResult<Changed> {
        if self.0.content.kind() != r.kind() {
            return Err(AppError::validation(
                "input",
                "must be the record's own kind",
            ));
        }
        if self.0.sensitivity.as_str() != r.row.sensitivity {
            return Err(AppError::validation(
                "sensitivity",
                "cannot change by amendment; mark the record entered in error and record it again",
            ));
        }
        let mut content = self.0.content;
        // A document amended without new content keeps its body.
        if let (Content::Document(new), Content::Document(old), None) =
            (&mut content, &r.content, &self.0.body)
        {
            new.blob_id = old.blob_id;
            new.size = old.size;
        }
        // What the amendment does not describe stays as it was.
        if let (Content::Allergy(new), Content::Allergy(old)) = (&mut content, &r.content) {
            new.resolved_at = old.resolved_at;
            new.resolved_by = old.resolved_by;
        }
        if let (Content::Medication(new), Content::Medication(old)) = (&mut content, &r.content)
            && new.stop_reason.is_none()
        {
            new.stop_reason = old.stop_reason.clone();
        }
        let occurred_at = match r.kind() {
            RecordKind::Allergy | RecordKind::Document => r.row.occurred_at,
            _ => self.0.occurred_at,
        };
        Ok(Changed {
            content,
            status: r.row.status.clone(),
            record_status: RecordStatus::Amended,
            occurred_at,
            body: self.0.body,
        })
    }
}

/// Hash input for idempotency: the operation's full request, as text (sealed into a keyed
/// hash, never stored).
fn request_text(patient_id: Uuid, p: &Parsed) -> AppResult<String> {
    let body = p
        .body
        .as_ref()
        .map(|b| hex::encode(ring_digest(b)))
        .unwrap_or_default();
    let json = String::from_utf8(p.content.to_json()?)
        .map_err(|_| AppError::internal_msg("record content is not text"))?;
    Ok(format!(
        "{patient_id}|{}|{}|{:?}|{json}|{body}",
        p.sensitivity.as_str(),
        p.occurred_at.timestamp_micros(),
        p.provider_id
    ))
}

fn ring_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Create a record of the kind `parsed` holds, under the write grant for its category.
async fn create(
    ctx: &Context<'_>,
    patient_id: &ID,
    parsed: AppResult<Parsed>,
    operation: &'static str,
    idempotency_key: Option<String>,
) -> Result<MedicalRecord> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let patient_id = relay::parse_id("patientId", patient_id)?;
    let p = parsed?;
    if let Some(provider) = p.provider_id {
        ensure_provider(state, provider).await?;
    }
    let idem = idempotency_key
        .as_deref()
        .map(|k| {
            let k = short_text("idempotencyKey", k, 200)?;
            Ok::<_, AppError>(Idempotency::new(
                &state.keys,
                &k,
                operation,
                &request_text(patient_id, &p)?,
            ))
        })
        .transpose()?;
    let kind = p.content.kind();
    let grant = scope::write(
        state,
        viewer,
        patient_id,
        kind,
        p.sensitivity == Sensitivity::Sensitive,
        "record.create",
    )
    .await?;
    let mut tx = WriteTxn::begin(&state.db).await?;
    let rec = family::create(
        &mut tx,
        &state.keys,
        viewer,
        &grant,
        NewRecord {
            content: p.content,
            sensitivity: p.sensitivity,
            occurred_at: p.occurred_at,
            provider_id: p.provider_id,
            body: p.body,
        },
        idem.as_ref(),
    )
    .await?;
    tx.commit().await?;
    if rec.kind() != kind {
        return Err(AppError::Conflict(
            "this idempotency key was already used with a different input; use a new key",
        )
        .into());
    }
    let written = Under::Written(rec.row.patient_id);
    Ok(MedicalRecord::new(rec, written))
}

/// The provider id names a provider (VALIDATION otherwise).
async fn ensure_provider(state: &AppState, id: Uuid) -> AppResult<()> {
    use sea_orm::EntityTrait;
    match entity::providers::Entity::find_by_id(id)
        .one(&state.db)
        .await?
    {
        Some(_) => Ok(()),
        None => Err(AppError::validation("providerId", "is not a provider")),
    }
}

/// Change an existing record: the grant is for the record's category (and SENSITIVE when
/// the record is or becomes sensitive); `f` computes the new state from the current one.
async fn modify(
    ctx: &Context<'_>,
    id: &ID,
    how: Change,
    reason: Option<String>,
    expected_version: Option<i32>,
    f: impl FnOnce(&Record) -> AppResult<Changed>,
) -> Result<MedicalRecord> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let id = relay::parse_id("id", id)?;
    let reason = reason.as_deref().map(parse_reason).transpose()?;
    let grant = scope::modify(state, viewer, id, how.action()).await?;
    let mut tx = WriteTxn::begin(&state.db).await?;
    let before = family::current(&tx, &state.keys, grant.patient_id(), id).await?;
    let after = f(&before)?;
    let rec = family::change(
        &mut tx,
        &state.keys,
        viewer,
        &grant,
        before,
        after,
        how,
        reason.as_deref(),
        expected_version,
    )
    .await?;
    tx.commit().await?;
    let written = Under::Written(rec.row.patient_id);
    Ok(MedicalRecord::new(rec, written))
}

#[derive(Default)]
pub struct RecordsMutation;

#[Object]
impl RecordsMutation {
    /// Record a lab result (care-team PROVIDER with RECORDS consent, or ADMIN).
    async fn record_lab_result(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: RecordLabResultInput,
        idempotency_key: Option<String>,
    ) -> Result<MedicalRecord> {
        create(
            ctx,
            &patient_id,
            input.parse(),
            "recordLabResult",
            idempotency_key,
        )
        .await
    }

    /// Add a visit note (care-team PROVIDER with RECORDS consent, or ADMIN).
    async fn add_visit_note(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: AddVisitNoteInput,
        idempotency_key: Option<String>,
    ) -> Result<MedicalRecord> {
        let parsed = input.parse(ctx.viewer()?);
        create(ctx, &patient_id, parsed, "addVisitNote", idempotency_key).await
    }

    /// Prescribe a medication (care-team PROVIDER with MEDICATIONS consent, or ADMIN).
    /// With an idempotency key, a double submission returns the first prescription.
    async fn prescribe_medication(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: PrescribeMedicationInput,
        idempotency_key: Option<String>,
    ) -> Result<MedicalRecord> {
        let parsed = input.parse(ctx.viewer()?);
        create(
            ctx,
            &patient_id,
            parsed,
            "prescribeMedication",
            idempotency_key,
        )
        .await
    }

    /// Stop an active medication, saying why.
    async fn stop_medication(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<MedicalRecord> {
        let why = parse_reason(&reason)?;
        modify(ctx, &id, Change::Stop, Some(reason), None, |r| {
            let Content::Medication(m) = &r.content else {
                return Err(AppError::validation("id", "is not a medication"));
            };
            if r.row.status.as_deref() == Some(MedicationStatus::Stopped.as_str()) {
                return Err(AppError::Conflict("the medication is already stopped"));
            }
            let mut m = m.clone();
            m.stop_on = Some(Utc::now().date_naive());
            m.stop_reason = Some(why);
            Ok(Changed {
                content: Content::Medication(m),
                status: Some(MedicationStatus::Stopped.as_str().into()),
                record_status: RecordStatus::parse(&r.row.record_status)
                    .unwrap_or(RecordStatus::Current),
                occurred_at: r.row.occurred_at,
                body: None,
            })
        })
        .await
    }

    /// Record an allergy (care-team PROVIDER with ALLERGIES consent, or ADMIN).
    async fn record_allergy(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: RecordAllergyInput,
        idempotency_key: Option<String>,
    ) -> Result<Allergy> {
        match create(
            ctx,
            &patient_id,
            input.parse(),
            "recordAllergy",
            idempotency_key,
        )
        .await?
        {
            MedicalRecord::Allergy(a) => Ok(a),
            _ => Err(AppError::internal_msg("an allergy write returned another kind").into()),
        }
    }

    /// Mark an allergy resolved (same rights as recording one).
    async fn resolve_allergy(&self, ctx: &Context<'_>, id: ID) -> Result<Allergy> {
        let viewer = ctx.viewer()?.user_id;
        let r = modify(ctx, &id, Change::Resolve, None, None, |r| {
            let Content::Allergy(a) = &r.content else {
                return Err(AppError::validation("id", "is not an allergy"));
            };
            if r.row.status.as_deref() == Some(AllergyStatus::Resolved.as_str()) {
                return Err(AppError::Conflict("the allergy is already resolved"));
            }
            let mut a = a.clone();
            a.resolved_at = Some(Utc::now());
            a.resolved_by = Some(viewer);
            Ok(Changed {
                content: Content::Allergy(a),
                status: Some(AllergyStatus::Resolved.as_str().into()),
                record_status: RecordStatus::parse(&r.row.record_status)
                    .unwrap_or(RecordStatus::Current),
                occurred_at: r.row.occurred_at,
                body: None,
            })
        })
        .await?;
        match r {
            MedicalRecord::Allergy(a) => Ok(a),
            _ => Err(AppError::internal_msg("an allergy change returned another kind").into()),
        }
    }

    /// Record an immunization (care-team PROVIDER with IMMUNIZATIONS consent, or ADMIN).
    async fn record_immunization(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: RecordImmunizationInput,
        idempotency_key: Option<String>,
    ) -> Result<MedicalRecord> {
        let parsed = input.parse(ctx.viewer()?);
        create(
            ctx,
            &patient_id,
            parsed,
            "recordImmunization",
            idempotency_key,
        )
        .await
    }

    /// Add a clinical document (care-team PROVIDER with DOCUMENTS consent, or ADMIN).
    async fn add_document(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: AddDocumentInput,
        idempotency_key: Option<String>,
    ) -> Result<MedicalRecord> {
        create(
            ctx,
            &patient_id,
            input.parse(),
            "addDocument",
            idempotency_key,
        )
        .await
    }

    /// Replace a record's content, keeping every prior version in `history`. A stale
    /// `expectedVersion` is CONFLICT.
    async fn amend_record(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i32,
        input: AmendRecordInput,
        reason: Option<String>,
    ) -> Result<MedicalRecord> {
        let amendment = input.amendment(ctx.state()?, ctx.viewer()?).await?;
        modify(
            ctx,
            &id,
            Change::Amend,
            reason,
            Some(expected_version),
            move |r| amendment.apply(r),
        )
        .await
    }

    /// Withdraw a record as a mistake. It stays, marked ENTERED_IN_ERROR, and leaves lists
    /// unless they ask for it; it can no longer change.
    async fn mark_entered_in_error(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<MedicalRecord> {
        modify(ctx, &id, Change::EnteredInError, Some(reason), None, |r| {
            Ok(Changed {
                content: r.content.clone(),
                status: r.row.status.clone(),
                record_status: RecordStatus::EnteredInError,
                occurred_at: r.row.occurred_at,
                body: None,
            })
        })
        .await
    }
}

/// The patient's FHIR export: `patient` (their Patient resource), every record the viewer's
/// grant covers (all kinds when it is the patient or an ADMIN; a provider's consented
/// categories; no records at all without any), documents with their content, and then
/// `extra`: resources other domains composed for the same viewer (the patient's
/// appointments), which must carry `resourceType` and `id`. A record whose correction was
/// denied and disputed carries the request, the denial and the patient's statement of
/// disagreement ([`super::fhir::with_disagreements`]), as 45 CFR 164.526(d)(5) asks of
/// every later disclosure. One audit row lists every resource it contained.
pub async fn fhir_export(
    ctx: &Context<'_>,
    patient_id: Uuid,
    patient: serde_json::Value,
    extra: Vec<serde_json::Value>,
) -> AppResult<serde_json::Value> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let grant = match scope::read(state, viewer, patient_id, None, "record.export").await {
        Ok(g) => Some(g),
        // No clinical category consented: the export holds the demographics only.
        Err(AppError::ConsentRequired { .. }) => None,
        Err(e) => return Err(e),
    };
    let mut resources = vec![patient];
    let mut disputed = Vec::new();
    if let Some(grant) = &grant {
        let all: Vec<Record> = family::by_sets(
            &state.db,
            &state.keys,
            std::slice::from_ref(grant.set()),
            &family::ListFilter::default(),
        )
        .await?
        .into_values()
        .flatten()
        .collect();
        let ids: Vec<Uuid> = all.iter().map(|r| r.row.id).collect();
        let mut corrections = super::corrections::by_records(&state.db, &state.keys, &ids).await?;
        for rec in all {
            let body = match &rec.content {
                Content::Document(d) => Some(
                    family::document_body(&state.db, &state.keys, rec.row.id, d.blob_id).await?,
                ),
                _ => None,
            };
            let mut r = super::fhir::resource(&rec, body.as_deref());
            let filed: Vec<_> = corrections
                .remove(&rec.row.id)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.disagreement.is_some())
                .collect();
            if !filed.is_empty() {
                disputed.extend(filed.iter().map(|c| c.row.id.to_string()));
                super::fhir::with_disagreements(&mut r, &filed);
            }
            resources.push(r);
        }
    }
    resources.extend(extra);
    let ids: Vec<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or("Resource"),
                r["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let cfg = &state.cfg;
    let base = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", cfg.bind_addr));
    let bundle = super::fhir::bundle(resources, &format!("{}/fhir", base.trim_end_matches('/')));
    let mut detail = serde_json::json!({ "count": ids.len(), "resources": ids });
    if !disputed.is_empty() {
        detail["disagreements"] = disputed.into();
    }
    let mut ev = AuditEvent::by(viewer, "patient.export", "patient")
        .patient(patient_id)
        .resource(patient_id.to_string())
        .detail(detail);
    if let Some(g) = &grant {
        ev = ev.scope(g);
    }
    state.audit.record(ev).await?;
    Ok(bundle)
}
