//! Pages of a patient's appointments (`Patient.appointments`), coalesced across requests.
//!
//! Every opening of the portal's home screen asks for the patient's next visits, and a page
//! sent on its own is a pool checkout, a query and sqlx's release check, then one more
//! statement for the providers it names. Here concurrent page requests queue up for one reader task on a
//! connection of its own (`crate::db::held`: no release check), which sends whatever has
//! queued at once (the queue and the reader are `crate::db::coalesce`'s, as for
//! `access::reads`). Each page carries its own patient, filters, position and size, and
//! each row comes with its provider, joined in the same statement, so `Appointment.provider`
//! needs no statement of its own (the caller feeds them to the request's loader).
//!
//! PostgreSQL answers a whole batch with one statement: the jobs as parallel arrays,
//! `unnest`ed, each page a `LATERAL` subquery with its own `LIMIT`. SQLite has no
//! `LATERAL` (and no network round trip to save): each job of the batch is its own
//! statement on the held connection, built from the same conditions as the pool's count.
//! Both give the rows of `service::page_for_patient`'s order: soonest first, then by id.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm::{DatabaseConnection, DbBackend, QueryFilter, QueryOrder, QuerySelect, QueryTrait};
use uuid::Uuid;

use super::service::{self, ListFilter, Position};
use crate::access::schedule::ScheduleGrant;
use crate::db::coalesce::{self, Batch, Coalesced};
use crate::db::held::HeldConnection;
use crate::db::keyset;
use crate::db::stats::SqlStats;
use crate::error::{AppError, AppResult};
use entity::{appointments, providers};

/// An appointment row with its provider's.
pub struct PageRow {
    pub row: appointments::Model,
    pub provider: providers::Model,
}

/// One page request: the patient's appointments that pass the filters, after `after`, at
/// most `limit` of them (the page's size and one more, to tell whether more follow).
struct Job {
    patient: Uuid,
    status: Option<&'static str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    after: Option<Position>,
    limit: i64,
}

/// Handle to the coalescing task.
#[derive(Clone)]
pub struct AppointmentReads {
    readers: Coalesced<AppointmentPages>,
}

/// The batched read: [`Job`]s in, each page's rows with their providers out.
struct AppointmentPages;

/// Most pages one statement carries (each at most `relay::MAX_FIRST` + 1 rows).
const MAX_BATCH: usize = 128;
/// Most readers, so statements in flight at once; one, as for `access::reads` (fewer
/// readers make larger batches; a lone page still goes at once, as a batch of one).
const IN_FLIGHT: usize = 1;

impl AppointmentReads {
    /// Start the reader on a connection of its own: a quarter of the pool's `pool_size`
    /// connections, at least one and at most [`IN_FLIGHT`]. `capacity` bounds the queue of
    /// waiting pages.
    pub fn start(
        db: DatabaseConnection,
        sql: Arc<SqlStats>,
        pool_size: u32,
        capacity: usize,
    ) -> AppointmentReads {
        let readers = (pool_size as usize / 4).clamp(1, IN_FLIGHT);
        AppointmentReads {
            readers: Coalesced::start(AppointmentPages, db, sql, readers, capacity),
        }
    }

    /// One page of the grant's patient's appointments that pass `filter`, soonest first,
    /// after `after`: at most `first` rows with their providers, and whether more follow.
    pub async fn page(
        &self,
        grant: &ScheduleGrant,
        filter: &ListFilter,
        first: u64,
        after: Option<Position>,
    ) -> AppResult<(Vec<PageRow>, bool)> {
        let limit = first
            .checked_add(1)
            .and_then(|l| i64::try_from(l).ok())
            .ok_or_else(|| AppError::internal_msg("page size out of range"))?;
        let rows = self
            .readers
            .call(Job {
                patient: grant.patient_id(),
                status: filter.status.map(|s| s.as_str()),
                from: filter.from,
                to: filter.to,
                after,
                limit,
            })
            .await?;
        Ok(keyset::take(rows, first))
    }
}

impl Batch for AppointmentPages {
    type Job = Job;
    type Reply = Vec<PageRow>;
    const MAX_BATCH: usize = MAX_BATCH;
    const STOPPED: &'static str = "appointment reader has stopped";
    const DROPPED: &'static str = "appointment page read was dropped";
    const FAILED: &'static str = "batched appointment page read failed";

