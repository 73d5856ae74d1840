//! `Appointment.patient`: the appointments domain declares what it needs of a patient
//! (`appointments::graphql::PatientWiring`); here, above both domains, it gets the patients
//! domain's `Patient`, read through `access::read_patient`, the audited path `patient(id)`
//! takes. Each patient is read (and its read audited) once per request,
//! however many appointments of theirs the response shows.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::Context;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::appointments::graphql::{PatientWiring, Wiring};
use crate::audit::AuditEvent;
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read};
use crate::identity::Viewer;
use crate::patients::graphql::Patient;
use crate::state::AppState;

type Read = (
    entity::patients::Model,
    crate::access::PatientScope<crate::access::Demographics>,
);

/// The patients this request showed through appointments: `None` for one the viewer may not
/// see (NOT_FOUND, audited once by `read_patient`).
#[derive(Default)]
pub struct AppointmentPatients {
    cells: Mutex<HashMap<Uuid, Arc<OnceCell<Option<Read>>>>>,
}

impl AppointmentPatients {
    async fn read(
        &self,
        ctx: &Context<'_>,
        state: &AppState,
        viewer: &Viewer,
        id: Uuid,
        fields: &[&str],
    ) -> AppResult<Read> {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
            cells.entry(id).or_default().clone()
        };
        let read = cell
            .get_or_try_init(|| async {
                match crate::access::read_patient(state, viewer, id).await {
                    Ok((row, scope)) => {
                        let ev = AuditEvent::by(viewer, "patient.read", "patient")
                            .scope(&scope)
                            .resource(id.to_string())
                            .detail(serde_json::json!({
                                "fields": fields, "via": "Appointment.patient",
                            }));
                        audit_read(ctx, ev).await?;
                        Ok(Some((row, scope)))
                    }
                    Err(AppError::NotFound) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        read.clone().ok_or(AppError::NotFound)
    }
}

impl PatientWiring for Wiring {
    type Patient = Patient;

    async fn patient(
        ctx: &Context<'_>,
        live: Option<&Viewer>,
        patient_id: Uuid,
    ) -> AppResult<Patient> {
        let state = ctx.state()?;
        // A live delivery decides afresh for each event: no memo across events.
        if let Some(viewer) = live {
            let (row, scope) = crate::access::read_patient(state, viewer, patient_id).await?;
            let ev = AuditEvent::by(viewer, "patient.read", "patient")
                .scope(&scope)
                .resource(patient_id.to_string())
                .detail(serde_json::json!({ "via": "appointmentChanged" }));
            state.audit.record(ev).await?;
            return Ok(Patient::new(row, &state.keys, scope));
        }
        let viewer = ctx.viewer()?;
        let memo = ctx
            .data::<AppointmentPatients>()
            .map_err(|_| AppError::internal_msg("appointment patients missing"))?;
        let fields: Vec<&str> = ctx
            .field()
            .selection_set()
            .map(|f| f.name())
            .filter(|n| !n.starts_with("__"))
            .collect();
        let (row, scope) = memo.read(ctx, state, viewer, patient_id, &fields).await?;
        Ok(Patient::new(row, &state.keys, scope))
    }
}
