//! Providers, schedules and appointments over GraphQL: the provider directory, working hours
//! and time off, free slots, and appointments with their lifecycle. Resolvers are thin:
//! parse, ask `access::schedule`, call one service fn, map.
//!
//! An appointment's existence is PHI. Every read of one is audited (one row per list, naming
//! the appointments shown), and an appointment the viewer may not see is NOT_FOUND, exactly
//! like an id that does not exist. Providers and their free/busy are not PHI.
//!
//! `Appointment.patient` returns the patients domain's `Patient`, while `Patient` lists its
//! appointments: the patients domain sits above this one, and this one names no type of it.
//! What it needs of a patient, it declares ([`PatientWiring`]); the schema assembly
//! (`schema::appointment_patient`) supplies it.
use std::future::Future;
use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Object, OutputType, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::availability::{self, Schedule};
use super::loaders::{CareTeams, Providers};
use super::reads::AppointmentReads;
use super::service::{self, NewAppointment};
use super::types::{self, AppointmentStatus, Weekday};
use crate::access;
use crate::access::schedule::{self as grants, ScheduleGrant};
use crate::audit::{AuditEvent, WriteTxn};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read};
use crate::graphql::relay::{self, Connection, Edge, PageInfo, decode_cursor, encode_cursor};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use crate::input::{bounded_text, parse_clinical_text, parse_reason};
use crate::state::AppState;
use entity::providers;

/// What an appointment needs of the patients domain: its GraphQL `Patient` type, and how one
/// is read for an appointment (the audited path `patient(id)` takes, NOT_FOUND when the
/// viewer may not see the patient). Implemented once, for [`Wiring`], where the schema is
/// assembled.
pub trait PatientWiring {
    /// The GraphQL `Patient`.
    type Patient: OutputType;
    /// The patient with this id, as the viewer may see them: the request's viewer, or for a
    /// live delivery the subscriber as of the event (`live`), decided afresh.
    fn patient(
        ctx: &Context<'_>,
        live: Option<&Viewer>,
        patient_id: Uuid,
    ) -> impl Future<Output = AppResult<Self::Patient>> + Send;
}

/// The one implementor of [`PatientWiring`] (in the schema assembly).
pub enum Wiring {}

/// The GraphQL `Patient`, as the wiring supplies it.
pub type PatientOfAppointment = <Wiring as PatientWiring>::Patient;

fn loader_failed(e: Arc<AppError>) -> AppError {
    tracing::error!(error = ?e, "appointments loader failed");
    AppError::internal_msg("loading providers failed")
}

/// The request's (cached) providers loader.
fn providers_loader<'a>(ctx: &'a Context<'_>) -> AppResult<&'a Providers> {
    ctx.data::<Providers>()
        .map_err(|_| AppError::internal_msg("providers loader missing"))
}

/// A provider by id, through the request's (cached) loader.
pub async fn load_provider(ctx: &Context<'_>, id: Uuid) -> AppResult<Option<providers::Model>> {
    providers_loader(ctx)?
        .load_one(id)
        .await
        .map_err(loader_failed)
}

// ---------------------------------------------------------------------------------------
// Providers

/// A provider in the directory. Names, specialties and working hours are not patient PHI:
/// any signed-in user sees them. Their appointments are (`schedule`).
#[derive(Clone)]
pub struct Provider {
    row: Arc<providers::Model>,
}

impl From<providers::Model> for Provider {
    fn from(row: providers::Model) -> Self {
        Provider { row: Arc::new(row) }
    }
}

/// Working hours on one weekday, local wall-clock times in the provider's `timeZone`.
#[derive(SimpleObject)]
pub struct WeeklyHours {
    pub weekday: Weekday,
    /// First working minute, `HH:MM`.
    pub start: String,
    /// End of work (exclusive), `HH:MM`, on the same day.
    pub end: String,
}

