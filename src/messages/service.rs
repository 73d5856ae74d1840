//! Threads and messages: the rules and all database access of the domain. Services take
//! what `access::messaging` granted ([`MessagingGrant`], [`ThreadGrant`]), never bare ids;
//! writes take the caller's [`WriteTxn`], so a message, its thread's state, the idempotency
//! key and the audit row commit together or not at all.
//!
//! A message's `seq` is allocated inside that transaction, which is in the messages
//! [`LANE`]: its first statement took the lane's lock, so the lane's writes are serialised,
//! `seq` order is commit order, and a reader that has seen every message up to `seq` n never
//! later finds one below n committed. That is what makes "replay after a cursor" exact.
//! Every write of the domain (and the seed's) is in the lane, as [`WriteTxn::begin_in`]
//! requires of writes that lock the same rows; the audit head is taken only at commit.
use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{Alias, Asterisk, Expr, Func, Query, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::access::Role;
use crate::access::messaging::{MessagingGrant, ThreadGrant};
use crate::audit::{AuditEvent, Lane, PatientGrant, WriteTxn};
use crate::crypto::{KeyRing, Slot};
use crate::db::keyset;
use crate::error::{AppError, AppResult};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use entity::{message_attachments, message_threads, messages, thread_participants};

/// The lane of every transaction that writes messages, threads or read state.
pub const LANE: Lane = Lane::new(0x6361_7265_6d73_6773);

/// How long after sending its sender may retract a message.
pub const RETRACT_WINDOW: TimeDelta = TimeDelta::minutes(5);
/// Longest subject, in characters.
pub const SUBJECT_MAX: usize = 200;
/// Longest body, in characters.
pub const BODY_MAX: usize = 10_000;
/// Most attachments on one message.
pub const ATTACHMENTS_MAX: usize = 10;

/// A thread with its subject opened.
#[derive(Clone, Debug)]
pub struct Thread {
    pub row: message_threads::Model,
    pub subject: String,
}

/// A message with its body opened (`None` once retracted) and its attachments in order.
#[derive(Clone, Debug)]
pub struct Message {
    pub row: messages::Model,
    pub body: Option<String>,
    pub attachments: Vec<Uuid>,
}

/// A message just sent, with the users taking part in its thread once it was (`None` when
/// it was sent earlier: an idempotent replay), whom its event goes to.
#[derive(Clone, Debug)]
pub struct Sent {
    pub message: Message,
    pub to: Option<Vec<Uuid>>,
}

/// A thread's participant.
#[derive(Clone, Debug)]
pub struct Participant {
    pub user_id: Uuid,
    pub role: Role,
    /// The user's patient or provider id, to name them by.
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
}

fn subject_slot(id: &Uuid) -> Slot<'_> {
    Slot {
        table: "message_threads",
        column: "subject",
        row: id,
    }
}

fn body_slot(id: &Uuid) -> Slot<'_> {
    Slot {
        table: "messages",
        column: "body",
        row: id,
    }
}

/// A subject sealed for thread `id` (demo data writes rows directly).
pub fn seal_subject(keys: &KeyRing, id: &Uuid, subject: &str) -> AppResult<Vec<u8>> {
    keys.seal_str(subject_slot(id), subject)
}

/// A body sealed for message `id`.
pub fn seal_body(keys: &KeyRing, id: &Uuid, body: &str) -> AppResult<Vec<u8>> {
    keys.seal_str(body_slot(id), body)
}

pub fn open_thread(keys: &KeyRing, row: message_threads::Model) -> AppResult<Thread> {
    Ok(Thread {
        subject: keys.open_str(subject_slot(&row.id), &row.subject_enc)?,
        row,
    })
}

fn open_message(
    keys: &KeyRing,
    row: messages::Model,
    attachments: Vec<Uuid>,
) -> AppResult<Message> {
    let body = match row.retracted_at {
        Some(_) => None,
        None => Some(keys.open_str(body_slot(&row.id), &row.body_enc)?),
    };
    Ok(Message {
        row,
        body,
        attachments,
    })
}

/// A new thread: its subject, first message and the other participants' user accounts.
pub struct NewThread {
    pub subject: String,
    pub body: String,
    pub attachments: Vec<Uuid>,
    /// `(user_id, role)` of everyone besides the author.
    pub others: Vec<(Uuid, Role)>,
}

impl std::fmt::Debug for NewThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewThread")
            .field("subject", &"[redacted]")
            .field("body", &"[redacted]")
            .field("attachments", &self.attachments.len())
            .field("others", &self.others.len())
            .finish()
    }
}

