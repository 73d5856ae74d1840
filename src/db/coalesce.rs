//! Concurrent statements of one kind, coalesced into batches.
//!
//! Requests queue their jobs (bounded); reader tasks, each on a connection of its own
//! ([`HeldConnection`]: no release check), take turns at the queue. A free reader waits for
//! a job, takes whatever else has queued (up to [`Batch::MAX_BATCH`]) and answers the lot
//! with one statement. An idle server answers a lone job at once, as its own batch of one;
//! under load the batches grow by themselves while earlier ones are in flight. What a
//! batch's statement is, and how its rows become replies, is the [`Batch`]'s business
//! (`patients::reads` is one).
use std::future::Future;
use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbBackend, Statement};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::held::HeldConnection;
use super::stats::SqlStats;
use crate::error::{AppError, AppResult};

/// One kind of coalesced statement.
pub trait Batch: Send + Sync + 'static {
    type Job: Send + 'static;
    type Reply: Send + 'static;
    /// Most jobs one statement carries.
    const MAX_BATCH: usize;
    /// The internal error a job gets when the readers have stopped.
    const STOPPED: &'static str;
    /// The internal error a job gets when its batch ended without a reply for it.
    const DROPPED: &'static str;
    /// The internal error every job of a failed batch gets (the cause is logged once).
    const FAILED: &'static str;

    /// Answer `jobs` on `conn`: one reply per job, in the jobs' order.
    fn answer(
        &self,
        conn: &mut HeldConnection,
        jobs: &[Self::Job],
    ) -> impl Future<Output = AppResult<Vec<Self::Reply>>> + Send;
}

struct Pending<B: Batch> {
    job: B::Job,
    reply: oneshot::Sender<AppResult<B::Reply>>,
}

type Queue<B> = Arc<Mutex<mpsc::Receiver<Pending<B>>>>;

/// Handle to the readers of one [`Batch`].
pub struct Coalesced<B: Batch> {
    tx: mpsc::Sender<Pending<B>>,
}

impl<B: Batch> Clone for Coalesced<B> {
    fn clone(&self) -> Self {
        Coalesced {
            tx: self.tx.clone(),
        }
    }
}

impl<B: Batch> Coalesced<B> {
    /// Start `readers` reader tasks (at least one), each on a connection of its own.
    /// `capacity` bounds the queue of waiting jobs.
    pub fn start(
        batch: B,
        db: DatabaseConnection,
        sql: Arc<SqlStats>,
        readers: usize,
        capacity: usize,
    ) -> Coalesced<B> {
        let (tx, rx) = mpsc::channel(capacity);
        let rx: Queue<B> = Arc::new(Mutex::new(rx));
        let batch = Arc::new(batch);
        for _ in 0..readers.max(1) {
            let conn = HeldConnection::new(db.clone(), sql.clone());
            tokio::spawn(reader(batch.clone(), conn, rx.clone()));
        }
        Coalesced { tx }
    }

    /// Queue `job` and wait for its batch's reply.
    pub async fn call(&self, job: B::Job) -> AppResult<B::Reply> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Pending { job, reply })
            .await
            .map_err(|_| AppError::internal_msg(B::STOPPED))?;
        wait.await.map_err(|_| AppError::internal_msg(B::DROPPED))?
    }
}

/// One reader: while it has the queue, it waits for a job and takes whatever else has
/// queued; it lets go of the queue while its statement runs, so jobs that arrive meanwhile
/// go to the next free reader as one batch.
async fn reader<B: Batch>(batch: Arc<B>, mut conn: HeldConnection, rx: Queue<B>) {
    loop {
        let pending = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut pending = vec![first];
            while pending.len() < B::MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => pending.push(p),
                    Err(_) => break,
                }
            }
            pending
        };
        let (jobs, replies): (Vec<B::Job>, Vec<_>) =
            pending.into_iter().map(|p| (p.job, p.reply)).unzip();
        match batch.answer(&mut conn, &jobs).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::error!(error = ?e, batch = jobs.len(), "{}", B::FAILED);
                for reply in replies {
                    let _ = reply.send(Err(AppError::internal_msg(B::FAILED)));
                }
            }
        }
    }
}

/// One statement of many: each arm (a complete SELECT, with its own order and limit) in
/// `SELECT * FROM (…)`, joined by `UNION ALL`, values in arm order. For SQLite, which has
/// no LATERAL: a batch's jobs as the arms of one compound SELECT (at most 500 arms).
pub fn union_all(backend: DbBackend, arms: impl IntoIterator<Item = Statement>) -> Statement {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (n, arm) in arms.into_iter().enumerate() {
        if n > 0 {
            sql.push_str(" UNION ALL ");
        }
        sql.push_str("SELECT * FROM (");
        sql.push_str(&arm.sql);
        sql.push(')');
        values.extend(arm.values.map(|v| v.0).unwrap_or_default());
    }
    Statement::from_sql_and_values(backend, sql, values)
}

/// A batch's rows, each tagged with its job's number (from 1), as one list per job, in the
/// rows' order. A number outside the batch is an internal error.
pub fn by_job<R>(jobs: usize, rows: impl IntoIterator<Item = (i64, R)>) -> AppResult<Vec<Vec<R>>> {
    let mut out: Vec<Vec<R>> = (0..jobs).map(|_| Vec::new()).collect();
    for (i, row) in rows {
        usize::try_from(i - 1)
            .ok()
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| AppError::internal_msg("a batched statement returned an unknown row"))?
            .push(row);
    }
    Ok(out)
}
