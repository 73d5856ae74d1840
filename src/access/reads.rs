//! Providers' single-patient reads, coalesced across requests.
//!
//! A portal's hottest operation is one provider opening one chart. Sent one by one, each
//! read is a pool checkout, a query and sqlx's release check: two round trips to
//! PostgreSQL, and on a busy server most of the database's CPU went to network handling and
//! per-statement executor start-up rather than to the lookups themselves; on SQLite, each
//! statement is a hand-off to the connection's thread and back. Here concurrent reads queue
//! up for the reader tasks ([`IN_FLIGHT`], now one), each holding a connection of its own
//! (`crate::db::held`: no release check), and the next free reader sends whatever has queued
//! as one statement ((patient, provider) pairs joined to `patients`; the queue and readers
//! are `crate::db::coalesce`'s). An idle server answers a
//! lone read at once, as its own batch of one; under load the batches grow by themselves
//! while earlier ones are in flight. Each pair carries its own provider, so the care-team
//! and emergency-access facts are decided per request, by `access::provider_standing`, the
//! conditions lists apply too; the consent scopes the patient granted that provider come
//! in the same row, so a chart's clinical fields look nothing up.
use std::sync::Arc;

use chrono::Utc;
use sea_orm::{DatabaseConnection, DbBackend, Statement};
use uuid::Uuid;

use crate::db::coalesce::{Batch, Coalesced};
use crate::db::held::HeldConnection;
use crate::db::stats::SqlStats;
use crate::error::{AppError, AppResult};
use entity::patients;

use super::consent_scope::ConsentScope;

/// A patient row with the provider's standing towards it, and the consent scopes the
/// patient has granted the provider (active, unexpired), so the clinical fields that follow
/// in the same request need no lookup of their own.
pub struct ProviderRead {
    pub row: patients::Model,
    pub care_team: bool,
    pub emergency: bool,
    pub scopes: Vec<ConsentScope>,
}

struct Job {
    provider: Uuid,
    patient: Uuid,
}

/// Handle to the coalescing task.
#[derive(Clone)]
pub struct ProviderReads {
    readers: Coalesced<PatientBatch>,
}

/// The batched read: [`Job`]s in, the row (if visible at all) with the standing out.
struct PatientBatch;

/// Most reads one statement carries.
const MAX_BATCH: usize = 256;
/// Most readers, so statements in flight at once; while all are busy, new reads gather into the
/// next batch. Fewer readers make larger batches. Under a closed-loop load on the 2-core
/// rig, four readers sent 0.41-0.42 statements per read (reads and audit batches together)
/// and PostgreSQL spent 90-98 µs per read; one sent 0.22-0.24 and PostgreSQL spent 64-73 µs.
/// Once parsing, validation and row decoding had been cut down, two readers against one
/// measured 10,000-12,100 req/s against 12,700-13,300, with 64-83 µs of server CPU per read
/// against 53-56 and PostgreSQL's 57-64 µs against 50-51; at a fixed 1,000 req/s the
/// latencies were the same. A lone read still goes at once, as a batch of one.
const IN_FLIGHT: usize = 1;

impl ProviderReads {
    /// Start the readers, each on a connection of its own: a quarter of the pool's
    /// `pool_size` connections, at least one and at most [`IN_FLIGHT`], so the rest of the
    /// server keeps most of the pool. `capacity` bounds the queue of waiting reads.
    pub fn start(
        db: DatabaseConnection,
        sql: Arc<SqlStats>,
        pool_size: u32,
        capacity: usize,
    ) -> ProviderReads {
        let readers = (pool_size as usize / 4).clamp(1, IN_FLIGHT);
        ProviderReads {
            readers: Coalesced::start(PatientBatch, db, sql, readers, capacity),
        }
    }

    /// The patient row if it exists and is not archived, with the provider's standing.
    pub async fn read(&self, provider: Uuid, patient: Uuid) -> AppResult<Option<ProviderRead>> {
        self.readers.call(Job { provider, patient }).await
    }
}

impl Batch for PatientBatch {
    type Job = Job;
    type Reply = Option<ProviderRead>;
    const MAX_BATCH: usize = MAX_BATCH;
    const STOPPED: &'static str = "patient reader has stopped";
    const DROPPED: &'static str = "patient read was dropped";
    const FAILED: &'static str = "batched patient read failed";