/// Start a thread about the grant's patient with its first message. With an idempotency
/// key already used for the same request, returns what that request created (audited as
/// a read) instead.
pub async fn start(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    viewer: &Viewer,
    grant: &MessagingGrant,
    new: NewThread,
    idempotency: Option<&Idempotency>,
) -> AppResult<(Thread, Sent)> {
    if !grant.writable() {
        return Err(AppError::Forbidden(crate::access::BREAK_GLASS_READ_ONLY));
    }
    if let Some(idem) = idempotency
        && let Some(prior) = idem.replay(tx, viewer.user_id).await?
    {
        let row = message_threads::Entity::find_by_id(prior)
            .filter(message_threads::Column::PatientId.eq(grant.patient_id()))
            .one(tx.conn())
            .await?
            .ok_or(AppError::Conflict(
                "this idempotency key was already used for another patient; use a new key",
            ))?;
        let first = messages::Entity::find()
            .filter(messages::Column::ThreadId.eq(prior))
            .order_by_asc(messages::Column::Seq)
            .one(tx.conn())
            .await?
            .ok_or_else(|| AppError::internal_msg("thread without its first message"))?;
        let attachments = attachments_of(tx.conn(), &[first.id]).await?;
        tx.audit(
            AuditEvent::by(viewer, "message.read", "message_thread")
                .scope(grant)
                .resource(prior.to_string())
                .detail(serde_json::json!({ "idempotentReplay": true })),
        );
        let first = open_message(
            keys,
            first.clone(),
            attachments.get(&first.id).cloned().unwrap_or_default(),
        )?;
        let first = Sent {
            message: first,
            to: None,
        };
        return Ok((open_thread(keys, row)?, first));
    }
    let now = Utc::now();
    let id = Uuid::new_v4();
    let row = message_threads::Model {
        id,
        patient_id: grant.patient_id(),
        subject_enc: seal_subject(keys, &id, &new.subject)?,
        created_by: viewer.user_id,
        created_at: now,
        last_message_at: now,
    };
    message_threads::Entity::insert(message_threads::ActiveModel::from(row.clone()))
        .exec_without_returning(tx.conn())
        .await?;
    let mut people = vec![(viewer.user_id, viewer.role)];
    for p in new.others {
        if !people.iter().any(|(u, _)| *u == p.0) {
            people.push(p);
        }
    }
    thread_participants::Entity::insert_many(people.iter().map(|(user, role)| {
        thread_participants::ActiveModel {
            thread_id: Set(id),
            user_id: Set(*user),
            role: Set(role.as_str().into()),
            joined_at: Set(now),
            last_read_seq: Set(0),
            archived_at: Set(None),
        }
    }))
    .exec_without_returning(tx.conn())
    .await?;
    if let Some(idem) = idempotency {
        idem.remember(tx, viewer.user_id, id).await?;
    }
    tx.audit(
        AuditEvent::by(viewer, "thread.create", "message_thread")
            .scope(grant)
            .resource(id.to_string())
            .detail(serde_json::json!({
                "participants": people.iter().map(|(u, _)| u.to_string()).collect::<Vec<_>>(),
            })),
    );
    let message = post_many(
        tx,
        keys,
        now,
        vec![Outgoing {
            viewer,
            grant,
            thread_id: id,
            body: new.body,
            attachments: new.attachments,
        }],
    )
    .await?
    .pop()
    .ok_or_else(|| AppError::internal_msg("a thread without its first message"))?;
    Ok((
        Thread {
            row,
            subject: new.subject,
        },
        message,
    ))
}

/// The highest message `seq` so far (0 before the first message).
pub async fn latest_seq(db: &impl ConnectionTrait) -> AppResult<i64> {
    let max: Option<i64> = messages::Entity::find()
        .select_only()
        .column_as(messages::Column::Seq.max(), "m")
        .into_tuple::<Option<i64>>()
        .one(db)
        .await?
        .flatten();
    Ok(max.unwrap_or(0))
}

/// A message to post in a thread whose grant the caller checked.
pub(crate) struct Outgoing<'a, G> {
    pub viewer: &'a Viewer,
    pub grant: &'a G,
    pub thread_id: Uuid,
    pub body: String,
    pub attachments: Vec<Uuid>,
}

