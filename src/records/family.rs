//! Storage of the medical-record family: one table for every kind, the content sealed as
//! JSON, every change keeping the prior version, every write audited in its transaction.
//!
//! Services take the caller's [`WriteTxn`], so a write and its audit row (and whatever else
//! the caller does in the same transaction) commit together or not at all. Reads take a
//! [`RecordSet`]: which patient, which kinds, and whether SENSITIVE records count, as
//! `access` decided them; they never widen it.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use uuid::Uuid;

use super::kinds::*;
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::db::keyset;
use crate::error::{AppError, AppResult};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use entity::{medical_record_versions, medical_records, record_blobs};

pub const TABLE: &str = "medical_records";
pub const VERSIONS: &str = "medical_record_versions";
pub const BLOBS: &str = "record_blobs";

/// Largest document body, decoded.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What a read may return: one patient's records of these kinds, SENSITIVE ones only when
/// `sensitive`. Built by `records::scope` from an `access` grant, never from bare ids.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordSet {
    pub(super) patient_id: Uuid,
    pub(super) kinds: Vec<RecordKind>,
    pub(super) sensitive: bool,
    /// Only this record (a share), when set.
    pub(super) record: Option<Uuid>,
}

impl RecordSet {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    pub fn kinds(&self) -> &[RecordKind] {
        &self.kinds
    }
    pub fn sensitive(&self) -> bool {
        self.sensitive
    }

    /// Whether a stored record falls inside this set.
    pub fn admits(&self, row: &medical_records::Model) -> bool {
        row.patient_id == self.patient_id
            && self.record.is_none_or(|r| r == row.id)
            && RecordKind::parse(&row.kind).is_some_and(|k| self.kinds.contains(&k))
            && (self.sensitive || row.sensitivity == Sensitivity::Normal.as_str())
    }

    /// The same condition in SQL, for lists, totals and cursors.
    pub(super) fn condition(&self) -> Condition {
        let mut c = Condition::all()
            .add(medical_records::Column::PatientId.eq(self.patient_id))
            .add(medical_records::Column::Kind.is_in(self.kinds.iter().map(|k| k.as_str())));
        if !self.sensitive {
            c = c.add(medical_records::Column::Sensitivity.eq(Sensitivity::Normal.as_str()));
        }
        if let Some(r) = self.record {
            c = c.add(medical_records::Column::Id.eq(r));
        }
        c
    }
}

/// A stored record with its content opened.
#[derive(Clone, Debug)]
pub struct Record {
    pub row: medical_records::Model,
    pub content: Content,
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        self.content.kind()
    }
}

fn slot<'a>(table: &'static str, column: &'static str, row: &'a Uuid) -> Slot<'a> {
    Slot { table, column, row }
}

/// Open a stored row.
pub fn open(keys: &KeyRing, row: medical_records::Model) -> AppResult<Record> {
    let kind = RecordKind::parse(&row.kind)
        .ok_or_else(|| AppError::internal_msg("stored record kind is unknown"))?;
    let json = keys
        .open(slot(TABLE, "content", &row.id), &row.content_enc)
        .map_err(AppError::internal)?;
    let content = Content::from_json(kind, &json)?;
    Ok(Record { row, content })
}

fn code_bidx(keys: &KeyRing, content: &Content) -> Option<Vec<u8>> {
    content
        .code()
        .map(|c| keys.blind_index(TABLE, "code", &format!("{}:{c}", content.kind().as_str())))
}

/// The blind index a `code` filter looks for among records of `kind`.
pub fn code_filter(keys: &KeyRing, kind: RecordKind, code: &str) -> Vec<u8> {
    keys.blind_index(
        TABLE,
        "code",
        &format!("{}:{}", kind.as_str(), code_index_form(code)),
    )
}

/// A record to write.
pub struct NewRecord {
    pub content: Content,
    pub sensitivity: Sensitivity,
    pub occurred_at: DateTime<Utc>,
    pub provider_id: Option<Uuid>,
    /// A document's body (decoded), stored sealed in `record_blobs`.
    pub body: Option<Vec<u8>>,
}

impl std::fmt::Debug for NewRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Content is PHI: only its shape.
        f.debug_struct("NewRecord")
            .field("kind", &self.content.kind())
            .field("sensitivity", &self.sensitivity)
            .finish_non_exhaustive()
    }
}

/// The kind's own status a new record starts in.
fn initial_status(kind: RecordKind) -> Option<&'static str> {
    match kind {
        RecordKind::Allergy => Some(super::types::AllergyStatus::Active.as_str()),
        RecordKind::Medication => Some(MedicationStatus::Active.as_str()),
        _ => None,
    }
}

