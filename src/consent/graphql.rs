use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};

use super::service::{self, NewConsent};
use super::types::{ConsentScope, ConsentStatus};
use crate::access;
use crate::audit::AuditEvent;
use crate::audit::WriteTxn;
use crate::error::AppError;
use crate::graphql::context::{ContextExt, audit_read};
use crate::graphql::relay::parse_id;
use entity::consents;

/// A patient's consent for one provider to see some categories of their data.
pub struct Consent(consents::Model);

#[Object]
impl Consent {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn patient_id(&self) -> ID {
        ID(self.0.patient_id.to_string())
    }
    async fn grantee_provider_id(&self) -> ID {
        ID(self.0.grantee_provider_id.to_string())
    }
    async fn scopes(&self) -> Vec<ConsentScope> {
        ConsentScope::split(&self.0.scopes)
    }
    /// ACTIVE, WITHDRAWN, or EXPIRED once `expiresAt` has passed.
    async fn status(&self) -> ConsentStatus {
        match (self.0.status.as_str(), self.0.expires_at) {
            ("ACTIVE", Some(t)) if t <= Utc::now() => ConsentStatus::Expired,
            ("ACTIVE", _) => ConsentStatus::Active,
            _ => ConsentStatus::Withdrawn,
        }
    }
    async fn granted_at(&self) -> DateTime<Utc> {
        self.0.granted_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn withdrawn_at(&self) -> Option<DateTime<Utc>> {
        self.0.withdrawn_at
    }
}

/// Grant a provider access to categories of a patient's data.
#[derive(InputObject)]
pub struct GrantConsentInput {
    pub patient_id: ID,
    pub grantee_provider_id: ID,
    pub scopes: Vec<ConsentScope>,
    /// Open-ended when omitted.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct ConsentQuery;

#[Object]
impl ConsentQuery {
    /// A patient's consents, newest first, with history (the patient and ADMIN).
    async fn consents(&self, ctx: &Context<'_>, patient_id: ID) -> Result<Vec<Consent>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let scope = access::owner_or_admin_scope(state, viewer, patient_id, "consent.read").await?;
        let rows = service::list(&state.db, &scope).await?;
        audit_read(
            ctx,
            AuditEvent::by(viewer, "consent.read", "patient")
                .scope(&scope)
                .resource(patient_id.to_string()),
        )
        .await?;
        Ok(rows.into_iter().map(Consent).collect())
    }
}

#[derive(Default)]
pub struct ConsentMutation;

#[Object]
impl ConsentMutation {
    /// Grant consent (the patient for themself, or ADMIN).
    async fn grant_consent(&self, ctx: &Context<'_>, input: GrantConsentInput) -> Result<Consent> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &input.patient_id)?;
        let grantee = parse_id("granteeProviderId", &input.grantee_provider_id)?;
        let scope =
            access::owner_or_admin_scope(state, viewer, patient_id, "consent.grant").await?;
        let c = NewConsent {
            grantee_provider_id: grantee,
            scopes: input.scopes,
            expires_at: input.expires_at,
        };
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row = service::grant(&mut tx, viewer, &scope, c).await?;
        tx.commit().await?;
        Ok(Consent(row))
    }

    /// Withdraw a consent; it stops applying on the very next request.
    async fn withdraw_consent(&self, ctx: &Context<'_>, id: ID) -> Result<Consent> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let Some(row) = service::find(&state.db, id).await? else {
            let e = AppError::NotFound;
            return access::refuse(
                state,
                viewer,
                "consent.withdraw",
                "consent",
                id.to_string(),
                None,
                e,
            )
            .await
            .map_err(Into::into);
        };
        let scope =
            access::owner_or_admin_scope(state, viewer, row.patient_id, "consent.withdraw").await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let row = service::withdraw(&mut tx, viewer, &scope, id).await?;
        tx.commit().await?;
        Ok(Consent(row))
    }
}
