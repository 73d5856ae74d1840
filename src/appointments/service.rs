//! Providers' directory and schedules, and appointments: the rules and all database access
//! of the domain.
//!
//! Writes take the caller's [`WriteTxn`], whose first statement takes the audit head's lock
//! (on SQLite, the database write lock): writers are serialised, so on SQLite the overlap
//! check and the insert that follows it cannot interleave with another booking. On
//! PostgreSQL the database itself refuses overlapping appointments of one provider (an
//! exclusion constraint, see the migration), and its violation becomes CONFLICT here.
//! Services take what `access::schedule` granted ([`ScheduleGrant`], [`CalendarGrant`]),
//! never bare ids.
use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Expr, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RuntimeErr, Select, Set,
};
use uuid::Uuid;

use super::availability::{self, Interval, Schedule};
use super::reads::{AppointmentReads, PageRow};
use super::types::{self, AppointmentStatus};
use crate::access::BREAK_GLASS_READ_ONLY;
use crate::access::schedule::{CalendarGrant, ScheduleGrant};
use crate::audit::{AuditEvent, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::db::keyset;
use crate::error::{AppError, AppResult};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use entity::{appointments, care_team, provider_time_off, providers};

pub const TABLE: &str = "appointments";

/// Why a booking that overlaps another is refused, whichever backend noticed.
pub const SLOT_TAKEN: &str =
    "the provider already has an appointment at that time; choose another slot";

const OUTSIDE_HOURS: AppError = AppError::Validation {
    field: "startsAt",
    reason: "is outside the provider's working hours",
};
const IN_TIME_OFF: AppError = AppError::Validation {
    field: "startsAt",
    reason: "falls in the provider's time off",
};
const STALE: &str = "the appointment changed since you read it: read it again and retry";

// ---------------------------------------------------------------------------------------
// The provider directory

/// Filters of the provider directory.
#[derive(Default)]
pub struct ProviderFilter {
    /// Lower-case; matches anywhere in the display name.
    pub name: Option<String>,
    /// Lower-case; the whole specialty.
    pub specialty: Option<String>,
}

/// A directory position: by display name, then id.
pub type ProviderPosition = (String, Uuid);

pub struct ProviderPage {
    pub rows: Vec<providers::Model>,
    pub has_next: bool,
    pub total: Option<u64>,
}

/// `%` and `_` (and the escape itself) match themselves inside a LIKE pattern.
fn like_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl ProviderFilter {
    fn condition(&self) -> Condition {
        let mut c = Condition::all();
        if let Some(n) = &self.name {
            let pattern = format!("%{}%", like_escaped(n));
            c = c.add(
                Expr::expr(Func::lower(Expr::col(providers::Column::DisplayName)))
                    .like(LikeExpr::new(pattern).escape('\\')),
            );
        }
        if let Some(s) = &self.specialty {
            c = c.add(Expr::expr(Func::lower(Expr::col(providers::Column::Specialty))).eq(s));
        }
        c
    }
}

/// One page of the directory, by display name, after `after`.
pub async fn providers_page(
    db: &impl ConnectionTrait,
    filter: &ProviderFilter,
    first: u64,
    after: Option<ProviderPosition>,
    want_total: bool,
) -> AppResult<ProviderPage> {
    let base = providers::Entity::find().filter(filter.condition());
    let total = if want_total {
        Some(base.clone().count(db).await?)
    } else {
        None
    };
    let mut q = base
        .order_by_asc(providers::Column::DisplayName)
        .order_by_asc(providers::Column::Id)
        .limit(first + 1);
    if let Some((name, id)) = after {
        q = q.filter(keyset::after(
            providers::Column::DisplayName,
            providers::Column::Id,
            name,
            id,
            false,
        ));
    }
    let (rows, has_next) = keyset::take(q.all(db).await?, first);
    Ok(ProviderPage {
        rows,
        has_next,
        total,
    })
}

/// One provider by id.
pub async fn provider(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<providers::Model>> {
    Ok(providers::Entity::find_by_id(id).one(db).await?)
}

/// Providers by id, in one query (the DataLoader's batch).
pub async fn providers_by_ids(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> AppResult<Vec<providers::Model>> {
    Ok(providers::Entity::find()
        .filter(providers::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// The providers on each patient's care team, by display name (two queries, whatever the
/// number of patients). The caller has already decided the viewer may see these patients.
pub async fn care_teams(
    db: &impl ConnectionTrait,
    patient_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<providers::Model>>> {
    let links: Vec<(Uuid, Uuid)> = care_team::Entity::find()
        .filter(care_team::Column::PatientId.is_in(patient_ids.iter().copied()))
        .select_only()
        .column(care_team::Column::PatientId)
        .column(care_team::Column::ProviderId)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<providers::Model>> =
        patient_ids.iter().map(|id| (*id, Vec::new())).collect();
    if links.is_empty() {
        return Ok(out);
    }
    let mut wanted: Vec<Uuid> = links.iter().map(|(_, p)| *p).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let found: HashMap<Uuid, providers::Model> = providers_by_ids(db, &wanted)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    for (patient, provider) in links {
        if let Some(p) = found.get(&provider) {
            out.entry(patient).or_default().push(p.clone());
        }
    }
    for team in out.values_mut() {
        team.sort_by(|a, b| a.display_name.cmp(&b.display_name).then(a.id.cmp(&b.id)));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Schedules and time off

/// The provider's recurring week, if one was set.
pub fn schedule_of(p: &providers::Model) -> AppResult<Option<Schedule>> {
    types::stored_schedule(
        p.time_zone.as_deref(),
        p.slot_minutes,
        p.weekly_hours.as_deref(),
    )
}

/// Replace the provider's recurring week (validated by the caller) and audit it.
pub async fn set_schedule(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grant: &CalendarGrant,
    schedule: &Schedule,
) -> AppResult<providers::Model> {
    let id = grant.provider_id();
    let mut tx = WriteTxn::begin(db).await?;
    let Some(row) = provider(tx.conn(), id).await? else {
        return Err(AppError::NotFound);
    };
    let weekly = types::weekly_to_json(&schedule.weekly)?;
    let slot = i32::try_from(schedule.slot_minutes)
        .map_err(|_| AppError::validation("slotMinutes", "must be between 5 and 240 minutes"))?;
    let row = providers::Model {
        time_zone: Some(schedule.time_zone.name().to_owned()),
        slot_minutes: Some(slot),
        weekly_hours: Some(weekly),
        ..row
    };
    providers::Entity::update_many()
        .set(providers::ActiveModel {
            time_zone: Set(row.time_zone.clone()),
            slot_minutes: Set(row.slot_minutes),
            weekly_hours: Set(row.weekly_hours.clone()),
            ..Default::default()
        })
        .filter(providers::Column::Id.eq(id))
        .exec(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "provider.set_schedule", "provider")
            .resource(id.to_string())
            .detail(serde_json::json!({
                "timeZone": schedule.time_zone.name(),
                "slotMinutes": schedule.slot_minutes,
                "intervals": schedule.weekly.len(),
            })),
    );
    tx.commit().await?;
    Ok(row)
}

/// Record an absence of the provider and audit it (the reason is not logged or audited).
pub async fn add_time_off(
    db: &DatabaseConnection,
    viewer: &Viewer,
    grant: &CalendarGrant,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    reason: String,
) -> AppResult<provider_time_off::Model> {
    let provider_id = grant.provider_id();
    let mut tx = WriteTxn::begin(db).await?;
    if provider(tx.conn(), provider_id).await?.is_none() {
        return Err(AppError::NotFound);
    }
    let row = provider_time_off::Model {
        id: Uuid::new_v4(),
        provider_id,
        starts_at: from,
        ends_at: to,
        reason,
        created_by: viewer.user_id,
        created_at: Utc::now(),
    };
    provider_time_off::Entity::insert(provider_time_off::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "provider.add_time_off", "provider")
            .resource(provider_id.to_string())
            .detail(serde_json::json!({ "timeOff": row.id.to_string() })),
    );
    tx.commit().await?;
    Ok(row)
}

/// Time off and non-cancelled appointments of the provider that reach into `[from, to)`.
async fn busy(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<Interval>> {
    let mut busy = time_off_in(db, provider_id, from, to).await?;
    busy.extend(appointments_in(db, provider_id, from, to, None).await?);
    Ok(busy)
}

/// The provider's time off that reaches into `[from, to)`.
async fn time_off_in(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> AppResult<Vec<Interval>> {
    Ok(provider_time_off::Entity::find()
        .filter(provider_time_off::Column::ProviderId.eq(provider_id))
        .filter(provider_time_off::Column::StartsAt.lt(to))
        .filter(provider_time_off::Column::EndsAt.gt(from))
        .select_only()
        .column(provider_time_off::Column::StartsAt)
        .column(provider_time_off::Column::EndsAt)
        .into_tuple()
        .all(db)
        .await?)
}

/// Non-cancelled appointments of the provider that reach into `[from, to)`, but `except`
/// (the one being moved).
async fn appointments_in(
    db: &impl ConnectionTrait,
    provider_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    except: Option<Uuid>,
) -> AppResult<Vec<Interval>> {
    let mut q = appointments::Entity::find()
        .filter(appointments::Column::ProviderId.eq(provider_id))
        .filter(appointments::Column::Status.ne(AppointmentStatus::Cancelled.as_str()))
        .filter(appointments::Column::StartsAt.lt(to))
        .filter(appointments::Column::EndsAt.gt(from));
    if let Some(id) = except {
        q = q.filter(appointments::Column::Id.ne(id));
    }
    Ok(q.select_only()
        .column(appointments::Column::StartsAt)
        .column(appointments::Column::EndsAt)
        .into_tuple()
        .all(db)
        .await?)
}

/// The provider's free slots in `[from, to)` from `now` on: working hours, less time off,
/// less non-cancelled appointments. None without a schedule.
pub async fn availability(
    db: &impl ConnectionTrait,
    provider: &providers::Model,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<Vec<Interval>> {
    let Some(schedule) = schedule_of(provider)? else {
        return Ok(Vec::new());
    };
    let earliest = from.max(now);
    if earliest >= to {
        return Ok(Vec::new());
    }
    let busy = busy(db, provider.id, earliest, to).await?;
    Ok(availability::free_slots(&schedule, &busy, from, to, now))
}

// ---------------------------------------------------------------------------------------
// Appointments

/// A stored appointment with its sealed fields opened.
#[derive(Clone)]
pub struct Appointment {
    pub row: appointments::Model,
    pub status: AppointmentStatus,
    pub reason: String,
    pub notes: Option<String>,
    pub cancel_reason: Option<String>,
}

impl std::fmt::Debug for Appointment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Reason and notes are PHI: ids and status only.
        f.debug_struct("Appointment")
            .field("id", &self.row.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn slot<'a>(column: &'static str, row: &'a Uuid) -> Slot<'a> {
    Slot {
        table: TABLE,
        column,
        row,
    }
}

/// Open a stored row.
pub fn open(keys: &KeyRing, row: appointments::Model) -> AppResult<Appointment> {
    let status = AppointmentStatus::parse(&row.status)
        .ok_or_else(|| AppError::internal_msg("stored appointment status is unknown"))?;
    let opt = |column, ct: &Option<Vec<u8>>| {
        ct.as_deref()
            .map(|c| keys.open_str(slot(column, &row.id), c))
            .transpose()
    };
    Ok(Appointment {
        status,
        reason: keys.open_str(slot("reason", &row.id), &row.reason_enc)?,
        notes: opt("notes", &row.notes_enc)?,
        cancel_reason: opt("cancel_reason", &row.cancel_reason_enc)?,
        row,
    })
}

/// An appointment to book.
pub struct NewAppointment {
    pub patient_id: Uuid,
    pub provider_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub duration_minutes: i32,
    pub reason: String,
}

impl std::fmt::Debug for NewAppointment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAppointment")
            .field("provider_id", &self.provider_id)
            .finish_non_exhaustive()
    }
}

impl NewAppointment {
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.starts_at + TimeDelta::minutes(i64::from(self.duration_minutes))
    }
}

/// A new appointment's row (version 1), its reason sealed for `id`. Also what the demo seed
/// writes, so seeded appointments are stored exactly as the API stores them.
pub fn build_row(
    keys: &KeyRing,
    id: Uuid,
    new: &NewAppointment,
    status: AppointmentStatus,
    booked_by: Uuid,
) -> AppResult<appointments::Model> {
    let now = Utc::now();
    Ok(appointments::Model {
        id,
        patient_id: new.patient_id,
        provider_id: new.provider_id,
        starts_at: new.starts_at,
        ends_at: new.ends_at(),
        duration_minutes: new.duration_minutes,
        status: status.as_str().to_owned(),
        reason_enc: keys.seal_str(slot("reason", &id), &new.reason)?,
        notes_enc: None,
        cancel_reason_enc: None,
        version: 1,
        created_by: booked_by,
        created_at: now,
        updated_by: booked_by,
        updated_at: now,
    })
}

/// Completion notes sealed for appointment `id`, as `completeAppointment` stores them. Also
/// what the bulk seed writes for its completed visits.
pub fn seal_notes(keys: &KeyRing, id: Uuid, notes: &str) -> AppResult<Vec<u8>> {
    keys.seal_str(slot("notes", &id), notes)
}

/// Whether the database refused a row for overlapping another (PostgreSQL's exclusion
/// violation, SQLSTATE 23P01; the constraint's name and message are not relied on).
fn is_exclusion_violation(e: &DbErr) -> bool {
    let (DbErr::Exec(rt) | DbErr::Query(rt) | DbErr::Conn(rt)) = e else {
        return false;
    };
    matches!(rt, RuntimeErr::SqlxError(sea_orm::sqlx::Error::Database(d))
        if d.code().as_deref() == Some("23P01"))
}

/// A write's database error, with an overlap refused by the database as CONFLICT.
fn slot_taken_or(e: DbErr) -> AppError {
    if is_exclusion_violation(&e) {
        return AppError::Conflict(SLOT_TAKEN);
    }
    e.into()
}

fn writable(grant: &ScheduleGrant) -> AppResult<()> {
    if grant.writable() {
        return Ok(());
    }
    Err(AppError::Forbidden(BREAK_GLASS_READ_ONLY))
}

/// May `[start, end)` be booked with the provider (inside this transaction)? Inside one
/// interval of working hours (VALIDATION), outside time off (VALIDATION), and, on SQLite,
/// overlapping no other non-cancelled appointment (CONFLICT; on PostgreSQL the exclusion
/// constraint decides, in the same transaction).
async fn check_bookable(
    tx: &WriteTxn,
    provider_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    except: Option<Uuid>,
) -> AppResult<()> {
    let Some(p) = provider(tx.conn(), provider_id).await? else {
        return Err(AppError::validation("providerId", "is not a provider"));
    };
    match schedule_of(&p)? {
        Some(s) if availability::fits(&s, start, end) => {}
        _ => return Err(OUTSIDE_HOURS),
    }
    if !time_off_in(tx.conn(), provider_id, start, end)
        .await?
        .is_empty()
    {
        return Err(IN_TIME_OFF);
    }
    if tx.conn().get_database_backend() != DbBackend::Postgres
        && !appointments_in(tx.conn(), provider_id, start, end, except)
            .await?
            .is_empty()
    {
        return Err(AppError::Conflict(SLOT_TAKEN));
    }
    Ok(())
}

/// Book an appointment for the grant's patient and audit it. With an idempotency key
/// already used for the same request, returns what that request booked instead (audited as
/// a read).
pub async fn book(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &ScheduleGrant,
    new: NewAppointment,
    idempotency: Option<&Idempotency>,
) -> AppResult<Appointment> {
    writable(grant)?;
    if new.patient_id != grant.patient_id() {
        return Err(AppError::internal_msg(
            "booking under another patient's grant",
        ));
    }
    if let Some(idem) = idempotency
        && let Some(prior) = idem.replay(tx, viewer.user_id).await?
    {
        let row = appointments::Entity::find_by_id(prior)
            .filter(appointments::Column::PatientId.eq(grant.patient_id()))
            .one(tx.conn())
            .await?
            .ok_or(AppError::Conflict(
                "this idempotency key was already used for another patient; use a new key",
            ))?;
        tx.audit(
            AuditEvent::by(viewer, "appointment.read", "appointment")
                .scope(grant)
                .resource(prior.to_string())
                .detail(serde_json::json!({ "idempotentReplay": true })),
        );
        return open(keys, row);
    }
    let (start, end) = (new.starts_at, new.ends_at());
    check_bookable(tx, new.provider_id, start, end, None).await?;
    let id = Uuid::new_v4();
    let row = build_row(keys, id, &new, AppointmentStatus::Scheduled, viewer.user_id)?;
    appointments::Entity::insert(appointments::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await
        .map_err(slot_taken_or)?;
    if let Some(idem) = idempotency {
        idem.remember(tx, viewer.user_id, id).await?;
    }
    tx.audit(
        AuditEvent::by(viewer, "appointment.create", "appointment")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({
                "providerId": new.provider_id.to_string(),
                "status": AppointmentStatus::Scheduled.as_str(),
                "version": 1,
            })),
    );
    Ok(Appointment {
        row,
        status: AppointmentStatus::Scheduled,
        reason: new.reason,
        notes: None,
        cancel_reason: None,
    })
}

/// The appointment as stored now, inside the transaction; only the grant's patient's (an
/// id of another patient's appointment is NOT_FOUND).
async fn current(tx: &WriteTxn, grant: &ScheduleGrant, id: Uuid) -> AppResult<appointments::Model> {
    appointments::Entity::find_by_id(id)
        .filter(appointments::Column::PatientId.eq(grant.patient_id()))
        .one(tx.conn())
        .await?
        .ok_or(AppError::NotFound)
}

/// Write `row` over the stored version `expected` (compare-and-set: an update that raced
/// this one past its checks cannot be overwritten).
async fn replace(tx: &WriteTxn, row: &appointments::Model, expected: i32) -> AppResult<()> {
    let done = appointments::Entity::update_many()
        .set(appointments::ActiveModel {
            starts_at: Set(row.starts_at),
            ends_at: Set(row.ends_at),
            status: Set(row.status.clone()),
            notes_enc: Set(row.notes_enc.clone()),
            cancel_reason_enc: Set(row.cancel_reason_enc.clone()),
            version: Set(row.version),
            updated_by: Set(row.updated_by),
            updated_at: Set(row.updated_at),
            ..Default::default()
        })
        .filter(appointments::Column::Id.eq(row.id))
        .filter(appointments::Column::Version.eq(expected))
        .exec(tx.conn())
        .await
        .map_err(slot_taken_or)?;
    if done.rows_affected != 1 {
        return Err(AppError::Conflict(STALE));
    }
    Ok(())
}

/// Move a SCHEDULED appointment to `starts_at`, keeping its length. `expected_version` must
/// be the stored one (CONFLICT otherwise); the new time must be bookable, as for a booking.
pub async fn reschedule(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &ScheduleGrant,
    id: Uuid,
    expected_version: i32,
    starts_at: DateTime<Utc>,
) -> AppResult<Appointment> {
    writable(grant)?;
    let before = current(tx, grant, id).await?;
    if before.version != expected_version {
        return Err(AppError::Conflict(STALE));
    }
    let status = AppointmentStatus::parse(&before.status)
        .ok_or_else(|| AppError::internal_msg("stored appointment status is unknown"))?;
    status.check_movable()?;
    let ends_at = starts_at + TimeDelta::minutes(i64::from(before.duration_minutes));
    check_bookable(tx, before.provider_id, starts_at, ends_at, Some(id)).await?;
    let row = appointments::Model {
        starts_at,
        ends_at,
        version: before.version + 1,
        updated_by: viewer.user_id,
        updated_at: Utc::now(),
        ..before.clone()
    };
    replace(tx, &row, before.version).await?;
    tx.audit(
        AuditEvent::by(viewer, "appointment.reschedule", "appointment")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({ "version": row.version })),
    );
    open(keys, row)
}

/// Settle a SCHEDULED appointment: CANCELLED (with `text` as the reason), COMPLETED (with
/// `text`, when given, as the notes) or NO_SHOW. Any other change is VALIDATION.
pub async fn settle(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &ScheduleGrant,
    id: Uuid,
    to: AppointmentStatus,
    text: Option<&str>,
) -> AppResult<Appointment> {
    writable(grant)?;
    let before = current(tx, grant, id).await?;
    let status = AppointmentStatus::parse(&before.status)
        .ok_or_else(|| AppError::internal_msg("stored appointment status is unknown"))?;
    status.check_transition(to)?;
    let mut row = appointments::Model {
        status: to.as_str().to_owned(),
        version: before.version + 1,
        updated_by: viewer.user_id,
        updated_at: Utc::now(),
        ..before.clone()
    };
    let action = match to {
        AppointmentStatus::Cancelled => {
            row.cancel_reason_enc = text
                .map(|t| keys.seal_str(slot("cancel_reason", &id), t))
                .transpose()?;
            "appointment.cancel"
        }
        AppointmentStatus::Completed => {
            if let Some(t) = text {
                row.notes_enc = Some(seal_notes(keys, id, t)?);
            }
            "appointment.complete"
        }
        AppointmentStatus::NoShow => "appointment.no_show",
        AppointmentStatus::Scheduled => {
            return Err(AppError::internal_msg("settling to SCHEDULED"));
        }
    };
    replace(tx, &row, before.version).await?;
    tx.audit(
        AuditEvent::by(viewer, action, "appointment")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({ "status": to.as_str(), "version": row.version })),
    );
    open(keys, row)
}

/// An appointment's patient and provider, without its sealed fields (for deciding access).
pub async fn locate(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<(Uuid, Uuid)>> {
    Ok(appointments::Entity::find_by_id(id)
        .select_only()
        .column(appointments::Column::PatientId)
        .column(appointments::Column::ProviderId)
        .into_tuple()
        .one(db)
        .await?)
}

/// One appointment of the grant's patient, opened (NOT_FOUND if it is another patient's).
pub async fn one(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &ScheduleGrant,
    id: Uuid,
) -> AppResult<Appointment> {
    let row = appointments::Entity::find_by_id(id)
        .filter(appointments::Column::PatientId.eq(grant.patient_id()))
        .one(db)
        .await?
        .ok_or(AppError::NotFound)?;
    open(keys, row)
}

/// Filters of a patient's appointments.
#[derive(Default, Debug)]
pub struct ListFilter {
    pub status: Option<AppointmentStatus>,
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
}

/// A page position: soonest first, by start then id.
pub type Position = (DateTime<Utc>, Uuid);

pub struct Page {
    pub appointments: Vec<Appointment>,
    /// The providers the page's appointments are with, by id.
    pub providers: HashMap<Uuid, providers::Model>,
    pub has_next: bool,
    pub total: Option<u64>,
}

/// The patient's appointments of `status` (if given) starting in `[from, to)` (either end
/// open when not given): what a page lists and its `totalCount` counts.
pub(super) fn listed(
    patient_id: Uuid,
    status: Option<&str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Select<appointments::Entity> {
    let mut q = appointments::Entity::find().filter(appointments::Column::PatientId.eq(patient_id));
    if let Some(s) = status {
        q = q.filter(appointments::Column::Status.eq(s));
    }
    if let Some(f) = from {
        q = q.filter(appointments::Column::StartsAt.gte(f));
    }
    if let Some(t) = to {
        q = q.filter(appointments::Column::StartsAt.lt(t));
    }
    q
}

/// One page of the grant's patient's appointments, soonest first, after `after`. The rows
/// come through [`AppointmentReads`] (coalesced with other requests' pages, each row with
/// its provider); the count, when wanted, through `db`, at the same time.
#[allow(clippy::too_many_arguments)]
pub async fn page_for_patient(
    db: &impl ConnectionTrait,
    reads: &AppointmentReads,
    keys: &KeyRing,
    grant: &ScheduleGrant,
    filter: &ListFilter,
    first: u64,
    after: Option<Position>,
    want_total: bool,
) -> AppResult<Page> {
    let total = async {
        if !want_total {
            return Ok(None);
        }
        let base = listed(
            grant.patient_id(),
            filter.status.map(AppointmentStatus::as_str),
            filter.from,
            filter.to,
        );
        Ok::<_, AppError>(Some(base.count(db).await?))
    };
    let (total, (rows, has_next)) =
        tokio::try_join!(total, reads.page(grant, filter, first, after))?;
    let mut providers = HashMap::new();
    let mut appointments = Vec::with_capacity(rows.len());
    for PageRow { row, provider } in rows {
        appointments.push(open(keys, row)?);
        providers.entry(provider.id).or_insert(provider);
    }
    Ok(Page {
        appointments,
        providers,
        has_next,
        total,
    })
}

/// Every appointment of the grant's patient, soonest first (the patient's FHIR export).
pub async fn all_for_patient(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &ScheduleGrant,
) -> AppResult<Vec<Appointment>> {
    appointments::Entity::find()
        .filter(appointments::Column::PatientId.eq(grant.patient_id()))
        .order_by_asc(appointments::Column::StartsAt)
        .order_by_asc(appointments::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|r| open(keys, r))
        .collect()
}

/// The provider's appointments that reach into `[from, to)`, soonest first (cancelled ones
/// only when asked for).
pub async fn calendar(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &CalendarGrant,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    include_cancelled: bool,
) -> AppResult<Vec<Appointment>> {
    let mut q = appointments::Entity::find()
        .filter(appointments::Column::ProviderId.eq(grant.provider_id()))
        .filter(appointments::Column::StartsAt.lt(to))
        .filter(appointments::Column::EndsAt.gt(from));
    if !include_cancelled {
        q = q.filter(appointments::Column::Status.ne(AppointmentStatus::Cancelled.as_str()));
    }
    q.order_by_asc(appointments::Column::StartsAt)
        .order_by_asc(appointments::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|r| open(keys, r))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(super::like_escaped("dr. a_b%c\\"), "dr. a\\_b\\%c\\\\");
    }
}
