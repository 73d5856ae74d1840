//! Record lists, coalesced across requests.
//!
//! The portal's home screen reads three or four lists of one patient's records (active
//! medications, allergies, the last lab results), and a busy server reads them for many
//! patients at once. Sent one by one through the pool, each list is a pool checkout, a
//! statement and sqlx's release check: two round trips, and a PostgreSQL backend woken for
//! each. Here the lists queue for one reader on a connection of its own (`crate::db::held`,
//! no release check), which sends whatever has queued as one statement (`crate::db::
//! coalesce`): on PostgreSQL each job is a row of `unnest(…)` whose lateral subquery is
//! that job's list, with its own conditions, order and limit; on SQLite (no LATERAL) each
//! job is one arm of a `UNION ALL`, with its own order and limit. A lone list still goes at
//! once, as a batch of one.
//!
//! A job is built from a [`RecordSet`] only, so no list reaches a row its grant does not
//! cover: the set's patient, kinds, sensitivity and (for a share) record are the job's first
//! conditions, exactly as [`RecordSet::condition`] states them for the pooled queries.
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sea_orm::{Iterable, QueryTrait};
use uuid::Uuid;

use super::family::{ListFilter, Position, RecordSet};
use super::kinds::{RecordStatus, Sensitivity};
use crate::db::coalesce::{self, Batch, Coalesced};
use crate::db::held::HeldConnection;
use crate::db::stats::SqlStats;
use crate::error::{AppError, AppResult};
use entity::medical_records;

/// One list: the rows of `set` that pass `filter` (no code filter: those go through the
/// pool), newest first, after `after`, at most `limit` of them (all when `None`).
pub struct Job {
    set: RecordSet,
    status: Option<&'static str>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    include_entered_in_error: bool,
    after: Option<Position>,
    limit: Option<u64>,
}

impl Job {
    /// The list for `set` under `filter`, or `None` when the filter searches by code (a
    /// blind-index list per job, which the batched statement does not carry).
    pub fn new(
        set: &RecordSet,
        filter: &ListFilter,
        after: Option<Position>,
        limit: Option<u64>,
    ) -> Option<Job> {
        if filter.code.is_some() {
            return None;
        }
        Some(Job {
            set: set.clone(),
            status: filter.status,
            from: filter.from,
            to: filter.to,
            include_entered_in_error: filter.include_entered_in_error,
            after,
            limit,
        })
    }
}

/// Handle to the coalescing reader.
#[derive(Clone)]
pub struct RecordReads {
    readers: Coalesced<ListBatch>,
}

struct ListBatch;

/// Most lists one statement carries (SQLite allows 500 arms in a compound SELECT).
const MAX_BATCH: usize = 256;

impl RecordReads {
    /// Start the reader on a connection of its own (one, as for the patient reads: while
    /// it is busy, new lists gather into the next batch). `capacity` bounds the queue.
    pub fn start(db: DatabaseConnection, sql: Arc<SqlStats>, capacity: usize) -> RecordReads {
        RecordReads {
            readers: Coalesced::start(ListBatch, db, sql, 1, capacity),
        }
    }

    /// The job's rows, newest first.
    pub async fn list(&self, job: Job) -> AppResult<Vec<medical_records::Model>> {
        if job.set.kinds.is_empty() {
            return Ok(Vec::new());
        }
        self.readers.call(job).await
    }
}

impl Batch for ListBatch {
    type Job = Job;
    type Reply = Vec<medical_records::Model>;
    const MAX_BATCH: usize = MAX_BATCH;
    const STOPPED: &'static str = "record reader has stopped";
    const DROPPED: &'static str = "record list was dropped";
    const FAILED: &'static str = "batched record list failed";

    async fn answer(
        &self,
        conn: &mut HeldConnection,
        jobs: &[Job],
    ) -> AppResult<Vec<Vec<medical_records::Model>>> {
        let rows = match conn.backend() {
            DbBackend::Postgres => {
                conn.query_as_postgres(postgres_sql(), postgres_arguments(jobs)?)
                    .await?
            }
            backend => conn.query_as(sqlite_statement(backend, jobs)).await?,
        };
        by_job(jobs.len(), rows)
    }
}

