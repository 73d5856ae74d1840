//! Live appointments: what a booking or a change publishes (ids only), and
//! `appointmentChanged`, which loads each changed appointment for its subscriber through
//! `access::schedule` at delivery, against live state (see `graphql::live`).
use async_graphql::{Context, ID, Result, Subscription};
use futures_util::Stream;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::graphql::{Appointment, grant_for};
use super::service;
use crate::access::Role;
use crate::access::schedule as grants;
use crate::audit::AuditEvent;
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::live::LiveViewer;
use crate::graphql::relay::parse_id;
use crate::state::AppState;
use crate::stores::bus::{Delivery, Event, Subscription as BusSubscription, Topic};
use entity::{appointments, care_team, users};

/// Tell subscribers an appointment changed (after its transaction committed): the
/// patient's own users, the provider's, and those of the patient's care team follow it.
pub async fn changed(state: &AppState, row: &appointments::Model) -> AppResult<()> {
    let team = sea_orm::sea_query::Query::select()
        .column(care_team::Column::ProviderId)
        .from(care_team::Entity)
        .and_where(care_team::Column::PatientId.eq(row.patient_id))
        .to_owned();
    let to: Vec<Uuid> = users::Entity::find()
        .filter(
            Condition::any()
                .add(users::Column::PatientId.eq(row.patient_id))
                .add(users::Column::ProviderId.eq(row.provider_id))
                .add(users::Column::ProviderId.in_subquery(team)),
        )
        .select_only()
        .column(users::Column::Id)
        .into_tuple()
        .all(&state.db)
        .await?;
    state
        .stores
        .bus
        .publish(Event::Appointment {
            id: row.id,
            patient: row.patient_id,
            to,
        })
        .await;
    Ok(())
}

struct Feed {
    live: LiveViewer,
    patient: Option<Uuid>,
    bus: BusSubscription,
    done: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Result<Appointment>> {
        loop {
            if self.done {
                return None;
            }
            if self.bus.lagged() {
                self.done = true;
                return Some(Err(AppError::Resync.into()));
            }
            let (id, patient) = match self.bus.next().await? {
                Delivery::Event(e) => match *e {
                    Event::Appointment { id, patient, .. } => (id, patient),
                    _ => continue,
                },
                _ => continue,
            };
            if self.patient.is_some_and(|p| p != patient) {
                continue;
            }
            // Boxed: the delivery's future exists while it runs, not between events.
            match Box::pin(self.deliver(id)).await {
                Ok(Some(a)) => return Some(Ok(a)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    async fn deliver(&self, id: Uuid) -> AppResult<Option<Appointment>> {
        let viewer = self.live.now().await?;
        let state = &self.live.state;
        let grant = match grant_for(state, &viewer, id, false, "appointment.read").await {
            Ok((g, _)) => g,
            Err(AppError::NotFound | AppError::Forbidden(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let a = match service::one(&state.db, &state.keys, &grant, id).await {
            Ok(a) => a,
            Err(AppError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        state
            .audit
            .record(
                AuditEvent::by(&viewer, "appointment.read", "appointment")
                    .scope(&grant)
                    .resource(id.to_string())
                    .detail(serde_json::json!({ "via": "subscription" })),
            )
            .await?;
        Ok(Some(Appointment::live(a, viewer)))
    }
}

#[derive(Default)]
pub struct AppointmentsSubscription;

#[Subscription]
impl AppointmentsSubscription {
    /// Each booking and change of an appointment of this patient, or, without `patientId`,
    /// of every appointment you may see (yours as a patient; as a provider, your schedule
    /// and your care team's patients').
    async fn appointment_changed(
        &self,
        ctx: &Context<'_>,
        patient_id: Option<ID>,
    ) -> Result<impl Stream<Item = Result<Appointment>> + use<>> {
        // Boxed: what opening the feed awaits is not kept in the subscription's state.
        Box::pin(open_appointment_feed(ctx, patient_id)).await
    }
}

/// Check the request and open the feed (see the field above).
async fn open_appointment_feed(
    ctx: &Context<'_>,
    patient_id: Option<ID>,
) -> Result<impl Stream<Item = Result<Appointment>> + use<>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let patient = patient_id
        .as_ref()
        .map(|p| parse_id("patientId", p))
        .transpose()?;
    let topic = match patient {
        Some(p) => {
            grants::appointments_grant(state, viewer, p, false, "appointment.subscribe").await?;
            Topic::Patient(p)
        }
        None if viewer.role == Role::Researcher => {
            return Err(
                AppError::Forbidden("researchers receive de-identified extracts only").into(),
            );
        }
        None => Topic::User(viewer.user_id),
    };
    let feed = Feed {
        live: LiveViewer::new(state, viewer),
        patient,
        bus: state.stores.bus.subscribe(vec![topic]),
        done: false,
    };
    Ok(futures_util::stream::unfold(feed, |mut f| async move {
        f.next().await.map(|item| (item, f))
    }))
}