    async fn answer(
        &self,
        conn: &mut HeldConnection,
        jobs: &[Job],
    ) -> AppResult<Vec<Vec<PageRow>>> {
        let rows = match conn.backend() {
            DbBackend::Postgres => fetch_postgres(conn, jobs).await?,
            _ => conn.query_as(sqlite_statement(jobs)).await?,
        };
        let mut pages =
            coalesce::by_job(jobs.len(), rows.into_iter().map(|r: BatchRow| (r.i, r.row)))?;
        for page in &mut pages {
            // Each page soonest first (PostgreSQL sends them so; SQLite's compound SELECT
            // keeps no order of its own).
            page.sort_by_key(|r| (r.row.starts_at, r.row.id));
        }
        Ok(pages)
    }
}

/// Every column of `appointments`, in the order [`PageRow`] decodes them (the entity's
/// own order; a test holds the two together).
const APPOINTMENT_COLUMNS: [&str; 15] = [
    "id",
    "patient_id",
    "provider_id",
    "starts_at",
    "ends_at",
    "duration_minutes",
    "status",
    "reason_enc",
    "notes_enc",
    "cancel_reason_enc",
    "version",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
];

/// Every column of `providers`, in the order [`PageRow`] decodes them after the
/// appointment's (the entity's own order; a test holds the two together).
const PROVIDER_COLUMNS: [&str; 7] = [
    "id",
    "display_name",
    "created_at",
    "specialty",
    "time_zone",
    "slot_minutes",
    "weekly_hours",
];

/// `columns`, qualified by `table` and quoted.
fn qualified(table: &str, columns: &[&str]) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|c| format!(r#""{table}"."{c}""#))
        .collect();
    columns.join(", ")
}

/// One row of a page: [`APPOINTMENT_COLUMNS`], then [`PROVIDER_COLUMNS`], decoded by
/// position straight from sqlx (sea-orm's by-name decoding formats an error message for
/// every NULL column it meets, and an appointment's notes and cancellation reason mostly
/// are).
impl<'r, R> sqlx::FromRow<'r, R> for PageRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        decode_page_row(r, 0)
    }
}

/// A [`PageRow`] from the columns of `r` starting at `first`.
fn decode_page_row<'r, R>(r: &'r R, first: usize) -> Result<PageRow, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut at = first;
    let mut col = || {
        at += 1;
        at - 1
    };
    Ok(PageRow {
        row: appointments::Model {
            id: r.try_get(col())?,
            patient_id: r.try_get(col())?,
            provider_id: r.try_get(col())?,
            starts_at: r.try_get(col())?,
            ends_at: r.try_get(col())?,
            duration_minutes: r.try_get(col())?,
            status: r.try_get(col())?,
            reason_enc: r.try_get(col())?,
            notes_enc: r.try_get(col())?,
            cancel_reason_enc: r.try_get(col())?,
            version: r.try_get(col())?,
            created_by: r.try_get(col())?,
            created_at: r.try_get(col())?,
            updated_by: r.try_get(col())?,
            updated_at: r.try_get(col())?,
        },
        provider: providers::Model {
            id: r.try_get(col())?,
            display_name: r.try_get(col())?,
            created_at: r.try_get(col())?,
            specialty: r.try_get(col())?,
            time_zone: r.try_get(col())?,
            slot_minutes: r.try_get(col())?,
            weekly_hours: r.try_get(col())?,
        },
    })
}

/// One row of PostgreSQL's batched statement: `cg_i` (which job, from 1), then a
/// [`PageRow`].
struct BatchRow {
    i: i64,
    row: PageRow,
}

impl<'r, R> sqlx::FromRow<'r, R> for BatchRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        Ok(BatchRow {
            i: r.try_get(0)?,
            row: decode_page_row(r, 1)?,
        })
    }
}

/// PostgreSQL: the jobs as parallel arrays ($1 patients, $2 statuses, $3 from, $4 to, $5 and
/// $6 the `after` positions, $7 limits; NULL where a job has no such filter), each page a
/// lateral subquery over `ix_appointments_patient_start`. The filters are written as
/// bounds of that index (open ones as ±infinity and the nil uuid, which no stored row
/// reaches: `ends_at > starts_at` keeps `starts_at` finite), so each page is one range of
/// it, read in order and cut at its limit. `(starts_at, id) > (t, i)` is
/// `db::keyset::after(.., false)`: `starts_at > t OR (starts_at = t AND id > i)`. How to
/// join `providers` is left to the planner (with a generic plan, a hash of a small table,
/// primary-key lookups behind a memo for a large one).
fn postgres_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"SELECT r.i AS cg_i, {a_columns}, {p_columns} FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::uuid[], $7::int8[]) WITH ORDINALITY AS r(patient, status, from_at, to_at, after_at, after_id, lim, i) CROSS JOIN LATERAL (SELECT * FROM "appointments" WHERE "appointments"."patient_id" = r.patient AND (r.status IS NULL OR "appointments"."status" = r.status) AND "appointments"."starts_at" >= COALESCE(r.from_at, '-infinity') AND "appointments"."starts_at" < COALESCE(r.to_at, 'infinity') AND ("appointments"."starts_at", "appointments"."id") > (COALESCE(r.after_at, '-infinity'), COALESCE(r.after_id, '00000000-0000-0000-0000-000000000000')) ORDER BY "appointments"."starts_at", "appointments"."id" LIMIT r.lim) AS "a" JOIN "providers" ON "providers"."id" = "a"."provider_id" ORDER BY r.i, "a"."starts_at", "a"."id""#,
            a_columns = qualified("a", &APPOINTMENT_COLUMNS),
            p_columns = qualified("providers", &PROVIDER_COLUMNS),
        )
    });
    SQL.as_str()
}