/// Insert a record for `patient_id` (the caller holds the write grant) and its audit row.
/// With an idempotency key already used for the same request, returns the record that
/// request created instead (and audits the replay as a read).
pub async fn create(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &impl crate::audit::PatientGrant,
    new: NewRecord,
    idempotency: Option<&Idempotency>,
) -> AppResult<Record> {
    let patient_id = grant.patient_id();
    let kind = new.content.kind();
    if let Some(idem) = idempotency
        && let Some(prior) = idem.replay(tx, viewer.user_id).await?
    {
        let row = medical_records::Entity::find_by_id(prior)
            .filter(medical_records::Column::PatientId.eq(patient_id))
            .one(tx.conn())
            .await?
            .ok_or(AppError::Conflict(
                "this idempotency key was already used for another patient; use a new key",
            ))?;
        tx.audit(
            AuditEvent::by(viewer, "record.read", "medical_record")
                .scope(grant)
                .resource(prior.to_string())
                .detail(serde_json::json!({ "idempotentReplay": true, "kind": row.kind })),
        );
        return open(keys, row);
    }
    let id = Uuid::new_v4();
    let mut content = new.content;
    if let (Content::Document(d), Some(body)) = (&mut content, &new.body) {
        d.blob_id = insert_blob(tx.conn(), keys, id, patient_id, body).await?;
        d.size = body.len() as u32;
    }
    let row = build_row(
        keys,
        id,
        patient_id,
        viewer.user_id,
        &content,
        new.sensitivity,
        new.occurred_at,
        new.provider_id,
    )?;
    medical_records::Entity::insert(medical_records::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    if let Some(idem) = idempotency {
        idem.remember(tx, viewer.user_id, id).await?;
    }
    tx.audit(
        AuditEvent::by(viewer, "record.create", "medical_record")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({ "kind": kind.as_str() })),
    );
    Ok(Record { row, content })
}

/// A new record's row (version 1, CURRENT), its content sealed for `id`. Also what the demo
/// seed writes, so seeded records are stored exactly as the API stores them.
#[allow(clippy::too_many_arguments)]
pub fn build_row(
    keys: &KeyRing,
    id: Uuid,
    patient_id: Uuid,
    recorded_by: Uuid,
    content: &Content,
    sensitivity: Sensitivity,
    occurred_at: DateTime<Utc>,
    provider_id: Option<Uuid>,
) -> AppResult<medical_records::Model> {
    let now = Utc::now();
    let kind = content.kind();
    Ok(medical_records::Model {
        id,
        patient_id,
        kind: kind.as_str().to_owned(),
        status: initial_status(kind).map(str::to_owned),
        record_status: RecordStatus::Current.as_str().to_owned(),
        sensitivity: sensitivity.as_str().to_owned(),
        version: 1,
        occurred_at,
        recorded_at: now,
        recorded_by,
        provider_id,
        code_bidx: code_bidx(keys, content),
        content_enc: keys.seal(slot(TABLE, "content", &id), &content.to_json()?)?,
        updated_at: now,
        updated_by: recorded_by,
    })
}

/// Store a document body for record `record_id`; returns the blob's id.
pub async fn insert_blob(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    record_id: Uuid,
    patient_id: Uuid,
    body: &[u8],
) -> AppResult<Uuid> {
    let blob = Uuid::new_v4();
    record_blobs::Entity::insert(record_blobs::ActiveModel {
        id: Set(blob),
        record_id: Set(record_id),
        patient_id: Set(patient_id),
        content_enc: Set(keys.seal(slot(BLOBS, "content", &blob), body)?),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(db)
    .await?;
    Ok(blob)
}

/// The kind of change [`change`] makes, as the version row records it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Amend,
    EnteredInError,
    Stop,
    Resolve,
    /// An amendment that accepts the patient's correction request (45 CFR 164.526).
    Correction,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Amend => "AMEND",
            Change::EnteredInError => "ENTERED_IN_ERROR",
            Change::Stop => "STOP",
            Change::Resolve => "RESOLVE",
            Change::Correction => "CORRECTION",
        }
    }
    pub fn action(self) -> &'static str {
        match self {
            Change::Amend => "record.amend",
            Change::EnteredInError => "record.entered_in_error",
            Change::Stop => "record.stop",
            Change::Resolve => "record.resolve",
            Change::Correction => "record.correct",
        }
    }
}

