//! Live appointments: what a booking or a change publishes (ids only), and
//! `appointmentChanged`, which loads each changed appointment for its subscriber through
//! `access::schedule` at delivery, against live state (see `graphql::live`). When the
//! instance lost the bus for a while (Redis drops what is published meanwhile), a feed
//! replays from the database what changed among the appointments it follows since it was
//! last in step (by `updated_at`), through the same decision, without repeating what it
//! showed already.
use std::collections::VecDeque;

use async_graphql::{Context, ID, Result, Subscription};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::Stream;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
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

/// How far before the instant a feed last knew itself in step with the bus its replay
/// reaches back (never before the feed was opened): a change is stamped (`updated_at`)
/// when its transaction writes it and announced once it commits, within a request's time
/// limit.
const REPLAY_MARGIN: TimeDelta = TimeDelta::seconds(60);
/// Most changes one replay delivers: a feed that missed more ends with RESYNC, and its
/// client reloads what it shows.
const REPLAY_MAX: u64 = 200;
/// The (appointment, version) pairs a feed remembers having delivered, so that a replay's
/// margin does not show a change twice.
const DELIVERED_WINDOW: usize = 256;

struct Feed {
    live: LiveViewer,
    patient: Option<Uuid>,
    bus: BusSubscription,
    done: bool,
    /// When the feed was opened: a replay shows nothing changed before it.
    opened: DateTime<Utc>,
    /// Every change announced before this instant has reached the feed (it was opened,
    /// replayed or last received an announcement then).
    synced: DateTime<Utc>,
    /// Appointments a replay found changed, still to deliver.
    pending: VecDeque<Uuid>,
    delivered: VecDeque<(Uuid, i32)>,
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
            let id = match self.pending.pop_front() {
                Some(id) => id,
                None => match self.bus.next().await? {
                    Delivery::Event(e) => match *e {
                        Event::Appointment { id, patient, .. } => {
                            // An announcement arrived: the bus was there until now.
                            self.synced = Utc::now();
                            if self.patient.is_some_and(|p| p != patient) {
                                continue;
                            }
                            id
                        }
                        _ => continue,
                    },
                    // The instance lost the bus for a while: what changed meanwhile comes
                    // from the database.
                    Delivery::Resync => {
                        if let Err(e) = Box::pin(self.replay()).await {
                            self.done = true;
                            return Some(Err(e.into()));
                        }
                        continue;
                    }
                    Delivery::SessionChanged => continue,
                },
            };
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

    async fn deliver(&mut self, id: Uuid) -> AppResult<Option<Appointment>> {
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
        // This change was shown already (live, then again in a replay's margin).
        let seen = (id, a.row.version);
        if self.delivered.contains(&seen) {
            return Ok(None);
        }
        if self.delivered.len() == DELIVERED_WINDOW {
            self.delivered.pop_front();
        }
        self.delivered.push_back(seen);
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

    /// Queue what changed since the feed was last in step, among the appointments it
    /// follows (the patient's; without one, the viewer's own as a patient, or as a provider
    /// their schedule and their care team's patients', as [`changed`] announces them).
    /// Each is then delivered through the same decision as a live change.
    async fn replay(&mut self) -> AppResult<()> {
        let started = Utc::now();
        let viewer = self.live.now().await?;
        let follows = match (self.patient, viewer.role) {
            (Some(p), _) => appointments::Column::PatientId.eq(p),
            (None, Role::Patient) => match viewer.patient_id {
                Some(p) => appointments::Column::PatientId.eq(p),
                None => return Ok(()),
            },
            (None, Role::Provider) => match viewer.provider_id {
                Some(me) => {
                    let team = sea_orm::sea_query::Query::select()
                        .column(care_team::Column::PatientId)
                        .from(care_team::Entity)
                        .and_where(care_team::Column::ProviderId.eq(me))
                        .to_owned();
                    appointments::Column::ProviderId
                        .eq(me)
                        .or(appointments::Column::PatientId.in_subquery(team))
                }
                None => return Ok(()),
            },
            // Nothing is announced to anyone else without a patient.
            (None, _) => return Ok(()),
        };
        let changed: Vec<(Uuid, i32)> = appointments::Entity::find()
            .filter(
                appointments::Column::UpdatedAt.gte(self.opened.max(self.synced - REPLAY_MARGIN)),
            )
            .filter(follows)
            .order_by_asc(appointments::Column::UpdatedAt)
            .order_by_asc(appointments::Column::Id)
            .select_only()
            .column(appointments::Column::Id)
            .column(appointments::Column::Version)
            .limit(REPLAY_MAX + 1)
            .into_tuple()
            .all(&self.live.state.db)
            .await?;
        if changed.len() as u64 > REPLAY_MAX {
            return Err(AppError::Resync);
        }
        // What was shown already is not loaded again.
        let fresh = changed.into_iter().filter(|c| !self.delivered.contains(c));
        self.pending.extend(fresh.map(|(id, _)| id));
        self.synced = started;
        Ok(())
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
        opened: Utc::now(),
        synced: Utc::now(),
        pending: VecDeque::new(),
        delivered: VecDeque::new(),
    };
    Ok(futures_util::stream::unfold(feed, |mut f| async move {
        f.next().await.map(|item| (item, f))
    }))
}
