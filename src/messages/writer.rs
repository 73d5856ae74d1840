//! `sendMessage`, group-committed.
//!
//! Message writes take turns (each holds the messages lane from its first statement, so a
//! message's `seq` order is its commit order: see `service`): sent one by one, each send
//! would be its own round trips and its own commit. Here sends queue (bounded) for one
//! writer task, which takes whatever has queued (up to [`MAX_BATCH`]) and writes the lot in
//! one transaction with the same statements a single send uses (`service::send_many`): one
//! lane lock, one commit and one statement of each kind for the batch. An idle server
//! sends a lone message at once, as a batch of one; under load the batches grow while the
//! previous one commits.
//!
//! Once a batch has committed and its senders have their answers, the writer publishes its
//! messages' events (ids only) in `seq` order, before it takes the next batch: a subscriber
//! never sees a later message's event before an earlier one's (a feed skips what is below
//! its last `seq`), and a send whose client went away is still announced. An idempotent
//! replay is not announced again.
//!
//! A job's own refusal (a read-only grant, an idempotency key reused) is that job's answer
//! alone. A batch whose transaction fails wrote nothing, and each of its jobs is then sent
//! again on its own, so one job cannot fail the others.
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use super::service::{self, SendJob, Sent};
use crate::audit::WriteTxn;
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use crate::stores::bus::Bus;

/// Most messages one transaction writes.
pub const MAX_BATCH: usize = 64;

struct Pending {
    job: SendJob,
    reply: oneshot::Sender<AppResult<Sent>>,
}

/// Handle to the send writer.
#[derive(Clone)]
pub struct Sends {
    tx: mpsc::Sender<Pending>,
}

impl Sends {
    /// Start the writer task. `capacity` bounds the queue of waiting sends.
    pub fn start(db: DatabaseConnection, keys: KeyRing, bus: Bus, capacity: usize) -> Sends {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(writer(db, keys, bus, rx));
        Sends { tx }
    }

    /// Send one message and wait until it (with its audit row) has committed. Once queued
    /// it is written even if the caller stops waiting.
    pub async fn send(&self, job: SendJob) -> AppResult<Sent> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Pending { job, reply })
            .await
            .map_err(|_| AppError::internal_msg("message writer has stopped"))?;
        wait.await
            .map_err(|_| AppError::internal_msg("message send was dropped"))?
    }
}

async fn writer(db: DatabaseConnection, keys: KeyRing, bus: Bus, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        let (jobs, replies): (Vec<SendJob>, Vec<_>) =
            pending.into_iter().map(|p| (p.job, p.reply)).unzip();
        let answers = match write(&db, &keys, &jobs).await {
            Ok(answers) => answers,
            Err(e) if jobs.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = ?e, batch = jobs.len(), "message batch failed; sending its messages one by one");
                let mut answers = Vec::with_capacity(jobs.len());
                for job in &jobs {
                    answers.push(match write(&db, &keys, std::slice::from_ref(job)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| {
                            Err(AppError::internal_msg("message send was dropped"))
                        }),
                        Err(e) => Err(e),
                    });
                }
                answers
            }
        };
        let mut announce = Vec::new();
        for (reply, answer) in replies.into_iter().zip(answers) {
            if let Ok(Sent {
                message,
                to: Some(to),
            }) = &answer
            {
                announce.push((message.clone(), to.clone()));
            }
            let _ = reply.send(answer);
        }
        for (message, to) in announce {
            super::live::publish_message(&bus, &message, to).await;
        }
    }
}

/// One transaction: the jobs' messages, their idempotency keys and audit rows.
async fn write(
    db: &DatabaseConnection,
    keys: &KeyRing,
    jobs: &[SendJob],
) -> AppResult<Vec<AppResult<Sent>>> {
    let mut tx = WriteTxn::begin_in(db, service::LANE).await?;
    let answers = service::send_many(&mut tx, keys, jobs).await?;
    tx.commit().await?;
    Ok(answers)
}