/// What a change sets.
pub struct Changed {
    pub content: Content,
    pub status: Option<String>,
    pub record_status: RecordStatus,
    pub occurred_at: DateTime<Utc>,
    pub body: Option<Vec<u8>>,
}

/// The record as stored now, inside the transaction (for a change to start from). Only the
/// record's own patient: a record id of another patient is NOT_FOUND.
pub async fn current(
    tx: &WriteTxn,
    keys: &KeyRing,
    patient_id: Uuid,
    id: Uuid,
) -> AppResult<Record> {
    let row = medical_records::Entity::find_by_id(id)
        .filter(medical_records::Column::PatientId.eq(patient_id))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)?;
    open(keys, row)
}

/// Replace `before` (read by [`current`] in this transaction) with `after`, keeping `before`
/// as a version row. `expected_version`, when given, must be the stored one (CONFLICT
/// otherwise: someone changed it since the caller read it).
#[allow(clippy::too_many_arguments)]
pub async fn change(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &impl crate::audit::PatientGrant,
    before: Record,
    after: Changed,
    how: Change,
    reason: Option<&str>,
    expected_version: Option<i32>,
) -> AppResult<Record> {
    if expected_version.is_some_and(|v| v != before.row.version) {
        return Err(AppError::Conflict(
            "the record changed since you read it: read it again and reapply your change",
        ));
    }
    if before.row.record_status == RecordStatus::EnteredInError.as_str() {
        return Err(AppError::Validation {
            field: "id",
            reason: "the record was marked entered in error and can no longer change",
        });
    }
    let b = &before.row;
    let version_id = Uuid::new_v4();
    medical_record_versions::Entity::insert(medical_record_versions::ActiveModel {
        id: Set(version_id),
        record_id: Set(b.id),
        patient_id: Set(b.patient_id),
        version: Set(b.version),
        status: Set(b.status.clone()),
        record_status: Set(b.record_status.clone()),
        sensitivity: Set(b.sensitivity.clone()),
        occurred_at: Set(b.occurred_at),
        content_enc: Set(keys.seal(
            slot(VERSIONS, "content", &version_id),
            &before.content.to_json()?,
        )?),
        made_by: Set(b.updated_by),
        made_at: Set(b.updated_at),
        change: Set(how.as_str().into()),
        changed_by: Set(viewer.user_id),
        changed_at: Set(Utc::now()),
        reason_enc: Set(reason
            .map(|r| keys.seal_str(slot(VERSIONS, "reason", &version_id), r))
            .transpose()?),
    })
    .exec_without_returning(tx.conn())
    .await?;
    let mut content = after.content;
    if let (Content::Document(d), Some(body)) = (&mut content, &after.body) {
        d.blob_id = insert_blob(tx.conn(), keys, b.id, b.patient_id, body).await?;
        d.size = body.len() as u32;
    }
    let now = Utc::now();
    let row = medical_records::Model {
        status: after.status,
        record_status: after.record_status.as_str().to_owned(),
        version: b.version + 1,
        occurred_at: after.occurred_at,
        code_bidx: code_bidx(keys, &content),
        content_enc: keys.seal(slot(TABLE, "content", &b.id), &content.to_json()?)?,
        updated_at: now,
        updated_by: viewer.user_id,
        ..b.clone()
    };
    // Compare-and-set on the version, so a change that raced this one past the check above
    // (another instance, another transaction) cannot be overwritten.
    let done = medical_records::Entity::update_many()
        .set(medical_records::ActiveModel {
            status: Set(row.status.clone()),
            record_status: Set(row.record_status.clone()),
            version: Set(row.version),
            occurred_at: Set(row.occurred_at),
            code_bidx: Set(row.code_bidx.clone()),
            content_enc: Set(row.content_enc.clone()),
            updated_at: Set(now),
            updated_by: Set(viewer.user_id),
            ..Default::default()
        })
        .filter(medical_records::Column::Id.eq(b.id))
        .filter(medical_records::Column::Version.eq(b.version))
        .exec(tx.conn())
        .await?;
    if done.rows_affected != 1 {
        return Err(AppError::Conflict(
            "the record changed since you read it: read it again and reapply your change",
        ));
    }
    tx.audit(
        AuditEvent::by(viewer, how.action(), "medical_record")
            .scope(grant)
            .resource(b.id.to_string())
            .detail(serde_json::json!({ "kind": b.kind, "version": row.version })),
    );
    Ok(Record { row, content })
}

