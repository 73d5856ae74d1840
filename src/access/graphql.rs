use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::service;
use crate::audit::WriteTxn;
use crate::error::AppError;
use crate::graphql::context::ContextExt;
use crate::graphql::relay::parse_id;
use crate::input::parse_reason;

/// A time-limited emergency (break-glass) grant.
#[derive(SimpleObject)]
pub struct EmergencyAccess {
    pub id: ID,
    pub patient_id: ID,
    pub opened_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct AccessMutation;

#[Object]
impl AccessMutation {
    /// Put a provider on a patient's care team (ADMIN).
    async fn assign_care_team(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        provider_id: ID,
    ) -> Result<bool> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let provider_id = parse_id("providerId", &provider_id)?;
        let scope = super::admin_scope(state, viewer, patient_id, "care_team.assign").await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        service::assign_care_team(&mut tx, viewer, &scope, provider_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Take a provider off a patient's care team (ADMIN).
    async fn remove_care_team(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        provider_id: ID,
    ) -> Result<bool> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let provider_id = parse_id("providerId", &provider_id)?;
        let scope = super::admin_scope(state, viewer, patient_id, "care_team.remove").await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        service::remove_care_team(&mut tx, viewer, &scope, provider_id).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Break-glass: a PROVIDER outside the care team opens time-limited access to a patient,
    /// with a written reason. Audited and flagged in the patient's access history.
    async fn open_emergency_access(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        reason: String,
    ) -> Result<EmergencyAccess> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let reason = parse_reason(&reason)?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let opened =
            service::open_emergency_access(&mut tx, state, viewer, patient_id, &reason).await;
        let opened = match opened {
            Ok(row) => tx.commit().await.map(|()| row),
            // Let go of the write lock before the refusal below writes its audit row.
            Err(e) => {
                drop(tx);
                Err(e)
            }
        };
        let row = match opened {
            Ok(row) => row,
            Err(e @ (AppError::NotFound | AppError::Conflict(_))) => {
                return super::deny(state, viewer, patient_id, "emergency_access.open", e)
                    .await
                    .map_err(Into::into);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(EmergencyAccess {
            id: ID(row.id.to_string()),
            patient_id: ID(row.patient_id.to_string()),
            opened_at: row.opened_at,
            expires_at: row.expires_at,
        })
    }
}