#[Object]
impl Provider {
    /// The provider's id (`Me.providerId`, `providerId` arguments).
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    /// The name patients and staff see.
    async fn display_name(&self) -> &str {
        &self.row.display_name
    }
    /// E.g. "Cardiology".
    async fn specialty(&self) -> Option<&str> {
        self.row.specialty.as_deref()
    }
    /// IANA time zone the working hours are read in (null until a schedule is set).
    async fn time_zone(&self) -> Option<&str> {
        self.row.time_zone.as_deref()
    }
    /// Length of one bookable slot, in minutes (null until a schedule is set).
    async fn slot_minutes(&self) -> Option<i32> {
        self.row.slot_minutes
    }
    /// The recurring week in `timeZone` (empty until a schedule is set).
    async fn weekly_hours(&self) -> Result<Vec<WeeklyHours>> {
        let Some(s) = service::schedule_of(&self.row)? else {
            return Ok(Vec::new());
        };
        Ok(s.weekly
            .iter()
            .map(|w| WeeklyHours {
                weekday: w.weekday.into(),
                start: types::format_local_time(w.start),
                end: types::format_local_time(w.end),
            })
            .collect())
    }
    /// The provider's own calendar: appointments that reach into `[from, to)` (at most 31
    /// days), soonest first; cancelled ones with `includeCancelled`. For the provider and
    /// administrators only (FORBIDDEN otherwise: everyone else sees free/busy, through
    /// `providerAvailability`). Audited, naming the appointments shown.
    async fn schedule(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default = false)] include_cancelled: bool,
    ) -> Result<Option<Vec<Appointment>>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let (from, to) = types::parse_window(from, to)?;
        let grant = grants::calendar_grant(state, viewer, self.row.id, "appointment.read").await?;
        let list =
            service::calendar(&state.db, &state.keys, &grant, from, to, include_cancelled).await?;
        let ids: Vec<String> = list.iter().map(|a| a.row.id.to_string()).collect();
        audit_read(
            ctx,
            AuditEvent::by(viewer, "appointment.read", "provider")
                .resource(self.row.id.to_string())
                .detail(serde_json::json!({
                    "field": "schedule", "count": ids.len(), "appointments": ids,
                })),
        )
        .await?;
        Ok(Some(list.into_iter().map(Appointment::from).collect()))
    }
}

impl relay::Node for Provider {
    const NAME: &'static str = "Provider";
}