/// One stored record by id, whoever's it is (the caller decides access from its patient,
/// kind and sensitivity before showing anything).
pub async fn find(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<Option<medical_records::Model>> {
    Ok(medical_records::Entity::find_by_id(id).one(db).await?)
}

/// A record's patient, kind and sensitivity, without its content (for deciding access).
pub async fn locate(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<Option<(Uuid, RecordKind, Sensitivity)>> {
    let row: Option<(Uuid, String, String)> = medical_records::Entity::find_by_id(id)
        .select_only()
        .column(medical_records::Column::PatientId)
        .column(medical_records::Column::Kind)
        .column(medical_records::Column::Sensitivity)
        .into_tuple()
        .one(db)
        .await?;
    Ok(row.and_then(|(p, k, s)| Some((p, RecordKind::parse(&k)?, Sensitivity::parse(&s)?))))
}

/// Filters of a records list, within its [`RecordSet`].
#[derive(Default, Debug)]
pub struct ListFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Blind indexes of the code, one per kind it may belong to.
    pub code: Option<Vec<Vec<u8>>>,
    pub include_entered_in_error: bool,
    /// Only these kinds' own status (e.g. ACTIVE medications).
    pub status: Option<&'static str>,
}

impl ListFilter {
    pub(super) fn condition(&self) -> Condition {
        let mut c = Condition::all();
        if let Some(f) = self.from {
            c = c.add(medical_records::Column::OccurredAt.gte(f));
        }
        if let Some(t) = self.to {
            c = c.add(medical_records::Column::OccurredAt.lt(t));
        }
        if let Some(codes) = &self.code {
            c = c.add(medical_records::Column::CodeBidx.is_in(codes.iter().cloned()));
        }
        if !self.include_entered_in_error {
            c = c.add(
                medical_records::Column::RecordStatus.ne(RecordStatus::EnteredInError.as_str()),
            );
        }
        if let Some(s) = self.status {
            c = c.add(medical_records::Column::Status.eq(s));
        }
        c
    }
}

/// A page position: newest first, by event time then id.
pub type Position = (DateTime<Utc>, Uuid);

pub struct Page {
    pub records: Vec<Record>,
    pub has_next: bool,
    pub total: Option<u64>,
}

/// One page of a patient's records inside `set`, newest first, after `after`. `want_total`
/// counts the same rows (never more than the list may show). The rows come through the
/// coalesced lists (`reads`) unless the filter searches by code.
#[allow(clippy::too_many_arguments)]
pub async fn page(
    db: &impl ConnectionTrait,
    reads: &super::reads::RecordReads,
    keys: &KeyRing,
    set: &RecordSet,
    filter: &ListFilter,
    first: u64,
    after: Option<Position>,
    want_total: bool,
) -> AppResult<Page> {
    if set.kinds.is_empty() {
        return Ok(Page {
            records: Vec::new(),
            has_next: false,
            total: want_total.then_some(0),
        });
    }
    let base = medical_records::Entity::find()
        .filter(set.condition())
        .filter(filter.condition());
    let total = if want_total {
        Some(base.clone().count(db).await?)
    } else {
        None
    };
    let rows = match super::reads::Job::new(set, filter, after, Some(first + 1)) {
        Some(job) => reads.list(job).await?,
        None => {
            let mut q = base
                .order_by_desc(medical_records::Column::OccurredAt)
                .order_by_desc(medical_records::Column::Id)
                .limit(first + 1);
            if let Some((t, id)) = after {
                q = q.filter(keyset::after(
                    medical_records::Column::OccurredAt,
                    medical_records::Column::Id,
                    t,
                    id,
                    true,
                ));
            }
            q.all(db).await?
        }
    };
    let (rows, has_next) = keyset::take(rows, first);
    let records = rows
        .into_iter()
        .map(|r| open(keys, r))
        .collect::<AppResult<Vec<_>>>()?;
    Ok(Page {
        records,
        has_next,
        total,
    })
}

/// Every record of `set` (of the kinds' own `status`, when given), oldest first, through the
/// coalesced lists (`reads`): a page of patients asking each for their allergies shares one
/// statement, with every other request's lists.
pub async fn all(
    reads: &super::reads::RecordReads,
    keys: &KeyRing,
    set: &RecordSet,
    status: Option<&'static str>,
) -> AppResult<Vec<Record>> {
    let filter = ListFilter {
        status,
        ..ListFilter::default()
    };
    let job = super::reads::Job::new(set, &filter, None, None)
        .ok_or_else(|| AppError::internal_msg("a whole list has no code filter"))?;
    // Newest first from the reads.
    let rows = reads.list(job).await?;
    rows.into_iter().rev().map(|r| open(keys, r)).collect()
}

/// Every record inside each set, for many sets at once (the FHIR export): one
/// query whatever the number of sets, rows sorted by event time ascending.
pub async fn by_sets(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    sets: &[RecordSet],
    filter: &ListFilter,
) -> AppResult<HashMap<RecordSet, Vec<Record>>> {
    let mut any = Condition::any();
    for s in sets.iter().filter(|s| !s.kinds.is_empty()) {
        any = any.add(s.condition());
    }
    let mut out: HashMap<RecordSet, Vec<Record>> =
        sets.iter().map(|s| (s.clone(), Vec::new())).collect();
    if sets.iter().all(|s| s.kinds.is_empty()) {
        return Ok(out);
    }
    let rows = medical_records::Entity::find()
        .filter(any)
        .filter(filter.condition())
        .order_by_asc(medical_records::Column::OccurredAt)
        .order_by_asc(medical_records::Column::Id)
        .all(db)
        .await?;
    for row in rows {
        let record = open(keys, row)?;
        for (set, list) in out.iter_mut() {
            if set.admits(&record.row) {
                list.push(record.clone());
            }
        }
    }
    Ok(out)
}

/// A prior version, opened.
pub struct Version {
    pub row: medical_record_versions::Model,
    pub content: Content,
    pub reason: Option<String>,
}

/// A record's prior versions, oldest first.
pub async fn history(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    record: &medical_records::Model,
) -> AppResult<Vec<Version>> {
    let kind = RecordKind::parse(&record.kind)
        .ok_or_else(|| AppError::internal_msg("stored record kind is unknown"))?;
    let rows = medical_record_versions::Entity::find()
        .filter(medical_record_versions::Column::RecordId.eq(record.id))
        .order_by_asc(medical_record_versions::Column::Version)
        .all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            let json = keys
                .open(slot(VERSIONS, "content", &row.id), &row.content_enc)
                .map_err(AppError::internal)?;
            let reason = row
                .reason_enc
                .as_deref()
                .map(|r| keys.open_str(slot(VERSIONS, "reason", &row.id), r))
                .transpose()?;
            Ok(Version {
                content: Content::from_json(kind, &json)?,
                reason,
                row,
            })
        })
        .collect()
}