    async fn answer(
        &self,
        conn: &mut HeldConnection,
        jobs: &[Job],
    ) -> AppResult<Vec<Option<ProviderRead>>> {
        let mut found: Vec<Option<ProviderRead>> = jobs.iter().map(|_| None).collect();
        for row in fetch(conn, jobs).await? {
            let slot = usize::try_from(row.i - 1)
                .ok()
                .and_then(|i| found.get_mut(i))
                .ok_or_else(|| AppError::internal_msg("batched read returned an unknown row"))?;
            *slot = Some(row.read);
        }
        Ok(found)
    }
}

/// The standing columns (`access::provider_standing`) as SQL text, with the provider and
/// "now" given as SQL expressions of the statement they go into.
fn standing<B: sea_orm::sea_query::QueryBuilder>(builder: B, provider: &str, now: &str) -> String {
    use sea_orm::sea_query::{Expr, Query};
    let (team, emergency) = super::provider_standing(Expr::cust(provider), Expr::cust(now));
    let select = Query::select()
        .expr_as(team, sea_orm::sea_query::Alias::new("cg_care_team"))
        .expr_as(emergency, sea_orm::sea_query::Alias::new("cg_emergency"))
        .to_string(builder);
    select.strip_prefix("SELECT ").unwrap_or(&select).to_owned()
}

/// The consent scopes column: every active, unexpired consent of the patient to the
/// provider, their scope lists joined by commas (`aggregate` is the backend's string
/// aggregate), NULL when there is none. The same conditions as `access::load_scopes`.
fn consents(aggregate: &str, provider: &str, now: &str) -> String {
    format!(
        r#"(SELECT {aggregate}("consents"."scopes", ',') FROM "consents" WHERE "consents"."patient_id" = "patients"."id" AND "consents"."grantee_provider_id" = {provider} AND "consents"."status" = 'ACTIVE' AND ("consents"."expires_at" IS NULL OR "consents"."expires_at" > {now})) AS cg_consents"#
    )
}

/// Every column of `patients`, in the order [`BatchRow`] decodes them (the entity's own
/// order; a test holds the two together).
const PATIENT_COLUMNS: [&str; 30] = [
    "id",
    "mrn_enc",
    "mrn_bidx",
    "given_name_enc",
    "middle_name_enc",
    "family_name_enc",
    "family_name_bidx",
    "birth_date_enc",
    "birth_date_bidx",
    "sex_at_birth",
    "gender_identity",
    "sex_at_birth_enc",
    "gender_identity_enc",
    "gender_identity_other_enc",
    "email_enc",
    "email_bidx",
    "phone_enc",
    "phone_bidx",
    "address_enc",
    "emergency_contact_enc",
    "ssn_enc",
    "ssn_last4_enc",
    "preferred_language",
    "consent_to_contact",
    "version",
    "created_by",
    "created_at",
    "updated_at",
    "archived_at",
    "archive_reason_enc",
];