/// Insert messages (in order, `seq` following on from the latest: serialised by the write
/// transaction, see the module's notes), move their threads' activity, bring each thread
/// back into every participant's inbox, and mark it read for its sender (an ADMIN writing
/// joins the thread). The same statements for one message or many.
async fn post_many<G: PatientGrant>(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    now: DateTime<Utc>,
    items: Vec<Outgoing<'_, G>>,
) -> AppResult<Vec<Sent>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let first = latest_seq(tx.conn()).await? + 1;
    let mut sent = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let id = Uuid::new_v4();
        sent.push(messages::Model {
            id,
            seq: first + n as i64,
            thread_id: item.thread_id,
            patient_id: item.grant.patient_id(),
            sender_id: item.viewer.user_id,
            sender_role: item.viewer.role.as_str().into(),
            body_enc: seal_body(keys, &id, &item.body)?,
            sent_at: now,
            retracted_at: None,
        });
    }
    messages::Entity::insert_many(sent.iter().cloned().map(messages::ActiveModel::from))
        .exec_without_returning(tx.conn())
        .await?;
    let attached: Vec<message_attachments::ActiveModel> = items
        .iter()
        .zip(&sent)
        .flat_map(|(item, row)| {
            item.attachments.iter().enumerate().map(|(i, record)| {
                message_attachments::ActiveModel {
                    message_id: Set(row.id),
                    record_id: Set(*record),
                    position: Set(i as i32),
                }
            })
        })
        .collect();
    if !attached.is_empty() {
        message_attachments::Entity::insert_many(attached)
            .exec_without_returning(tx.conn())
            .await?;
    }
    let mut threads: Vec<Uuid> = items.iter().map(|i| i.thread_id).collect();
    threads.sort_unstable();
    threads.dedup();
    message_threads::Entity::update_many()
        .col_expr(message_threads::Column::LastMessageAt, Expr::value(now))
        .filter(message_threads::Column::Id.is_in(threads.clone()))
        .exec(tx.conn())
        .await?;
    // Back in every participant's inbox; who they are is whom the events go to.
    let unarchive = thread_participants::Entity::update_many()
        .col_expr(
            thread_participants::Column::ArchivedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(thread_participants::Column::ThreadId.is_in(threads.clone()));
    let people: Vec<(Uuid, Uuid)> = if tx.conn().support_returning() {
        unarchive
            .exec_with_returning(tx.conn())
            .await?
            .into_iter()
            .map(|p| (p.thread_id, p.user_id))
            .collect()
    } else {
        // sea-orm's SQLite driver does not use RETURNING: read them back.
        unarchive.exec(tx.conn()).await?;
        thread_participants::Entity::find()
            .filter(thread_participants::Column::ThreadId.is_in(threads))
            .select_only()
            .column(thread_participants::Column::ThreadId)
            .column(thread_participants::Column::UserId)
            .into_tuple()
            .all(tx.conn())
            .await?
    };
    let mut to: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (thread, user) in people {
        to.entry(thread).or_default().push(user);
    }
    // Each sender has read what they wrote (up to their last message of the batch).
    let mut senders: Vec<(Uuid, Uuid, &str, i64)> = Vec::new();
    for (item, row) in items.iter().zip(&sent) {
        let who = (row.thread_id, row.sender_id);
        match senders.iter_mut().find(|s| (s.0, s.1) == who) {
            Some(s) => s.3 = s.3.max(row.seq),
            None => senders.push((who.0, who.1, item.viewer.role.as_str(), row.seq)),
        }
    }
    thread_participants::Entity::insert_many(senders.iter().map(|(thread, user, role, seq)| {
        thread_participants::ActiveModel {
            thread_id: Set(*thread),
            user_id: Set(*user),
            role: Set((*role).into()),
            joined_at: Set(now),
            last_read_seq: Set(*seq),
            archived_at: Set(None),
        }
    }))
    .on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            thread_participants::Column::ThreadId,
            thread_participants::Column::UserId,
        ])
        .update_column(thread_participants::Column::LastReadSeq)
        .to_owned(),
    )
    .exec_without_returning(tx.conn())
    .await?;
    let mut out = Vec::with_capacity(items.len());
    for (item, row) in items.into_iter().zip(sent) {
        tx.audit(
            AuditEvent::by(item.viewer, "message.send", "message")
                .scope(item.grant)
                .resource(row.id.to_string())
                .detail(serde_json::json!({
                    "threadId": row.thread_id.to_string(),
                    "attachments": item.attachments.iter().map(Uuid::to_string).collect::<Vec<_>>(),
                })),
        );
        let mut users = to.get(&row.thread_id).cloned().unwrap_or_default();
        if !users.contains(&row.sender_id) {
            users.push(row.sender_id);
        }
        out.push(Sent {
            message: Message {
                row,
                body: Some(item.body),
                attachments: item.attachments,
            },
            to: Some(users),
        });
    }
    Ok(out)
}