/// A document's body, opened. The blob must belong to the record.
pub async fn document_body(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    record_id: Uuid,
    blob_id: Uuid,
) -> AppResult<Vec<u8>> {
    let blob = record_blobs::Entity::find_by_id(blob_id)
        .filter(record_blobs::Column::RecordId.eq(record_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal_msg("document body is missing"))?;
    keys.open(slot(BLOBS, "content", &blob.id), &blob.content_enc)
        .map_err(AppError::internal)
}

/// Move rows of the former `allergies` table into the family (same ids, so links and audit
/// rows keep pointing at them), re-sealed for `medical_records`, in one transaction with one
/// audit row. Migrations cannot do it: re-sealing needs the data keys. Returns how many
/// moved; a database without such rows costs one query.
pub async fn fold_legacy_allergies(
    db: &sea_orm::DatabaseConnection,
    keys: &KeyRing,
) -> AppResult<usize> {
    use entity::allergies;
    let rows = allergies::Entity::find().all(db).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut tx = WriteTxn::begin(db).await?;
    let n = rows.len();
    for a in rows {
        let open = |column, ct: &[u8]| keys.open_str(slot("allergies", column, &a.id), ct);
        let severity = super::types::AllergySeverity::parse(&a.severity)
            .ok_or_else(|| AppError::internal_msg("stored allergy severity is unknown"))?;
        let content = Content::Allergy(AllergyContent {
            substance: open("substance", &a.substance_enc)?,
            reaction: a
                .reaction_enc
                .as_deref()
                .map(|r| open("reaction", r))
                .transpose()?,
            severity,
            resolved_at: a.resolved_at,
            resolved_by: a.resolved_by,
        });
        let mut row = build_row(
            keys,
            a.id,
            a.patient_id,
            a.recorded_by,
            &content,
            Sensitivity::Normal,
            a.recorded_at,
            None,
        )?;
        row.status = Some(a.status.clone());
        row.recorded_at = a.recorded_at;
        medical_records::Entity::insert(medical_records::ActiveModel::from(row))
            .exec_without_returning(tx.conn())
            .await?;
        allergies::Entity::delete_by_id(a.id)
            .exec(tx.conn())
            .await?;
    }
    tx.audit(
        AuditEvent::new("records.fold_allergies", "system")
            .detail(serde_json::json!({ "moved": n })),
    );
    tx.commit().await?;
    Ok(n)
}