/// The rows of a batch, each job's own, newest first.
fn by_job(jobs: usize, rows: Vec<ListRow>) -> AppResult<Vec<Vec<medical_records::Model>>> {
    let mut out = coalesce::by_job(jobs, rows.into_iter().map(|r| (r.i, r.row)))?;
    for list in &mut out {
        // A compound SELECT keeps no order of its own.
        list.sort_by_key(|r| std::cmp::Reverse((r.occurred_at, r.id)));
    }
    Ok(out)
}

/// SQLite: each job's query (with its own order and limit) as one arm of a `UNION ALL`,
/// tagged with the job's number: one statement per batch, as on PostgreSQL.
fn sqlite_statement(backend: DbBackend, jobs: &[Job]) -> sea_orm::Statement {
    let arms = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| one_query(job, i + 1).build(backend));
    coalesce::union_all(backend, arms)
}

/// One job as a sea-orm query (SQLite), in the same terms as the pooled lists, selecting
/// its number (`n`) as `cg_i` and then the entity's columns so [`ListRow`] decodes it.
fn one_query(job: &Job, n: usize) -> sea_orm::Select<medical_records::Entity> {
    use sea_orm::sea_query::Expr;
    let filter = ListFilter {
        from: job.from,
        to: job.to,
        code: None,
        include_entered_in_error: job.include_entered_in_error,
        status: job.status,
    };
    let mut q = medical_records::Entity::find()
        .select_only()
        .expr_as(Expr::val(n as i64), "cg_i")
        .columns(medical_records::Column::iter())
        .filter(job.set.condition())
        .filter(filter.condition())
        .order_by_desc(medical_records::Column::OccurredAt)
        .order_by_desc(medical_records::Column::Id);
    if let Some((t, id)) = job.after {
        q = q.filter(crate::db::keyset::after(
            medical_records::Column::OccurredAt,
            medical_records::Column::Id,
            t,
            id,
            true,
        ));
    }
    if let Some(l) = job.limit {
        q = q.limit(l);
    }
    q
}

/// Every column of `medical_records`, in the order [`ListRow`] decodes them (the entity's
/// own order; a test holds the two together).
const COLUMNS: [&str; 15] = [
    "id",
    "patient_id",
    "kind",
    "status",
    "record_status",
    "sensitivity",
    "version",
    "occurred_at",
    "recorded_at",
    "recorded_by",
    "provider_id",
    "code_bidx",
    "content_enc",
    "updated_at",
    "updated_by",
];

/// PostgreSQL: the jobs as parallel arrays, one lateral list each. `$1` patients, `$2` kinds
/// (comma-separated), `$3` sensitive allowed, `$4` the one record (a share) or NULL, `$5`
/// status or NULL, `$6`/`$7` event-time window or NULL, `$8` entered-in-error included,
/// `$9`/`$10` the keyset position or NULL, `$11` limit or NULL (no limit).
fn postgres_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let cols: Vec<String> = COLUMNS.iter().map(|c| format!(r#"m."{c}""#)).collect();
        format!(
            r#"SELECT r.i AS cg_i, {cols} FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::uuid[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::bool[], $9::timestamptz[], $10::uuid[], $11::int8[]) WITH ORDINALITY AS r(patient, kinds, sensitive, record, status, t_from, t_to, eie, after_t, after_id, lim, i) CROSS JOIN LATERAL (SELECT * FROM "medical_records" x WHERE x."patient_id" = r.patient AND x."kind" = ANY(string_to_array(r.kinds, ',')) AND (r.sensitive OR x."sensitivity" = '{normal}') AND (r.record IS NULL OR x."id" = r.record) AND (r.status IS NULL OR x."status" = r.status) AND (r.t_from IS NULL OR x."occurred_at" >= r.t_from) AND (r.t_to IS NULL OR x."occurred_at" < r.t_to) AND (r.eie OR x."record_status" <> '{eie}') AND (r.after_t IS NULL OR x."occurred_at" < r.after_t OR (x."occurred_at" = r.after_t AND x."id" < r.after_id)) ORDER BY x."occurred_at" DESC, x."id" DESC LIMIT r.lim) m ORDER BY r.i, m."occurred_at" DESC, m."id" DESC"#,
            cols = cols.join(", "),
            normal = Sensitivity::Normal.as_str(),
            eie = RecordStatus::EnteredInError.as_str(),
        )
    });
    SQL.as_str()
}