/// A message someone asked to send in a thread (`access::messaging` granted the thread).
pub struct SendJob {
    pub viewer: Viewer,
    pub grant: ThreadGrant,
    pub body: String,
    pub attachments: Vec<Uuid>,
    pub idempotency: Option<Idempotency>,
}

impl std::fmt::Debug for SendJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendJob")
            .field("thread", &self.grant.thread_id())
            .field("body", &"[redacted]")
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// What becomes of one job of a batch.
enum Plan {
    Refused(AppError),
    /// An earlier request with the same key sent this message.
    Replay(Uuid),
    /// A new message: the `n`th of the batch's posts.
    Post(usize),
    /// The same request as an earlier job of this batch (the same key): its post.
    Repeat(usize),
}

/// Send messages, one per job, in one transaction: one answer per job, in order. A job
/// whose idempotency key was already used for the same request gets the message that
/// request sent (audited as a read) instead; a refusal is that job's answer alone. An
/// `Err` of the whole is a statement that failed: nothing of the batch was written.
pub async fn send_many(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    jobs: &[SendJob],
) -> AppResult<Vec<AppResult<Sent>>> {
    let asked: Vec<_> = jobs
        .iter()
        .map(|j| j.idempotency.as_ref().map(|i| (j.viewer.user_id, i)))
        .collect();
    let priors = Idempotency::replay_many(tx, &asked).await?;
    let mut plans: Vec<Plan> = Vec::with_capacity(jobs.len());
    let mut posts = 0;
    for ((i, job), prior) in jobs.iter().enumerate().zip(priors) {
        let earlier = job.idempotency.as_ref().and_then(|idem| {
            jobs[..i].iter().enumerate().find_map(|(e, other)| {
                let theirs = other.idempotency.as_ref()?;
                (other.viewer.user_id == job.viewer.user_id && theirs.same_key(idem))
                    .then_some((e, theirs.repeats(idem)))
            })
        });
        let plan = if !job.grant.writable() {
            Plan::Refused(AppError::Forbidden(crate::access::BREAK_GLASS_READ_ONLY))
        } else {
            match (prior, earlier) {
                (Err(e), _) => Plan::Refused(e),
                (Ok(Some(prior)), _) => Plan::Replay(prior),
                (Ok(None), Some((e, true))) => match plans[e] {
                    Plan::Post(n) => Plan::Repeat(n),
                    _ => Plan::Refused(AppError::Conflict(crate::idempotency::REUSED)),
                },
                (Ok(None), Some((_, false))) => {
                    Plan::Refused(AppError::Conflict(crate::idempotency::REUSED))
                }
                (Ok(None), None) => {
                    posts += 1;
                    Plan::Post(posts - 1)
                }
            }
        };
        plans.push(plan);
    }
    let outgoing: Vec<Outgoing<'_, ThreadGrant>> = jobs
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Post(_)))
        .map(|(j, _)| Outgoing {
            viewer: &j.viewer,
            grant: &j.grant,
            thread_id: j.grant.thread_id(),
            body: j.body.clone(),
            attachments: j.attachments.clone(),
        })
        .collect();
    let posted = post_many(tx, keys, Utc::now(), outgoing).await?;
    let created: Vec<(Uuid, &Idempotency, Uuid)> = jobs
        .iter()
        .zip(&plans)
        .filter_map(|(j, p)| match (p, &j.idempotency) {
            (Plan::Post(n), Some(idem)) => {
                Some((j.viewer.user_id, idem, posted[*n].message.row.id))
            }
            _ => None,
        })
        .collect();
    Idempotency::remember_many(tx, &created).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for (job, plan) in jobs.iter().zip(plans) {
        out.push(match plan {
            Plan::Refused(e) => Err(e),
            Plan::Post(n) => Ok(posted[n].clone()),
            Plan::Repeat(n) => {
                replayed_read(tx, job, posted[n].message.row.id);
                Ok(Sent {
                    message: posted[n].message.clone(),
                    to: None,
                })
            }
            Plan::Replay(prior) => replay(tx, keys, job, prior)
                .await?
                .map(|message| Sent { message, to: None }),
        });
    }
    Ok(out)
}

/// The message an earlier request with the job's key sent, audited as a read; CONFLICT
/// when that key sent one in another thread.
async fn replay(
    tx: &mut WriteTxn,
    keys: &KeyRing,
    job: &SendJob,
    prior: Uuid,
) -> AppResult<AppResult<Message>> {
    let Some(row) = message_in(tx.conn(), &job.grant, prior).await? else {
        return Ok(Err(AppError::Conflict(
            "this idempotency key was already used in another thread; use a new key",
        )));
    };
    replayed_read(tx, job, prior);
    let attachments = attachments_of(tx.conn(), &[prior]).await?;
    Ok(open_message(
        keys,
        row,
        attachments.get(&prior).cloned().unwrap_or_default(),
    ))
}

