//! Shares: a patient gives one provider outside the care team read access to one record
//! (and the name and birth date needed to identify it, nothing else) until it expires or is
//! revoked. The grant is decided here, from the live share row, on every request: a revoked
//! or expired share gives nothing on the very next read.
use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{OwnerOnly, PatientScope, ReadPurpose, Role, Viewer, deny};
use crate::audit::PatientGrant;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::record_shares;

/// Read access to one record through a live share. Only this module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShareGrant {
    share_id: Uuid,
    record_id: Uuid,
    patient_id: Uuid,
    expires_at: chrono::DateTime<Utc>,
}

impl ShareGrant {
    pub fn share_id(&self) -> Uuid {
        self.share_id
    }
    pub fn record_id(&self) -> Uuid {
        self.record_id
    }
    pub fn expires_at(&self) -> chrono::DateTime<Utc> {
        self.expires_at
    }
    /// The patient's name and birth date, which identify the shared record.
    pub fn identity(&self) -> PatientScope<Identity> {
        PatientScope::granted(self.patient_id, false)
    }
}

impl PatientGrant for ShareGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        false
    }
}

/// Purpose marker: the name and birth date that identify a patient, and nothing else.
#[derive(Debug)]
pub enum Identity {}

impl super::sealed::Sealed for Identity {}
impl ReadPurpose for Identity {}

fn grant(row: record_shares::Model) -> ShareGrant {
    ShareGrant {
        share_id: row.id,
        record_id: row.record_id,
        patient_id: row.patient_id,
        expires_at: row.expires_at,
    }
}

fn live() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(record_shares::Column::RevokedAt.is_null())
        .add(record_shares::Column::ExpiresAt.gt(Utc::now()))
}

/// The viewer's live share of this record, if they are a provider holding one.
pub async fn share_grant(
    state: &AppState,
    viewer: &Viewer,
    record_id: Uuid,
) -> AppResult<Option<ShareGrant>> {
    let Some(provider) = viewer.provider_id.filter(|_| viewer.role == Role::Provider) else {
        return Ok(None);
    };
    let row = record_shares::Entity::find()
        .filter(record_shares::Column::RecordId.eq(record_id))
        .filter(record_shares::Column::ProviderId.eq(provider))
        .filter(live())
        .order_by_desc(record_shares::Column::ExpiresAt)
        .one(&state.db)
        .await?;
    Ok(row.map(grant))
}

/// One page of the live shares made to the viewer (a provider), by share id after `after`.
pub async fn shared_with_me(
    state: &AppState,
    viewer: &Viewer,
    first: u64,
    after: Option<Uuid>,
) -> AppResult<(Vec<ShareGrant>, bool)> {
    let Some(provider) = viewer.provider_id.filter(|_| viewer.role == Role::Provider) else {
        return Err(AppError::Forbidden("records are shared with providers"));
    };
    let mut q = record_shares::Entity::find()
        .filter(record_shares::Column::ProviderId.eq(provider))
        .filter(live())
        .order_by_asc(record_shares::Column::Id)
        .limit(first + 1);
    if let Some(a) = after {
        q = q.filter(record_shares::Column::Id.gt(a));
    }
    let mut rows = q.all(&state.db).await?;
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok((rows.into_iter().map(grant).collect(), has_next))
}

/// Who may share a patient's records, and revoke shares: the patient themself (FORBIDDEN
/// for anyone else who may see them, NOT_FOUND for the rest; audited). An ADMIN may revoke
/// (`revoke`), never share on the patient's behalf.
pub async fn sharing_scope(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    revoke: bool,
    action: &'static str,
) -> AppResult<PatientScope<OwnerOnly>> {
    let scope = super::owner_or_admin_scope(state, viewer, patient_id, action).await?;
    if viewer.role == Role::Patient || (revoke && viewer.role == Role::Admin) {
        return Ok(scope);
    }
    let e = AppError::Forbidden("only the patient shares their records");
    deny(state, viewer, patient_id, action, e).await
}
