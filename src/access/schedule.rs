//! Who may see and change appointments and provider calendars. An appointment's existence
//! is PHI: a patient's appointments go through the same visibility decision as their chart
//! (NOT_FOUND first), then role and care team. Appointments need no consent scope: the care
//! team schedules its patients' visits.
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::{BREAK_GLASS_READ_ONLY, DE_IDENTIFIED_ONLY, Role, Viewer, deny, refuse};
use crate::audit::PatientGrant;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use entity::care_team;

/// A grant over one patient's appointments: read always; `writable` when it is the patient,
/// a care-team provider or an ADMIN (never break-glass). Only this module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScheduleGrant {
    patient_id: Uuid,
    break_glass: bool,
    writable: bool,
}

impl ScheduleGrant {
    pub fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    pub fn writable(&self) -> bool {
        self.writable
    }
}

impl PatientGrant for ScheduleGrant {
    fn patient_id(&self) -> Uuid {
        self.patient_id
    }
    fn break_glass(&self) -> bool {
        self.break_glass
    }
}

/// May the viewer see (with `write`: book, move, cancel) this patient's appointments?
/// NOT_FOUND for a patient the viewer may not see; FORBIDDEN (audited) for a write under
/// break-glass and for researchers.
pub async fn appointments_grant(
    state: &AppState,
    viewer: &Viewer,
    patient_id: Uuid,
    write: bool,
    action: &'static str,
) -> AppResult<ScheduleGrant> {
    let rel = super::visible_standing(state, viewer, patient_id, false, action, DE_IDENTIFIED_ONLY)
        .await?;
    let own = viewer.role == Role::Patient && viewer.patient_id == Some(patient_id);
    let writable = own || viewer.role == Role::Admin || rel.care_team;
    if write && !writable {
        let e = AppError::Forbidden(BREAK_GLASS_READ_ONLY);
        return deny(state, viewer, patient_id, action, e).await;
    }
    Ok(ScheduleGrant {
        patient_id,
        break_glass: !(own || viewer.role == Role::Admin || rel.care_team),
        writable,
    })
}

/// A grant over one provider's own calendar (schedule, time off, the appointments on it):
/// the provider themself or an ADMIN. Only this module builds one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CalendarGrant {
    provider_id: Uuid,
}

impl CalendarGrant {
    pub fn provider_id(&self) -> Uuid {
        self.provider_id
    }
}

/// The provider themself or an ADMIN; anyone else FORBIDDEN (audited).
pub async fn calendar_grant(
    state: &AppState,
    viewer: &Viewer,
    provider_id: Uuid,
    action: &'static str,
) -> AppResult<CalendarGrant> {
    let own = viewer.role == Role::Provider && viewer.provider_id == Some(provider_id);
    if own || viewer.role == Role::Admin {
        return Ok(CalendarGrant { provider_id });
    }
    let e = AppError::Forbidden("only the provider or an administrator manages this calendar");
    refuse(
        state,
        viewer,
        action,
        "provider",
        provider_id.to_string(),
        None,
        e,
    )
    .await
}

/// May the viewer see this provider's free slots (and book with them for a patient)? Staff
/// may see any provider's; a patient only those of providers on their own care team
/// (FORBIDDEN otherwise, audited: provider identities are not patient PHI).
pub async fn availability_grant(
    state: &AppState,
    viewer: &Viewer,
    provider_id: Uuid,
    action: &'static str,
) -> AppResult<()> {
    match viewer.role {
        Role::Admin | Role::Provider => return Ok(()),
        Role::Patient => {
            if let Some(patient) = viewer.patient_id
                && on_care_team(state, patient, provider_id).await?
            {
                return Ok(());
            }
        }
        Role::Researcher => {}
    }
    let e = AppError::Forbidden("you may book only with providers on your care team");
    refuse(
        state,
        viewer,
        action,
        "provider",
        provider_id.to_string(),
        None,
        e,
    )
    .await
}

/// Whether the provider is on the patient's care team.
pub async fn on_care_team(
    state: &AppState,
    patient_id: Uuid,
    provider_id: Uuid,
) -> AppResult<bool> {
    Ok(care_team::Entity::find()
        .filter(care_team::Column::PatientId.eq(patient_id))
        .filter(care_team::Column::ProviderId.eq(provider_id))
        .select_only()
        .column(care_team::Column::ProviderId)
        .into_tuple::<Uuid>()
        .one(&state.db)
        .await?
        .is_some())
}