fn replayed_read(tx: &mut WriteTxn, job: &SendJob, message: Uuid) {
    tx.audit(
        AuditEvent::by(&job.viewer, "message.read", "message")
            .scope(&job.grant)
            .resource(message.to_string())
            .detail(serde_json::json!({ "idempotentReplay": true })),
    );
}

/// A message of the grant's thread, by id.
async fn message_in(
    db: &impl ConnectionTrait,
    grant: &ThreadGrant,
    id: Uuid,
) -> AppResult<Option<messages::Model>> {
    Ok(messages::Entity::find_by_id(id)
        .filter(messages::Column::ThreadId.eq(grant.thread_id()))
        .one(db)
        .await?)
}

/// Mark the thread read up to message `up_to` (never backwards). Returns the new mark.
pub async fn mark_read(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    grant: &ThreadGrant,
    up_to: Uuid,
) -> AppResult<i64> {
    let Some(m) = message_in(tx.conn(), grant, up_to).await? else {
        return Err(AppError::validation(
            "upTo",
            "is not a message of this thread",
        ));
    };
    upsert_participant(tx, viewer, grant).await?;
    thread_participants::Entity::update_many()
        .col_expr(thread_participants::Column::LastReadSeq, Expr::value(m.seq))
        .filter(thread_participants::Column::ThreadId.eq(grant.thread_id()))
        .filter(thread_participants::Column::UserId.eq(viewer.user_id))
        .filter(thread_participants::Column::LastReadSeq.lt(m.seq))
        .exec(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "thread.mark_read", "message_thread")
            .scope(grant)
            .resource(grant.thread_id().to_string())
            .detail(serde_json::json!({ "upTo": up_to.to_string() })),
    );
    let mark: i64 = thread_participants::Entity::find_by_id((grant.thread_id(), viewer.user_id))
        .select_only()
        .column(thread_participants::Column::LastReadSeq)
        .into_tuple()
        .one(tx.conn())
        .await?
        .unwrap_or(m.seq);
    Ok(mark)
}

/// The patient's own participant row exists even for a thread started before they had an
/// account; others take part only by being added.
async fn upsert_participant(tx: &WriteTxn, viewer: &Viewer, grant: &ThreadGrant) -> AppResult<()> {
    if !grant.participant() {
        return Err(AppError::Forbidden(
            "only the thread's participants keep a read state and archive it",
        ));
    }
    let exists = thread_participants::Entity::find_by_id((grant.thread_id(), viewer.user_id))
        .count(tx.conn())
        .await?
        > 0;
    if !exists {
        thread_participants::Entity::insert(thread_participants::ActiveModel {
            thread_id: Set(grant.thread_id()),
            user_id: Set(viewer.user_id),
            role: Set(viewer.role.as_str().into()),
            joined_at: Set(Utc::now()),
            last_read_seq: Set(0),
            archived_at: Set(None),
        })
        .exec_without_returning(tx.conn())
        .await?;
    }
    Ok(())
}

/// Archive the thread for the viewer (it leaves their inbox until a new message arrives).
pub async fn archive(tx: &mut WriteTxn, viewer: &Viewer, grant: &ThreadGrant) -> AppResult<()> {
    upsert_participant(tx, viewer, grant).await?;
    thread_participants::Entity::update_many()
        .col_expr(
            thread_participants::Column::ArchivedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(thread_participants::Column::ThreadId.eq(grant.thread_id()))
        .filter(thread_participants::Column::UserId.eq(viewer.user_id))
        .exec(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "thread.archive", "message_thread")
            .scope(grant)
            .resource(grant.thread_id().to_string()),
    );
    Ok(())
}

/// Retract a message: only its sender, within [`RETRACT_WINDOW`] of sending. The body stays
/// sealed in the database (the record of what was sent) and is never shown again.
pub async fn retract(
    tx: &mut WriteTxn,
    viewer: &Viewer,
    grant: &ThreadGrant,
    id: Uuid,
) -> AppResult<Message> {
    let Some(row) = message_in(tx.conn(), grant, id).await? else {
        return Err(AppError::NotFound);
    };
    if row.sender_id != viewer.user_id {
        return Err(AppError::Forbidden("only its sender may retract a message"));
    }
    if row.retracted_at.is_some() {
        return Err(AppError::Conflict("the message is already retracted"));
    }
    let now = Utc::now();
    if now - row.sent_at > RETRACT_WINDOW {
        return Err(AppError::Forbidden(
            "a message can be retracted only within 5 minutes of sending it",
        ));
    }
    messages::Entity::update_many()
        .col_expr(messages::Column::RetractedAt, Expr::value(Some(now)))
        .filter(messages::Column::Id.eq(id))
        .exec(tx.conn())
        .await?;
    tx.audit(
        AuditEvent::by(viewer, "message.retract", "message")
            .scope(grant)
            .resource(id.to_string()),
    );
    let attachments = attachments_of(tx.conn(), &[id]).await?;
    Ok(Message {
        row: messages::Model {
            retracted_at: Some(now),
            ..row
        },
        body: None,
        attachments: attachments.get(&id).cloned().unwrap_or_default(),
    })
}

