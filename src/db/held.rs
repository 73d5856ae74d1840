//! A pool connection that a long-lived task keeps for itself.
//!
//! sqlx checks every connection it takes back into the pool with a round trip (a `Sync` on
//! PostgreSQL, a hop to the connection's thread on SQLite), so a statement sent through the
//! pool costs two round trips. The tasks that send the hottest statements (the coalesced
//! patient reads and the audit writer) run on connections they hold instead: one round trip
//! per statement. A connection that fails is given back (the pool's check then closes it if
//! it is broken) and the next statement takes a fresh one.
use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, Values,
};
use sea_query_binder::SqlxValues;
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};

use super::stats::SqlStats;

enum Conn {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

pub struct HeldConnection {
    db: DatabaseConnection,
    sql: Arc<SqlStats>,
    conn: Option<Conn>,
}

fn not_postgres() -> DbErr {
    DbErr::Custom("a PostgreSQL statement was sent to a SQLite connection".into())
}

fn db_err(e: sqlx::Error) -> DbErr {
    DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
}

impl HeldConnection {
    /// Nothing is taken from the pool until the first statement.
    pub fn new(db: DatabaseConnection, sql: Arc<SqlStats>) -> HeldConnection {
        HeldConnection {
            db,
            sql,
            conn: None,
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn conn(&mut self) -> Result<&mut Conn, DbErr> {
        let conn = match self.conn.take() {
            Some(c) => c,
            None => match self.db.get_database_backend() {
                DbBackend::Postgres => Conn::Postgres(
                    self.db
                        .get_postgres_connection_pool()
                        .acquire()
                        .await
                        .map_err(db_err)?,
                ),
                _ => Conn::Sqlite(
                    self.db
                        .get_sqlite_connection_pool()
                        .acquire()
                        .await
                        .map_err(db_err)?,
                ),
            },
        };
        Ok(self.conn.insert(conn))
    }

    /// Keep the connection if `result` is fine; give it back to the pool if not.
    fn settle<T>(&mut self, result: Result<T, sqlx::Error>) -> Result<T, DbErr> {
        result.map_err(|e| {
            self.conn = None;
            db_err(e)
        })
    }

    /// Every row the statement returns.
    pub async fn query_all(&mut self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.sql.observe(&stmt.sql);
        let values = SqlxValues(stmt.values.unwrap_or(Values(Vec::new())));
        let result = match self.conn().await? {
            Conn::Postgres(c) => sqlx::query_with(&stmt.sql, values)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
            Conn::Sqlite(c) => sqlx::query_with(&stmt.sql, values)
                .fetch_all(&mut **c)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
        };
        self.settle(result)
    }

    /// Every row the statement returns, decoded by `T`'s own `sqlx::FromRow` for either
    /// backend: for hot rows, where sea-orm's by-name decoding (which formats an error
    /// message for every NULL column it meets) costs more than the query.
    pub async fn query_as<T>(&mut self, stmt: Statement) -> Result<Vec<T>, DbErr>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        self.sql.observe(&stmt.sql);
        let values = SqlxValues(stmt.values.unwrap_or(Values(Vec::new())));
        let result = match self.conn().await? {
            Conn::Postgres(c) => {
                sqlx::query_as_with::<_, T, _>(&stmt.sql, values)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Sqlite(c) => {
                sqlx::query_as_with::<_, T, _>(&stmt.sql, values)
                    .fetch_all(&mut **c)
                    .await
            }
        };
        self.settle(result)
    }

    /// Run the statement; returns the number of rows it affected.
    pub async fn execute(&mut self, stmt: Statement) -> Result<u64, DbErr> {
        self.sql.observe(&stmt.sql);
        let values = SqlxValues(stmt.values.unwrap_or(Values(Vec::new())));
        let result = match self.conn().await? {
            Conn::Postgres(c) => sqlx::query_with(&stmt.sql, values)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
            Conn::Sqlite(c) => sqlx::query_with(&stmt.sql, values)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
        };
        self.settle(result)
    }

    /// PostgreSQL only: every row `sql` returns, decoded by `T`, with arguments bound by the
    /// caller straight into sqlx (no sea-query values in between).
    pub async fn query_as_postgres<T>(
        &mut self,
        sql: &'static str,
        args: sqlx::postgres::PgArguments,
    ) -> Result<Vec<T>, DbErr>
    where
        T: Send + Unpin + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        self.sql.observe(sql);
        let result = match self.conn().await? {
            Conn::Postgres(c) => {
                sqlx::query_as_with::<_, T, _>(sql, args)
                    .fetch_all(&mut **c)
                    .await
            }
            Conn::Sqlite(_) => return Err(not_postgres()),
        };
        self.settle(result)
    }

    /// PostgreSQL only: run `sql` with arguments bound by the caller straight into sqlx
    /// (typed arrays with NULL elements, which sea-query's values cannot carry); returns the
    /// number of rows it affected.
    pub async fn execute_postgres(
        &mut self,
        sql: &'static str,
        args: sqlx::postgres::PgArguments,
    ) -> Result<u64, DbErr> {
        self.sql.observe(sql);
        let result = match self.conn().await? {
            Conn::Postgres(c) => sqlx::query_with(sql, args)
                .execute(&mut **c)
                .await
                .map(|r| r.rows_affected()),
            Conn::Sqlite(_) => return Err(not_postgres()),
        };
        self.settle(result)
    }
}