/// A free slot: `[startsAt, endsAt)`, UTC.
#[derive(SimpleObject)]
pub struct Slot {
    /// Pass it to `scheduleAppointment` as `startsAt`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// An absence of a provider: no slots are offered and nothing is booked inside it.
#[derive(SimpleObject)]
pub struct TimeOff {
    pub id: ID,
    /// First instant of the absence (UTC).
    pub starts_at: DateTime<Utc>,
    /// End of the absence (UTC, exclusive).
    pub ends_at: DateTime<Utc>,
    /// A short plain-text label.
    pub reason: String,
}

/// Directory cursors: `v1:<id>/<display name>`, the order the directory is listed in.
const PROVIDER_CURSOR: &str = "v1";

fn provider_cursor(p: &providers::Model) -> String {
    encode_cursor(PROVIDER_CURSOR, format_args!("{}/{}", p.id, p.display_name))
}

fn provider_position(after: &str) -> AppResult<service::ProviderPosition> {
    let raw: String = decode_cursor(PROVIDER_CURSOR, after)?;
    let bad = || AppError::validation("after", "is not a cursor returned by this API");
    let (id, name) = raw.split_once('/').ok_or_else(bad)?;
    Ok((name.to_owned(), Uuid::parse_str(id).map_err(|_| bad())?))
}

/// Filters of the provider directory.
#[derive(InputObject, Default)]
pub struct ProviderFilter {
    /// Part of the display name, any case.
    pub name: Option<String>,
    /// The whole specialty, any case.
    pub specialty: Option<String>,
}

impl ProviderFilter {
    fn parse(&self) -> AppResult<service::ProviderFilter> {
        let lower = |field, v: &Option<String>| {
            v.as_deref()
                .map(|s| bounded_text(field, s, 100).map(|t| t.to_lowercase()))
                .transpose()
        };
        Ok(service::ProviderFilter {
            name: lower("name", &self.name)?,
            specialty: lower("specialty", &self.specialty)?,
        })
    }
}

/// The provider for `Me.provider` (none for an id that names none).
pub async fn provider_by_id(ctx: &Context<'_>, id: Uuid) -> AppResult<Option<Provider>> {
    Ok(load_provider(ctx, id).await?.map(Provider::from))
}

/// The providers on the patient's care team, by name. The caller is a `Patient` the viewer
/// may see; the team is batched across patients by the DataLoader.
pub async fn care_team(
    ctx: &Context<'_>,
    scope: &crate::access::PatientScope<crate::access::Demographics>,
) -> AppResult<Vec<Provider>> {
    let loader = ctx
        .data::<CareTeams>()
        .map_err(|_| AppError::internal_msg("care-team loader missing"))?;
    let team = loader
        .load_one(scope.clone())
        .await
        .map_err(loader_failed)?
        .unwrap_or_default();
    Ok(team.into_iter().map(Provider::from).collect())
}

// ---------------------------------------------------------------------------------------
// Appointments

/// A booked visit of a patient with a provider.
#[derive(Clone)]
pub struct Appointment {
    a: Arc<service::Appointment>,
    /// Set for a live delivery: the subscriber as of the event (see `super::live`).
    live: Option<Arc<Viewer>>,
}

impl From<service::Appointment> for Appointment {
    fn from(a: service::Appointment) -> Self {
        Appointment {
            a: Arc::new(a),
            live: None,
        }
    }
}

impl Appointment {
    /// An appointment delivered live to `viewer`.
    pub fn live(a: service::Appointment, viewer: Viewer) -> Self {
        Appointment {
            a: Arc::new(a),
            live: Some(Arc::new(viewer)),
        }
    }
}

#[Object]
impl Appointment {
    /// The appointment's id.
    async fn id(&self) -> ID {
        ID(self.a.row.id.to_string())
    }
    /// The patient, read as `patient(id)` reads one (audited; NOT_FOUND, and null, when you
    /// may not see them).
    async fn patient(&self, ctx: &Context<'_>) -> Result<Option<PatientOfAppointment>> {
        Ok(Some(
            <Wiring as PatientWiring>::patient(ctx, self.live.as_deref(), self.a.row.patient_id)
                .await?,
        ))
    }
    /// Whom the visit is with.
    async fn provider(&self, ctx: &Context<'_>) -> Result<Provider> {
        let p = load_provider(ctx, self.a.row.provider_id)
            .await?
            .ok_or_else(|| AppError::internal_msg("an appointment's provider is missing"))?;
        Ok(p.into())
    }
    /// When it starts (UTC).
    async fn starts_at(&self) -> DateTime<Utc> {
        self.a.row.starts_at
    }
    /// When it ends (UTC, exclusive).
    async fn ends_at(&self) -> DateTime<Utc> {
        self.a.row.ends_at
    }
    async fn duration_minutes(&self) -> i32 {
        self.a.row.duration_minutes
    }
    /// SCHEDULED until it is completed, cancelled or marked a no-show.
    async fn status(&self) -> AppointmentStatus {
        self.a.status
    }
    /// Why the visit was booked.
    async fn reason(&self) -> &str {
        &self.a.reason
    }
    /// The care team's notes, written when the visit is completed.
    async fn notes(&self) -> Option<&str> {
        self.a.notes.as_deref()
    }
    /// Why it was cancelled.
    async fn cancellation_reason(&self) -> Option<&str> {
        self.a.cancel_reason.as_deref()
    }
    /// Increments on every change; pass it to `rescheduleAppointment` as `expectedVersion`.
    async fn version(&self) -> i32 {
        self.a.row.version
    }
}

impl relay::Node for Appointment {
    const NAME: &'static str = "Appointment";
}

/// Appointment cursors: `ap1:<starts_at micros>/<id>`.
const CURSOR: &str = "ap1";

fn cursor(a: &service::Appointment) -> String {
    crate::graphql::relay::encode_time_cursor(CURSOR, a.row.starts_at, a.row.id)
}

fn position(after: &str) -> AppResult<service::Position> {
    crate::graphql::relay::decode_time_cursor(CURSOR, after)
}

/// The audit row of a list read: which appointments were shown (ids only).
fn list_read(viewer: &Viewer, grant: &ScheduleGrant, ids: Vec<String>) -> AuditEvent {
    AuditEvent::by(viewer, "appointment.read", "patient")
        .scope(grant)
        .resource(grant.patient_id().to_string())
        .detail(serde_json::json!({
            "field": "appointments", "count": ids.len(), "appointments": ids,
        }))
}

/// One page of the patient's appointments, soonest first (`Patient.appointments`).
#[allow(clippy::too_many_arguments)]
pub async fn patient_appointments(
    ctx: &Context<'_>,
    patient_id: Uuid,
    status: Option<AppointmentStatus>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    first: i32,
    after: Option<String>,
) -> AppResult<Connection<Appointment>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let first = relay::page_size(first)?;
    let after = after.as_deref().map(position).transpose()?;
    let grant =
        grants::appointments_grant(state, viewer, patient_id, false, "appointment.read").await?;
    let filter = service::ListFilter { status, from, to };
    let want_total = ctx.look_ahead().field("totalCount").exists();
    let reads = state.service::<AppointmentReads>()?;
    let page = service::page_for_patient(
        &state.db,
        reads,
        &state.keys,
        &grant,
        &filter,
        first,
        after,
        want_total,
    )
    .await?;
    let ids = page
        .appointments
        .iter()
        .map(|a| a.row.id.to_string())
        .collect();
    audit_read(ctx, list_read(viewer, &grant, ids)).await?;
    // The page's rows came with their providers: `Appointment.provider` finds them cached.
    providers_loader(ctx)?.feed_many(page.providers).await;
    let edges: Vec<Edge<Appointment>> = page
        .appointments
        .into_iter()
        .map(|a| Edge {
            cursor: cursor(&a),
            node: a.into(),
        })
        .collect();
    Ok(Connection {
        page_info: PageInfo::new(
            edges.iter().map(|e| &e.cursor),
            page.has_next,
            after.is_some(),
        ),
        edges,
        total_count: page.total.unwrap_or(0),
    })
}