// ---------------------------------------------------------------------------------------
// Reads

/// Attachments of these messages, in order.
async fn attachments_of(
    db: &impl ConnectionTrait,
    message_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<Uuid>>> {
    let rows: Vec<(Uuid, Uuid)> = message_attachments::Entity::find()
        .filter(message_attachments::Column::MessageId.is_in(message_ids.iter().copied()))
        .order_by_asc(message_attachments::Column::Position)
        .select_only()
        .column(message_attachments::Column::MessageId)
        .column(message_attachments::Column::RecordId)
        .into_tuple()
        .all(db)
        .await?;
    let mut out: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (m, r) in rows {
        out.entry(m).or_default().push(r);
    }
    Ok(out)
}

async fn open_all(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    rows: Vec<messages::Model>,
) -> AppResult<Vec<Message>> {
    let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
    let mut attachments = attachments_of(db, &ids).await?;
    rows.into_iter()
        .map(|m| {
            let a = attachments.remove(&m.id).unwrap_or_default();
            open_message(keys, m, a)
        })
        .collect()
}

/// Where a page of a thread's messages starts.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    /// The latest messages.
    Latest,
    /// Messages after this `seq`.
    After(i64),
    /// The latest messages before this `seq`.
    Before(i64),
}

/// A page of a thread's messages, oldest first, and whether more lie beyond it (after the
/// page for [`Window::After`], before it otherwise).
pub async fn page(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    grant: &ThreadGrant,
    window: Window,
    first: u64,
) -> AppResult<(Vec<Message>, bool)> {
    let mut q = messages::Entity::find().filter(messages::Column::ThreadId.eq(grant.thread_id()));
    q = match window {
        Window::After(s) => q
            .filter(messages::Column::Seq.gt(s))
            .order_by_asc(messages::Column::Seq),
        Window::Before(s) => q
            .filter(messages::Column::Seq.lt(s))
            .order_by_desc(messages::Column::Seq),
        Window::Latest => q.order_by_desc(messages::Column::Seq),
    };
    let rows = q.limit(first + 1).all(db).await?;
    let (mut rows, more) = keyset::take(rows, first);
    if !matches!(window, Window::After(_)) {
        rows.reverse();
    }
    Ok((open_all(db, keys, rows).await?, more))
}

/// One message by id and its thread's id (for `retractMessage`, which names the message).
pub async fn thread_of(db: &impl ConnectionTrait, message_id: Uuid) -> AppResult<Option<Uuid>> {
    Ok(messages::Entity::find_by_id(message_id)
        .select_only()
        .column(messages::Column::ThreadId)
        .into_tuple()
        .one(db)
        .await?)
}

