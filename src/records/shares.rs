//! Sharing one record with one provider outside the care team (the patient's choice), and
//! revoking it. What a share lets its holder read is decided in `access::shares`.
use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::family;
use super::graphql::MedicalRecord;
use super::scope;
use crate::access::shares::{ShareGrant, sharing_scope};
use crate::audit::{AuditEvent, WriteTxn};
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::relay::parse_id;
use crate::state::AppState;
use entity::record_shares;

/// The longest a share may last.
const MAX_SHARE_DAYS: i64 = 365;

/// A share of one record with one provider.
#[derive(SimpleObject)]
pub struct RecordShare {
    pub id: ID,
    pub record_id: ID,
    pub provider_id: ID,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<record_shares::Model> for RecordShare {
    fn from(r: record_shares::Model) -> Self {
        RecordShare {
            id: ID(r.id.to_string()),
            record_id: ID(r.record_id.to_string()),
            provider_id: ID(r.provider_id.to_string()),
            expires_at: r.expires_at,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// Every share the patient made, newest first (the patient or ADMIN).
pub async fn of_patient(ctx: &Context<'_>, patient_id: Uuid) -> AppResult<Vec<RecordShare>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let scope =
        crate::access::owner_or_admin_scope(state, viewer, patient_id, "record.share_read").await?;
    let rows = record_shares::Entity::find()
        .filter(record_shares::Column::PatientId.eq(scope.patient_id()))
        .order_by_desc(record_shares::Column::CreatedAt)
        .all(&state.db)
        .await?;
    state
        .audit
        .record(
            AuditEvent::by(viewer, "record.share_read", "patient")
                .scope(&scope)
                .resource(patient_id.to_string())
                .detail(serde_json::json!({ "count": rows.len() })),
        )
        .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The shared record a live share names, read through it.
pub async fn shared_record(state: &AppState, share: &ShareGrant) -> AppResult<MedicalRecord> {
    let row = family::find(&state.db, share.record_id())
        .await?
        .ok_or(AppError::NotFound)?;
    let kind = super::kinds::RecordKind::parse(&row.kind)
        .ok_or_else(|| AppError::internal_msg("stored record kind is unknown"))?;
    let grant = scope::shared(share, kind);
    if !grant.set().admits(&row) {
        return Err(AppError::NotFound);
    }
    Ok(MedicalRecord::new(
        family::open(&state.keys, row)?,
        grant.into(),
    ))
}

#[derive(Default)]
pub struct SharesMutation;

#[Object]
impl SharesMutation {
    /// Share one of your records with a provider outside your care team until `expiresAt`
    /// (at most a year): they may read that record, and your name and birth date to
    /// identify it, nothing else. The patient only.
    async fn share_record(
        &self,
        ctx: &Context<'_>,
        record_id: ID,
        provider_id: ID,
        expires_at: DateTime<Utc>,
    ) -> Result<RecordShare> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let record_id = parse_id("recordId", &record_id)?;
        let provider_id = parse_id("providerId", &provider_id)?;
        let now = Utc::now();
        if expires_at <= now {
            return Err(AppError::validation("expiresAt", "must be in the future").into());
        }
        if expires_at > now + Duration::days(MAX_SHARE_DAYS) {
            return Err(AppError::validation("expiresAt", "must be within a year").into());
        }
        let Some((patient_id, _, _)) = family::locate(&state.db, record_id).await? else {
            return crate::access::refuse(
                state,
                viewer,
                "record.share",
                "medical_record",
                record_id.to_string(),
                None,
                AppError::NotFound,
            )
            .await
            .map_err(Into::into);
        };
        let scope = sharing_scope(state, viewer, patient_id, false, "record.share").await?;
        if entity::providers::Entity::find_by_id(provider_id)
            .one(&state.db)
            .await
            .map_err(AppError::from)?
            .is_none()
        {
            return Err(AppError::validation("providerId", "is not a provider").into());
        }
        let row = record_shares::Model {
            id: Uuid::new_v4(),
            record_id,
            patient_id: scope.patient_id(),
            provider_id,
            expires_at,
            created_by: viewer.user_id,
            created_at: now,
            revoked_at: None,
            revoked_by: None,
        };
        let mut tx = WriteTxn::begin(&state.db).await?;
        record_shares::Entity::insert(record_shares::ActiveModel::from(row.clone()))
            .exec_without_returning(tx.conn())
            .await
            .map_err(AppError::from)?;
        tx.audit(
            AuditEvent::by(viewer, "record.share", "medical_record")
                .scope(&scope)
                .resource(record_id.to_string())
                .detail(serde_json::json!({
                    "share": row.id.to_string(),
                    "provider": provider_id.to_string(),
                })),
        );
        tx.commit().await?;
        Ok(row.into())
    }

    /// End a share at once (the patient, or ADMIN). Revoking it twice is CONFLICT.
    async fn revoke_share(&self, ctx: &Context<'_>, id: ID) -> Result<RecordShare> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let Some(share) = record_shares::Entity::find_by_id(id)
            .one(&state.db)
            .await
            .map_err(AppError::from)?
        else {
            return crate::access::refuse(
                state,
                viewer,
                "record.share_revoke",
                "record_share",
                id.to_string(),
                None,
                AppError::NotFound,
            )
            .await
            .map_err(Into::into);
        };
        let scope =
            sharing_scope(state, viewer, share.patient_id, true, "record.share_revoke").await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let now = Utc::now();
        let done = record_shares::Entity::update_many()
            .set(record_shares::ActiveModel {
                revoked_at: Set(Some(now)),
                revoked_by: Set(Some(viewer.user_id)),
                ..Default::default()
            })
            .filter(record_shares::Column::Id.eq(id))
            .filter(record_shares::Column::RevokedAt.is_null())
            .exec(tx.conn())
            .await
            .map_err(AppError::from)?;
        if done.rows_affected != 1 {
            return Err(AppError::Conflict("the share is already revoked").into());
        }
        tx.audit(
            AuditEvent::by(viewer, "record.share_revoke", "medical_record")
                .scope(&scope)
                .resource(share.record_id.to_string())
                .detail(serde_json::json!({ "share": id.to_string() })),
        );
        tx.commit().await?;
        Ok(RecordShare {
            revoked_at: Some(now),
            ..share.into()
        })
    }
}