/// The patient's appointments the viewer may see (`access::schedule::appointments_grant`,
/// read-only), soonest first, as FHIR R4 `Appointment` resources: the entries
/// `Patient.fhirExport` adds to its bundle. Not audited here: the export's one audit row
/// names every resource it holds, these included.
pub async fn fhir_entries(
    ctx: &Context<'_>,
    patient_id: Uuid,
) -> AppResult<Vec<serde_json::Value>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let grant =
        grants::appointments_grant(state, viewer, patient_id, false, "patient.export").await?;
    let list = service::all_for_patient(&state.db, &state.keys, &grant).await?;
    Ok(list.iter().map(super::fhir::resource).collect())
}

/// The grant over an existing appointment's patient, and its provider. An id that names no
/// appointment is NOT_FOUND (audited), as is one whose patient the viewer may not see.
pub(super) async fn grant_for(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    write: bool,
    action: &'static str,
) -> AppResult<(ScheduleGrant, Uuid)> {
    let Some((patient_id, provider_id)) = service::locate(&state.db, id).await? else {
        return access::refuse(
            state,
            viewer,
            action,
            "appointment",
            id.to_string(),
            None,
            AppError::NotFound,
        )
        .await;
    };
    let grant = grants::appointments_grant(state, viewer, patient_id, write, action).await?;
    Ok((grant, provider_id))
}