/// Messages by id, opened (for live delivery: the caller checked the grant of each one's
/// thread).
pub async fn by_ids(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    ids: &[Uuid],
) -> AppResult<Vec<Message>> {
    let rows = messages::Entity::find()
        .filter(messages::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(messages::Column::Seq)
        .all(db)
        .await?;
    open_all(db, keys, rows).await
}

/// Messages of these threads after `seq`, oldest first, at most `limit` (replay).
pub async fn after_in(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    thread_ids: &[Uuid],
    seq: i64,
    limit: u64,
) -> AppResult<Vec<Message>> {
    let rows = messages::Entity::find()
        .filter(messages::Column::ThreadId.is_in(thread_ids.iter().copied()))
        .filter(messages::Column::Seq.gt(seq))
        .order_by_asc(messages::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    open_all(db, keys, rows).await
}

/// The user ids taking part in a thread.
pub async fn participant_users(db: &impl ConnectionTrait, thread: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(thread_participants::Entity::find()
        .filter(thread_participants::Column::ThreadId.eq(thread))
        .select_only()
        .column(thread_participants::Column::UserId)
        .into_tuple()
        .all(db)
        .await?)
}

/// The participants of these threads.
pub async fn participants(
    db: &impl ConnectionTrait,
    thread_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<Participant>>> {
    #[derive(FromQueryResult)]
    struct Row {
        thread_id: Uuid,
        user_id: Uuid,
        role: String,
        patient_id: Option<Uuid>,
        provider_id: Option<Uuid>,
    }
    let q = Query::select()
        .column((
            thread_participants::Entity,
            thread_participants::Column::ThreadId,
        ))
        .column((
            thread_participants::Entity,
            thread_participants::Column::UserId,
        ))
        .column((
            thread_participants::Entity,
            thread_participants::Column::Role,
        ))
        .column((entity::users::Entity, entity::users::Column::PatientId))
        .column((entity::users::Entity, entity::users::Column::ProviderId))
        .from(thread_participants::Entity)
        .inner_join(
            entity::users::Entity,
            Expr::col((entity::users::Entity, entity::users::Column::Id)).equals((
                thread_participants::Entity,
                thread_participants::Column::UserId,
            )),
        )
        .and_where(
            Expr::col((
                thread_participants::Entity,
                thread_participants::Column::ThreadId,
            ))
            .is_in(thread_ids.iter().copied()),
        )
        .order_by(
            (
                thread_participants::Entity,
                thread_participants::Column::JoinedAt,
            ),
            sea_orm::Order::Asc,
        )
        .to_owned();
    let stmt = db.get_database_backend().build(&q);
    let rows = Row::find_by_statement(stmt).all(db).await?;
    let mut out: HashMap<Uuid, Vec<Participant>> = HashMap::new();
    for r in rows {
        let Some(role) = Role::parse(&r.role) else {
            continue;
        };
        out.entry(r.thread_id).or_default().push(Participant {
            user_id: r.user_id,
            role,
            patient_id: r.patient_id,
            provider_id: r.provider_id,
        });
    }
    // The patient first, then everyone else in the order they joined (the sort is stable).
    for list in out.values_mut() {
        list.sort_by_key(|p| p.role != Role::Patient);
    }
    Ok(out)
}

/// The participant row of `user` in the thread in scope (`message_threads`).
fn participant_row(user: Uuid) -> sea_orm::sea_query::SelectStatement {
    let p = Alias::new("p");
    Query::select()
        .from_as(thread_participants::Entity, p.clone())
        .and_where(
            Expr::col((p.clone(), thread_participants::Column::ThreadId))
                .equals((message_threads::Entity, message_threads::Column::Id)),
        )
        .and_where(Expr::col((p, thread_participants::Column::UserId)).eq(user))
        .to_owned()
}

/// Not archived by `user` (a thread without their row, a patient's, is not archived).
fn not_archived(user: Uuid) -> SimpleExpr {
    let archived = participant_row(user)
        .expr(Expr::val(1))
        .and_where(
            Expr::col((Alias::new("p"), thread_participants::Column::ArchivedAt)).is_not_null(),
        )
        .to_owned();
    Expr::exists(archived).not()
}

/// How many messages of the thread in scope `user` has not read: others', not retracted,
/// past `user`'s read mark (0 without a participant row).
fn unread_of(user: Uuid) -> SimpleExpr {
    let m = Alias::new("m");
    let mark = participant_row(user)
        .column((Alias::new("p"), thread_participants::Column::LastReadSeq))
        .to_owned();
    let mark = Func::coalesce([
        SimpleExpr::SubQuery(None, Box::new(mark.into_sub_query_statement())),
        Expr::val(0i64).into(),
    ]);
    let count = Query::select()
        .expr(Func::count(Expr::col(Asterisk)))
        .from_as(messages::Entity, m.clone())
        .and_where(
            Expr::col((m.clone(), messages::Column::ThreadId))
                .equals((message_threads::Entity, message_threads::Column::Id)),
        )
        .and_where(Expr::col((m.clone(), messages::Column::RetractedAt)).is_null())
        .and_where(Expr::col((m.clone(), messages::Column::SenderId)).ne(user))
        .and_where(Expr::col((m, messages::Column::Seq)).gt(mark))
        .to_owned();
    SimpleExpr::SubQuery(None, Box::new(count.into_sub_query_statement()))
}

/// Filters of the inbox.
#[derive(Default, Debug)]
pub struct InboxFilter {
    pub unread_only: bool,
    /// Only this patient's threads (the caller holds a [`MessagingGrant`] for them).
    pub patient: Option<MessagingGrant>,
}

/// A position in the inbox: latest activity first, then id.
pub type Position = (DateTime<Utc>, Uuid);

pub struct InboxPage {
    pub threads: Vec<(Thread, i64)>,
    pub has_next: bool,
    pub total: Option<u64>,
}

/// The viewer's inbox: the threads `readable` selects (`access::messaging::readable_threads`)
/// or, for a patient grant that reads every thread (the patient, an ADMIN, break-glass),
/// all of that patient's; not archived by the viewer; latest activity first; each with the
/// viewer's unread count.
#[allow(clippy::too_many_arguments)]
pub async fn inbox(
    db: &impl ConnectionTrait,
    keys: &KeyRing,
    viewer: &Viewer,
    readable: Condition,
    filter: &InboxFilter,
    first: u64,
    after: Option<Position>,
    want_total: bool,
) -> AppResult<InboxPage> {
    let mut cond = Condition::all().add(not_archived(viewer.user_id));
    match &filter.patient {
        Some(g) if g.every_thread() => {
            cond = cond.add(message_threads::Column::PatientId.eq(g.patient_id()));
        }
        Some(g) => {
            cond = cond
                .add(readable)
                .add(message_threads::Column::PatientId.eq(g.patient_id()));
        }
        None => cond = cond.add(readable),
    }
    if filter.unread_only {
        cond = cond.add(Expr::expr(unread_of(viewer.user_id)).gt(0));
    }
    let total = if want_total {
        Some(
            message_threads::Entity::find()
                .filter(cond.clone())
                .count(db)
                .await?,
        )
    } else {
        None
    };
    let mut q = message_threads::Entity::find().filter(cond);
    if let Some((at, id)) = after {
        q = q.filter(keyset::after(
            message_threads::Column::LastMessageAt,
            message_threads::Column::Id,
            at,
            id,
            true,
        ));
    }
    let rows: Vec<(message_threads::Model, i64)> = q
        .order_by_desc(message_threads::Column::LastMessageAt)
        .order_by_desc(message_threads::Column::Id)
        .limit(first + 1)
        .column_as(unread_of(viewer.user_id), "unread")
        .into_model::<ThreadWithUnread>()
        .all(db)
        .await?
        .into_iter()
        .map(|r| (r.thread(), r.unread))
        .collect();
    let (rows, has_next) = keyset::take(rows, first);
    let threads = rows
        .into_iter()
        .map(|(row, unread)| Ok((open_thread(keys, row)?, unread)))
        .collect::<AppResult<Vec<_>>>()?;
    Ok(InboxPage {
        threads,
        has_next,
        total,
    })
}

#[derive(FromQueryResult)]
struct ThreadWithUnread {
    id: Uuid,
    patient_id: Uuid,
    subject_enc: Vec<u8>,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    last_message_at: DateTime<Utc>,
    unread: i64,
}

impl ThreadWithUnread {
    fn thread(&self) -> message_threads::Model {
        message_threads::Model {
            id: self.id,
            patient_id: self.patient_id,
            subject_enc: self.subject_enc.clone(),
            created_by: self.created_by,
            created_at: self.created_at,
            last_message_at: self.last_message_at,
        }
    }
}

/// The viewer's unread messages across the threads `readable` selects, archived ones aside.
pub async fn unread_total(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    readable: Condition,
) -> AppResult<i64> {
    let q = Query::select()
        .expr_as(
            // SUM is NUMERIC on PostgreSQL: cast back to a 64-bit integer.
            Func::cast_as(
                Func::coalesce([
                    Func::sum(unread_of(viewer.user_id)).into(),
                    Expr::val(0i64).into(),
                ]),
                Alias::new("BIGINT"),
            ),
            Alias::new("n"),
        )
        .from(message_threads::Entity)
        .cond_where(readable)
        .and_where(not_archived(viewer.user_id))
        .to_owned();
    let stmt = db.get_database_backend().build(&q);
    let row = db
        .query_one(stmt)
        .await?
        .ok_or_else(|| AppError::internal_msg("unread count returned no row"))?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// The viewer's unread count in one thread (0 for a reader who takes no part).
pub async fn unread_in(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    thread_id: Uuid,
) -> AppResult<i64> {
    let n: Option<i64> = message_threads::Entity::find_by_id(thread_id)
        .select_only()
        .column_as(unread_of(viewer.user_id), "n")
        .into_tuple()
        .one(db)
        .await?;
    Ok(n.unwrap_or(0))
}

/// Whether the viewer archived the thread.
pub async fn archived(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    thread_id: Uuid,
) -> AppResult<bool> {
    Ok(
        thread_participants::Entity::find_by_id((thread_id, viewer.user_id))
            .filter(thread_participants::Column::ArchivedAt.is_not_null())
            .count(db)
            .await?
            > 0,
    )
}
