//! Allergy types, the consent-scoped `Patient.allergies` loader path and the mutations.
use async_graphql::{Context, ID, InputObject, Object, Result};
use chrono::{DateTime, Utc};

use super::loaders::AllergiesByPatient;
use super::service::{self, NewAllergy};
use super::types::*;
use crate::access::{self, Allergies, PatientScope};
use crate::audit::AuditEvent;
use crate::crypto::{KeyRing, Slot};
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::guards::{RoleGuard, STAFF};
use crate::graphql::relay::parse_id;
use entity::allergies;

/// An allergy or intolerance.
pub struct Allergy {
    row: allergies::Model,
    keys: KeyRing,
}

impl Allergy {
    fn open(&self, column: &'static str, ct: &[u8]) -> AppResult<String> {
        self.keys.open_str(
            Slot {
                table: service::TABLE,
                column,
                row: &self.row.id,
            },
            ct,
        )
    }
}

#[Object]
impl Allergy {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// What the patient reacts to.
    async fn substance(&self) -> Result<String> {
        Ok(self.open("substance", &self.row.substance_enc)?)
    }
    async fn reaction(&self) -> Result<Option<String>> {
        Ok(self
            .row
            .reaction_enc
            .as_deref()
            .map(|c| self.open("reaction", c))
            .transpose()?)
    }
    async fn severity(&self) -> Result<AllergySeverity> {
        Ok(AllergySeverity::parse(&self.row.severity)
            .ok_or_else(|| AppError::internal_msg("bad severity"))?)
    }
    async fn status(&self) -> Result<AllergyStatus> {
        Ok(AllergyStatus::parse(&self.row.status)
            .ok_or_else(|| AppError::internal_msg("bad status"))?)
    }
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.row.recorded_at
    }
    /// User id of who recorded it.
    async fn recorded_by(&self) -> ID {
        ID(self.row.recorded_by.to_string())
    }
    async fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.row.resolved_at
    }
}

/// Allergies of an authorized patient, batched across patients by the DataLoader, with one
/// durable read audit row per patient.
pub async fn patient_allergies(ctx: &Context<'_>, scope: &PatientScope) -> AppResult<Vec<Allergy>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let loader = ctx
        .data::<async_graphql::dataloader::DataLoader<AllergiesByPatient>>()
        .map_err(|_| AppError::internal_msg("allergy loader missing"))?;
    let rows = loader
        .load_one(scope.patient_id())
        .await
        .map_err(|e| {
            tracing::error!(error = ?e, "allergy loader failed");
            AppError::internal_msg("loading allergies failed")
        })?
        .unwrap_or_default();
    state
        .audit
        .record(
            AuditEvent::by(viewer, "allergy.read", "patient")
                .scope(scope)
                .resource(scope.patient_id().to_string())
                .detail(serde_json::json!({ "count": rows.len() })),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| Allergy {
            row,
            keys: state.keys.clone(),
        })
        .collect())
}

/// A new allergy.
#[derive(InputObject)]
pub struct RecordAllergyInput {
    pub substance: String,
    pub reaction: Option<String>,
    pub severity: AllergySeverity,
}

#[derive(Default)]
pub struct RecordsMutation;

#[Object]
impl RecordsMutation {
    /// Record an allergy (care-team PROVIDER with ALLERGIES consent, or ADMIN).
    #[graphql(guard = "RoleGuard(STAFF)")]
    async fn record_allergy(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        input: RecordAllergyInput,
    ) -> Result<Allergy> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let a = NewAllergy {
            substance: parse_clinical_text("substance", &input.substance, 200)?,
            reaction: input
                .reaction
                .as_deref()
                .map(|r| parse_clinical_text("reaction", r, 1000))
                .transpose()?,
            severity: input.severity,
        };
        let scope =
            access::clinical_write_scope::<Allergies>(state, viewer, patient_id, "allergy.create")
                .await?;
        let row = service::record(state, viewer, &scope, a).await?;
        Ok(Allergy {
            row,
            keys: state.keys.clone(),
        })
    }

    /// Mark an allergy resolved (same rights as recording one).
    #[graphql(guard = "RoleGuard(STAFF)")]
    async fn resolve_allergy(&self, ctx: &Context<'_>, id: ID) -> Result<Allergy> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let Some(patient_id) = service::patient_of(&state.db, id).await? else {
            let e = AppError::NotFound;
            return access::refuse(
                state,
                viewer,
                "allergy.resolve",
                "allergy",
                id.to_string(),
                None,
                e,
            )
            .await
            .map_err(Into::into);
        };
        let scope =
            access::clinical_write_scope::<Allergies>(state, viewer, patient_id, "allergy.resolve")
                .await?;
        let row = service::resolve(state, viewer, &scope, id).await?;
        Ok(Allergy {
            row,
            keys: state.keys.clone(),
        })
    }
}