/// The grant to change an existing appointment: as [`grant_for`] with `write`, and for a
/// patient only with a provider on their care team (FORBIDDEN otherwise).
async fn write_grant(
    state: &AppState,
    viewer: &Viewer,
    id: Uuid,
    action: &'static str,
) -> AppResult<ScheduleGrant> {
    let (grant, provider_id) = grant_for(state, viewer, id, true, action).await?;
    grants::availability_grant(state, viewer, provider_id, action).await?;
    Ok(grant)
}

#[derive(Default)]
pub struct AppointmentsQuery;

#[Object]
impl AppointmentsQuery {
    /// The provider directory, by display name (`first` ≤ 100). Any signed-in user.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn providers(
        &self,
        ctx: &Context<'_>,
        filter: Option<ProviderFilter>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<Provider>> {
        let state = ctx.state()?;
        ctx.viewer()?;
        let first = relay::page_size(first)?;
        let after = after.as_deref().map(provider_position).transpose()?;
        let filter = filter.unwrap_or_default().parse()?;
        let want_total = ctx.look_ahead().field("totalCount").exists();
        let has_previous = after.is_some();
        let page = service::providers_page(&state.db, &filter, first, after, want_total).await?;
        let edges: Vec<Edge<Provider>> = page
            .rows
            .into_iter()
            .map(|p| Edge {
                cursor: provider_cursor(&p),
                node: p.into(),
            })
            .collect();
        Ok(Connection {
            page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), page.has_next, has_previous),
            edges,
            total_count: page.total.unwrap_or(0),
        })
    }

    /// The provider's free slots in `[from, to)` (at most 31 days), from now on: working
    /// hours, less time off, less booked appointments. Staff may ask about any provider; a
    /// patient only about a provider on their care team (FORBIDDEN otherwise).
    async fn provider_availability(
        &self,
        ctx: &Context<'_>,
        provider_id: ID,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let provider_id = relay::parse_id("providerId", &provider_id)?;
        let (from, to) = types::parse_window(from, to)?;
        grants::availability_grant(state, viewer, provider_id, "provider.availability").await?;
        let Some(p) = service::provider(&state.db, provider_id).await? else {
            return Err(AppError::NotFound.into());
        };
        let slots = service::availability(&state.db, &p, from, to, Utc::now()).await?;
        Ok(slots
            .into_iter()
            .map(|(starts_at, ends_at)| Slot { starts_at, ends_at })
            .collect())
    }

    /// One appointment. NOT_FOUND both when it does not exist and when you may not see it.
    async fn appointment(&self, ctx: &Context<'_>, id: ID) -> Result<Appointment> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = relay::parse_id("id", &id)?;
        let (grant, _) = grant_for(state, viewer, id, false, "appointment.read").await?;
        let a = service::one(&state.db, &state.keys, &grant, id).await?;
        audit_read(
            ctx,
            AuditEvent::by(viewer, "appointment.read", "appointment")
                .scope(&grant)
                .resource(id.to_string()),
        )
        .await?;
        Ok(a.into())
    }
}

/// One interval of the recurring week.
#[derive(InputObject)]
pub struct WeeklyHoursInput {
    pub weekday: Weekday,
    /// Local time `HH:MM` (24-hour) in the schedule's time zone.
    pub start: String,
    /// Local time `HH:MM`, after `start`, on the same day.
    pub end: String,
}

/// A provider's recurring week.
#[derive(InputObject)]
pub struct SetScheduleInput {
    /// IANA time zone name, e.g. `Europe/Berlin`; the hours keep their local time across
    /// daylight-saving changes.
    pub time_zone: String,
    /// Length of one bookable slot: 5 to 240 minutes.
    pub slot_minutes: i32,
    /// At most 50 intervals; intervals of one weekday must not overlap.
    pub weekly: Vec<WeeklyHoursInput>,
}