/// Every column of `patients`, qualified and quoted.
fn patient_columns() -> String {
    let columns: Vec<String> = PATIENT_COLUMNS
        .iter()
        .map(|c| format!(r#""patients"."{c}""#))
        .collect();
    columns.join(", ")
}

/// One row of the batched read: `cg_i`, [`PATIENT_COLUMNS`], then the two standing columns,
/// decoded by position straight from sqlx. sea-orm's by-name decoding formatted an error
/// message for every NULL column (most of a patient's optional fields), which made decoding
/// cost more than the whole statement on the database.
struct BatchRow {
    i: i64,
    read: ProviderRead,
}

impl<'r, R> sqlx::FromRow<'r, R> for BatchRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    chrono::DateTime<Utc>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(r: &'r R) -> Result<Self, sqlx::Error> {
        let mut at = 0;
        let mut col = || {
            at += 1;
            at
        };
        Ok(BatchRow {
            i: r.try_get(0)?,
            read: ProviderRead {
                row: patients::Model {
                    id: r.try_get(col())?,
                    mrn_enc: r.try_get(col())?,
                    mrn_bidx: r.try_get(col())?,
                    given_name_enc: r.try_get(col())?,
                    middle_name_enc: r.try_get(col())?,
                    family_name_enc: r.try_get(col())?,
                    family_name_bidx: r.try_get(col())?,
                    birth_date_enc: r.try_get(col())?,
                    birth_date_bidx: r.try_get(col())?,
                    sex_at_birth: r.try_get(col())?,
                    gender_identity: r.try_get(col())?,
                    sex_at_birth_enc: r.try_get(col())?,
                    gender_identity_enc: r.try_get(col())?,
                    gender_identity_other_enc: r.try_get(col())?,
                    email_enc: r.try_get(col())?,
                    email_bidx: r.try_get(col())?,
                    phone_enc: r.try_get(col())?,
                    phone_bidx: r.try_get(col())?,
                    address_enc: r.try_get(col())?,
                    emergency_contact_enc: r.try_get(col())?,
                    ssn_enc: r.try_get(col())?,
                    ssn_last4_enc: r.try_get(col())?,
                    preferred_language: r.try_get(col())?,
                    consent_to_contact: r.try_get(col())?,
                    version: r.try_get(col())?,
                    created_by: r.try_get(col())?,
                    created_at: r.try_get(col())?,
                    updated_at: r.try_get(col())?,
                    archived_at: r.try_get(col())?,
                    archive_reason_enc: r.try_get(col())?,
                },
                care_team: r.try_get(col())?,
                emergency: r.try_get(col())?,
                scopes: r
                    .try_get::<Option<String>, _>(col())?
                    .map(|s| ConsentScope::split(&s))
                    .unwrap_or_default(),
            },
        })
    }
}

/// PostgreSQL: the pairs as two uuid arrays ($1 patients, $2 providers), $3 now.
fn postgres_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"SELECT r.i AS cg_i, {columns}, {standing}, {consents} FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(patient, provider, i) JOIN "patients" ON "patients"."id" = r.patient WHERE "patients"."archived_at" IS NULL"#,
            columns = patient_columns(),
            standing = standing(sea_orm::sea_query::PostgresQueryBuilder, "r.provider", "$3"),
            consents = consents("string_agg", "r.provider", "$3"),
        )
    });
    SQL.as_str()
}

/// SQLite (uuids stored as 16-byte blobs): the pairs as a JSON array of [patient, provider]
/// hex strings (?1), ?2 now.
fn sqlite_sql() -> &'static str {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            r#"SELECT r.key + 1 AS cg_i, {columns}, {standing}, {consents} FROM json_each(?1) AS r JOIN "patients" ON "patients"."id" = unhex(json_extract(r.value, '$[0]')) WHERE "patients"."archived_at" IS NULL"#,
            columns = patient_columns(),
            standing = standing(
                sea_orm::sea_query::SqliteQueryBuilder,
                "unhex(json_extract(r.value, '$[1]'))",
                "?2",
            ),
            consents = consents("group_concat", "unhex(json_extract(r.value, '$[1]'))", "?2"),
        )
    });
    SQL.as_str()
}

/// The batch's rows, by the statement for the connection's backend.
async fn fetch(conn: &mut HeldConnection, jobs: &[Job]) -> AppResult<Vec<BatchRow>> {
    let now = Utc::now();
    match conn.backend() {
        DbBackend::Postgres => {
            use sqlx::Arguments;
            let patients: Vec<Uuid> = jobs.iter().map(|j| j.patient).collect();
            let providers: Vec<Uuid> = jobs.iter().map(|j| j.provider).collect();
            let mut args = sqlx::postgres::PgArguments::default();
            let bound = args
                .add(patients)
                .and_then(|()| args.add(providers))
                .and_then(|()| args.add(now));
            bound.map_err(AppError::internal_boxed)?;
            Ok(conn.query_as_postgres(postgres_sql(), args).await?)
        }
        backend => {
            let pairs: Vec<[String; 2]> = jobs
                .iter()
                .map(|j| {
                    [
                        j.patient.simple().to_string(),
                        j.provider.simple().to_string(),
                    ]
                })
                .collect();
            let json = serde_json::to_string(&pairs).unwrap_or_default();
            let stmt =
                Statement::from_sql_and_values(backend, sqlite_sql(), [json.into(), now.into()]);
            Ok(conn.query_as(stmt).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The batched read decodes `patients` by position: its column list must be the
    /// entity's, in the entity's order (a column added to the entity fails to compile in
    /// `BatchRow`; this catches one moved or renamed).
    #[test]
    fn columns_are_the_entitys_in_order() {
        use sea_orm::Iterable;
        let entity: Vec<String> = entity::patients::Column::iter()
            .map(|c| sea_orm::IdenStatic::as_str(&c).to_owned())
            .collect();
        assert_eq!(entity, super::PATIENT_COLUMNS);
    }
}