fn postgres_arguments(jobs: &[Job]) -> AppResult<sqlx::postgres::PgArguments> {
    use sqlx::Arguments;
    let patients: Vec<Uuid> = jobs.iter().map(|j| j.set.patient_id).collect();
    let kinds: Vec<String> = jobs
        .iter()
        .map(|j| {
            let k: Vec<&str> = j.set.kinds.iter().map(|k| k.as_str()).collect();
            k.join(",")
        })
        .collect();
    let sensitive: Vec<bool> = jobs.iter().map(|j| j.set.sensitive).collect();
    let record: Vec<Option<Uuid>> = jobs.iter().map(|j| j.set.record).collect();
    let status: Vec<Option<&str>> = jobs.iter().map(|j| j.status).collect();
    let from: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.from).collect();
    let to: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.to).collect();
    let eie: Vec<bool> = jobs.iter().map(|j| j.include_entered_in_error).collect();
    let after_t: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|j| j.after.map(|a| a.0)).collect();
    let after_id: Vec<Option<Uuid>> = jobs.iter().map(|j| j.after.map(|a| a.1)).collect();
    let limit: Vec<Option<i64>> = jobs
        .iter()
        .map(|j| j.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
        .collect();
    let mut args = sqlx::postgres::PgArguments::default();
    let bound = args
        .add(patients)
        .and_then(|()| args.add(kinds))
        .and_then(|()| args.add(sensitive))
        .and_then(|()| args.add(record))
        .and_then(|()| args.add(status))
        .and_then(|()| args.add(from))
        .and_then(|()| args.add(to))
        .and_then(|()| args.add(eie))
        .and_then(|()| args.add(after_t))
        .and_then(|()| args.add(after_id))
        .and_then(|()| args.add(limit));
    bound.map_err(AppError::internal_boxed)?;
    Ok(args)
}

/// One row of a list: `cg_i`, then [`COLUMNS`], decoded by position (sea-orm's by-name
/// decoding formats an error message for every NULL column it meets).
struct ListRow {
    i: i64,
    row: medical_records::Model,
}

impl<'r, R> sqlx::FromRow<'r, R> for ListRow
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
        let mut at = 0;
        let mut col = || {
            at += 1;
            at
        };
        Ok(ListRow {
            i: r.try_get(0)?,
            row: medical_records::Model {
                id: r.try_get(col())?,
                patient_id: r.try_get(col())?,
                kind: r.try_get(col())?,
                status: r.try_get(col())?,
                record_status: r.try_get(col())?,
                sensitivity: r.try_get(col())?,
                version: r.try_get(col())?,
                occurred_at: r.try_get(col())?,
                recorded_at: r.try_get(col())?,
                recorded_by: r.try_get(col())?,
                provider_id: r.try_get(col())?,
                code_bidx: r.try_get(col())?,
                content_enc: r.try_get(col())?,
                updated_at: r.try_get(col())?,
                updated_by: r.try_get(col())?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    /// The lists decode `medical_records` by position: the column list must be the
    /// entity's, in the entity's order.
    #[test]
    fn columns_are_the_entitys_in_order() {
        use sea_orm::Iterable;
        let entity: Vec<String> = entity::medical_records::Column::iter()
            .map(|c| sea_orm::IdenStatic::as_str(&c).to_owned())
            .collect();
        assert_eq!(entity, super::COLUMNS);
    }
}