impl SetScheduleInput {
    fn parse(&self) -> AppResult<Schedule> {
        let time_zone = types::parse_time_zone(&self.time_zone)?;
        let slot_minutes = u32::try_from(self.slot_minutes).unwrap_or(0);
        let weekly = self
            .weekly
            .iter()
            .map(|w| {
                Ok(availability::WeeklyHours {
                    weekday: w.weekday.into(),
                    start: types::parse_local_time("weekly", &w.start)?,
                    end: types::parse_local_time("weekly", &w.end)?,
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        let s = Schedule {
            time_zone,
            slot_minutes,
            weekly,
        };
        s.validate()
            .map_err(|e| AppError::validation(e.field(), e.message()))?;
        Ok(s)
    }
}

/// An appointment to book.
#[derive(InputObject)]
pub struct ScheduleAppointmentInput {
    /// The patient (a patient books only for themself).
    pub patient_id: ID,
    /// The provider (for a patient, one on their care team).
    pub provider_id: ID,
    /// UTC, on a whole minute, in the future, inside one interval of the provider's working
    /// hours and outside their time off.
    pub starts_at: DateTime<Utc>,
    /// 5 to 480 minutes.
    pub duration_minutes: i32,
    /// Why the visit is booked (up to 500 characters).
    pub reason: String,
}

impl ScheduleAppointmentInput {
    fn parse(&self, now: DateTime<Utc>) -> AppResult<NewAppointment> {
        types::parse_duration(self.duration_minutes)?;
        Ok(NewAppointment {
            patient_id: relay::parse_id("patientId", &self.patient_id)?,
            provider_id: relay::parse_id("providerId", &self.provider_id)?,
            starts_at: types::parse_start(self.starts_at, now)?,
            duration_minutes: self.duration_minutes,
            reason: parse_clinical_text("reason", &self.reason, 500)?,
        })
    }
}

/// Hash input for idempotency: the whole booking, as text (hashed with a key, never stored).
fn request_text(new: &NewAppointment) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        new.patient_id,
        new.provider_id,
        new.starts_at.timestamp_micros(),
        new.duration_minutes,
        new.reason
    )
}

/// Settle an appointment (cancel, complete, no-show) under the grant to change it.
async fn settle(
    ctx: &Context<'_>,
    id: &ID,
    to: AppointmentStatus,
    text: Option<String>,
    action: &'static str,
) -> Result<Appointment> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let id = relay::parse_id("id", id)?;
    let grant = write_grant(state, viewer, id, action).await?;
    let mut tx = WriteTxn::begin(&state.db).await?;
    let a = service::settle(
        &mut tx,
        &state.keys,
        viewer,
        &grant,
        id,
        to,
        text.as_deref(),
    )
    .await?;
    tx.commit().await?;
    super::live::changed(state, &a.row).await?;
    Ok(a.into())
}

#[derive(Default)]
pub struct AppointmentsMutation;

#[Object]
impl AppointmentsMutation {
    /// Replace a provider's recurring week (the provider themself or an ADMIN). Local times
    /// in `input.timeZone`; existing appointments stay as they are.
    async fn set_schedule(
        &self,
        ctx: &Context<'_>,
        provider_id: ID,
        input: SetScheduleInput,
    ) -> Result<Provider> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let provider_id = relay::parse_id("providerId", &provider_id)?;
        let schedule = input.parse()?;
        let grant =
            grants::calendar_grant(state, viewer, provider_id, "provider.set_schedule").await?;
        let row = service::set_schedule(&state.db, viewer, &grant, &schedule).await?;
        Ok(row.into())
    }