/// The batch's rows on PostgreSQL, by job, then in each page's order.
async fn fetch_postgres(conn: &mut HeldConnection, jobs: &[Job]) -> AppResult<Vec<BatchRow>> {
    use sqlx::Arguments;
    let patients: Vec<Uuid> = jobs.iter().map(|j| j.patient).collect();
    let statuses: Vec<Option<&str>> = jobs.iter().map(|j| j.status).collect();
    let froms: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.from).collect();
    let tos: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.to).collect();
    let after_ats: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.after.map(|a| a.0)).collect();
    let after_ids: Vec<Option<Uuid>> = jobs.iter().map(|j| j.after.map(|a| a.1)).collect();
    let limits: Vec<i64> = jobs.iter().map(|j| j.limit).collect();
    let mut args = sqlx::postgres::PgArguments::default();
    let bound = args
        .add(patients)
        .and_then(|()| args.add(statuses))
        .and_then(|()| args.add(froms))
        .and_then(|()| args.add(tos))
        .and_then(|()| args.add(after_ats))
        .and_then(|()| args.add(after_ids))
        .and_then(|()| args.add(limits));
    bound.map_err(AppError::internal_boxed)?;
    Ok(conn.query_as_postgres(postgres_sql(), args).await?)
}

/// SQLite (no LATERAL): every job's page as one arm of a `UNION ALL`, tagged with the job's
/// number: one statement per batch, as on PostgreSQL. An arm is `service::listed`'s
/// conditions and `db::keyset::after`, ordered and cut as `service::page_for_patient` did,
/// joined to `providers` outside (the keyset condition names `id` unqualified, which
/// `providers` has too).
fn sqlite_statement(jobs: &[Job]) -> sea_orm::Statement {
    let arms = jobs
        .iter()
        .enumerate()
        .map(|(n, job)| sqlite_arm(job, n + 1));
    coalesce::union_all(DbBackend::Sqlite, arms)
}

fn sqlite_arm(job: &Job, n: usize) -> sea_orm::Statement {
    use appointments::Column as A;
    let mut page = service::listed(job.patient, job.status, job.from, job.to);
    if let Some((t, id)) = job.after {
        page = page.filter(keyset::after(A::StartsAt, A::Id, t, id, false));
    }
    let limit = u64::try_from(job.limit).unwrap_or(0);
    let page = page
        .order_by_asc(A::StartsAt)
        .order_by_asc(A::Id)
        .limit(limit)
        .into_query();
    let a = Alias::new("a");
    let mut q = Query::select();
    q.from_subquery(page, a.clone());
    q.expr_as(Expr::val(n as i64), Alias::new("cg_i"));
    for c in APPOINTMENT_COLUMNS {
        q.column((a.clone(), Alias::new(c)));
    }
    for c in PROVIDER_COLUMNS {
        q.column((providers::Entity, Alias::new(c)));
    }
    q.inner_join(
        providers::Entity,
        Expr::col((providers::Entity, providers::Column::Id)).equals((a, A::ProviderId)),
    );
    DbBackend::Sqlite.build(&q)
}

#[cfg(test)]
mod tests {
    use sea_orm::Iterable;

    fn names<C: sea_orm::IdenStatic>(columns: impl Iterator<Item = C>) -> Vec<String> {
        columns.map(|c| c.as_str().to_owned()).collect()
    }

    /// Pages decode `appointments` and `providers` by position: the column lists must be
    /// the entities', in the entities' order (a column added to an entity fails to compile
    /// in `decode_page_row`; this catches one moved or renamed).
    #[test]
    fn columns_are_the_entitys_in_order() {
        assert_eq!(
            names(entity::appointments::Column::iter()),
            super::APPOINTMENT_COLUMNS
        );
        assert_eq!(
            names(entity::providers::Column::iter()),
            super::PROVIDER_COLUMNS
        );
    }
}