    /// Record an absence `[from, to)` of a provider (the provider themself or an ADMIN): no
    /// slots are offered and nothing can be booked inside it. Appointments already booked in
    /// it stay; cancel them if need be. `reason` is a short plain-text label, not for PHI.
    async fn add_time_off(
        &self,
        ctx: &Context<'_>,
        provider_id: ID,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        reason: String,
    ) -> Result<TimeOff> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let provider_id = relay::parse_id("providerId", &provider_id)?;
        let (from, to) = types::parse_time_off(from, to, Utc::now())?;
        let reason = bounded_text("reason", &reason, 200)?;
        let grant =
            grants::calendar_grant(state, viewer, provider_id, "provider.add_time_off").await?;
        let t = service::add_time_off(&state.db, viewer, &grant, from, to, reason).await?;
        Ok(TimeOff {
            id: ID(t.id.to_string()),
            starts_at: t.starts_at,
            ends_at: t.ends_at,
            reason: t.reason,
        })
    }

    /// Book an appointment. A patient books their own, with a provider on their care team; a
    /// provider for a patient on their care team; an ADMIN for anyone. Outside working hours,
    /// in time off or in the past is VALIDATION; a slot already taken is CONFLICT. Repeating
    /// the call with the same `idempotencyKey` and input returns the first booking; the same
    /// key with another input is CONFLICT.
    async fn schedule_appointment(
        &self,
        ctx: &Context<'_>,
        input: ScheduleAppointmentInput,
        idempotency_key: Option<String>,
    ) -> Result<Appointment> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let new = input.parse(Utc::now())?;
        let idem = idempotency_key
            .as_deref()
            .map(|k| {
                let k = bounded_text("idempotencyKey", k, 200)?;
                Ok::<_, AppError>(Idempotency::new(
                    &state.keys,
                    &k,
                    "scheduleAppointment",
                    &request_text(&new),
                ))
            })
            .transpose()?;
        let action = "appointment.create";
        let grant = grants::appointments_grant(state, viewer, new.patient_id, true, action).await?;
        grants::availability_grant(state, viewer, new.provider_id, action).await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let a = service::book(&mut tx, &state.keys, viewer, &grant, new, idem.as_ref()).await?;
        tx.commit().await?;
        super::live::changed(state, &a.row).await?;
        Ok(a.into())
    }

    /// Move a SCHEDULED appointment to `startsAt`, keeping its length (same rights and
    /// checks as booking it). A stale `expectedVersion` is CONFLICT and changes nothing.
    async fn reschedule_appointment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i32,
        starts_at: DateTime<Utc>,
    ) -> Result<Appointment> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = relay::parse_id("id", &id)?;
        let starts_at = types::parse_start(starts_at, Utc::now())?;
        let grant = write_grant(state, viewer, id, "appointment.reschedule").await?;
        let mut tx = WriteTxn::begin(&state.db).await?;
        let a = service::reschedule(
            &mut tx,
            &state.keys,
            viewer,
            &grant,
            id,
            expected_version,
            starts_at,
        )
        .await?;
        tx.commit().await?;
        super::live::changed(state, &a.row).await?;
        Ok(a.into())
    }

    /// Cancel a SCHEDULED appointment, saying why (the patient, their care team, an ADMIN).
    async fn cancel_appointment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<Appointment> {
        let reason = parse_reason(&reason)?;
        let to = AppointmentStatus::Cancelled;
        settle(ctx, &id, to, Some(reason), "appointment.cancel").await
    }

    /// Mark a SCHEDULED appointment as having taken place, with optional notes (care team or
    /// ADMIN).
    async fn complete_appointment(
        &self,
        ctx: &Context<'_>,
        id: ID,
        notes: Option<String>,
    ) -> Result<Appointment> {
        let notes = notes
            .as_deref()
            .map(|n| parse_clinical_text("notes", n, 4000))
            .transpose()?;
        let to = AppointmentStatus::Completed;
        settle(ctx, &id, to, notes, "appointment.complete").await
    }

    /// Mark a SCHEDULED appointment as missed by the patient (care team or ADMIN).
    async fn mark_no_show(&self, ctx: &Context<'_>, id: ID) -> Result<Appointment> {
        let to = AppointmentStatus::NoShow;
        settle(ctx, &id, to, None, "appointment.no_show").await
    }
}
