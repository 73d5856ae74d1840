//! Secure messaging over GraphQL: the inbox, threads and their messages, and the mutations
//! that start, write, read, archive and retract. Every object here exists only under an
//! `access::messaging` grant; every read is audited (ids only), every write in its
//! transaction.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::service::{self, InboxFilter, Window};
use crate::access::Role;
use crate::access::messaging::{self as grants, ThreadGrant};
use crate::audit::{AuditEvent, WriteTxn};
use crate::error::{AppError, AppResult};
use crate::graphql::context::{ContextExt, audit_read, audit_reads};
use crate::graphql::relay::{
    self, Connection, Edge, PageInfo, decode_cursor, encode_cursor, parse_id,
};
use crate::idempotency::Idempotency;
use crate::identity::Viewer;
use crate::input::{bounded_text, parse_clinical_text};
use crate::records::graphql::ClinicalDocument;

/// Someone taking part in a thread.
#[derive(SimpleObject, Clone)]
pub struct Participant {
    /// The user's id.
    pub id: ID,
    /// A provider's directory name; "Patient" and "Administrator" for the others.
    pub display_name: String,
    pub role: Role,
}

/// A clinical document attached to a message. `document` is null and `withheld` true for a
/// reader who may not read it (for want of DOCUMENTS consent, for example).
pub struct MessageAttachment {
    record_id: Uuid,
    /// Who reads it: the request's viewer, or a live subscriber as of the event.
    viewer: Option<Arc<Viewer>>,
}

#[Object]
impl MessageAttachment {
    async fn record_id(&self) -> ID {
        ID(self.record_id.to_string())
    }
    async fn withheld(&self, ctx: &Context<'_>) -> Result<bool> {
        Ok(self.document_for(ctx).await?.is_none())
    }
    async fn document(&self, ctx: &Context<'_>) -> Result<Option<ClinicalDocument>> {
        Ok(self.document_for(ctx).await?)
    }
}

impl MessageAttachment {
    async fn document_for(&self, ctx: &Context<'_>) -> AppResult<Option<ClinicalDocument>> {
        let viewer = match &self.viewer {
            Some(v) => v,
            None => ctx.viewer()?,
        };
        crate::records::graphql::attached_document(ctx, viewer, self.record_id).await
    }
}

/// One message. `body` is null once its sender retracted it.
pub struct Message {
    m: service::Message,
    grant: Arc<ThreadGrant>,
    /// Set for a live delivery: the subscriber as of the event (see `super::live`).
    viewer: Option<Arc<Viewer>>,
}

impl Message {
    fn new(m: service::Message, grant: Arc<ThreadGrant>) -> Self {
        Message {
            m,
            grant,
            viewer: None,
        }
    }

    /// A message delivered live to `viewer`, under the grant decided for this event.
    pub fn live(m: service::Message, grant: Arc<ThreadGrant>, viewer: Arc<Viewer>) -> Self {
        Message {
            m,
            grant,
            viewer: Some(viewer),
        }
    }
}

#[Object]
impl Message {
    async fn id(&self) -> ID {
        ID(self.m.row.id.to_string())
    }
    async fn thread_id(&self) -> ID {
        ID(self.m.row.thread_id.to_string())
    }
    /// Null once retracted.
    async fn body(&self) -> Option<&str> {
        self.m.body.as_deref()
    }
    async fn sent_at(&self) -> DateTime<Utc> {
        self.m.row.sent_at
    }
    async fn retracted(&self) -> bool {
        self.m.row.retracted_at.is_some()
    }
    /// Opaque; pass it as `after` (here, to `messages`, or to `messageReceived` to replay
    /// what followed it) or `before`.
    async fn cursor(&self) -> String {
        message_cursor(self.m.row.seq)
    }
    async fn sender(&self, ctx: &Context<'_>) -> Result<Participant> {
        let all = participants_of(ctx, &self.grant).await?;
        Ok(all
            .into_iter()
            .find(|p| p.id.as_str() == self.m.row.sender_id.to_string())
            .ok_or_else(|| AppError::internal_msg("a message's sender is not a participant"))?)
    }
    async fn attachments(&self) -> Vec<MessageAttachment> {
        self.m
            .attachments
            .iter()
            .map(|&record_id| MessageAttachment {
                record_id,
                viewer: self.viewer.clone(),
            })
            .collect()
    }
}

impl relay::Node for Message {
    const NAME: &'static str = "Message";
}

/// A conversation about one patient.
pub struct MessageThread {
    thread: service::Thread,
    grant: Arc<ThreadGrant>,
    /// The viewer's unread count, when the inbox already counted it.
    unread: Option<i64>,
}

#[Object]
impl MessageThread {
    async fn id(&self) -> ID {
        ID(self.thread.row.id.to_string())
    }
    async fn subject(&self) -> &str {
        &self.thread.subject
    }
    /// The patient the thread is about.
    async fn patient_id(&self) -> ID {
        ID(self.thread.row.patient_id.to_string())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.thread.row.created_at
    }
    /// When its latest message was sent.
    async fn last_message_at(&self) -> DateTime<Utc> {
        self.thread.row.last_message_at
    }
    async fn participants(&self, ctx: &Context<'_>) -> Result<Vec<Participant>> {
        Ok(participants_of(ctx, &self.grant).await?)
    }
    /// Messages you have not read (others', not retracted).
    async fn unread_count(&self, ctx: &Context<'_>) -> Result<i64> {
        if let Some(n) = self.unread {
            return Ok(n);
        }
        let state = ctx.state()?;
        Ok(service::unread_in(&state.db, ctx.viewer()?, self.thread.row.id).await?)
    }
    /// Whether you archived it (a new message brings it back).
    async fn archived(&self, ctx: &Context<'_>) -> Result<bool> {
        let state = ctx.state()?;
        Ok(service::archived(&state.db, ctx.viewer()?, self.thread.row.id).await?)
    }
    /// Up to `first` messages, oldest first: those after `after`; otherwise the latest
    /// ones (before `before`, when given). `pageInfo.hasNextPage` says more follow `after`,
    /// `hasPreviousPage` that older ones precede the page.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<Connection<Message>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let first = relay::page_size(first)?;
        let window = match (after, before) {
            (Some(_), Some(_)) => {
                return Err(AppError::validation("before", "cannot be combined with after").into());
            }
            (Some(a), None) => Window::After(decode_cursor(CURSOR, &a)?),
            (None, Some(b)) => Window::Before(decode_cursor(CURSOR, &b)?),
            (None, None) => Window::Latest,
        };
        let (list, more) =
            service::page(&state.db, &state.keys, &self.grant, window, first).await?;
        audit_read(ctx, list_read(viewer, &self.grant, &list)).await?;
        let edges: Vec<Edge<Message>> = list
            .into_iter()
            .map(|m| Edge {
                cursor: message_cursor(m.row.seq),
                node: Message::new(m, self.grant.clone()),
            })
            .collect();
        let (has_next, has_previous) = match window {
            Window::After(_) => (more, true),
            _ => (false, more),
        };
        Ok(Connection {
            page_info: PageInfo::new(edges.iter().map(|e| &e.cursor), has_next, has_previous),
            total_count: edges.len() as u64,
            edges,
        })
    }
}

impl relay::Node for MessageThread {
    const NAME: &'static str = "MessageThread";
}

/// Message cursors: `m1:<seq>`.
const CURSOR: &str = "m1";
/// Inbox cursors: `t1:<last activity micros>/<id>`.
const INBOX_CURSOR: &str = "t1";

pub fn message_cursor(seq: i64) -> String {
    encode_cursor(CURSOR, seq)
}

/// The `seq` a message cursor names, or VALIDATION.
pub fn cursor_seq(cursor: &str) -> AppResult<i64> {
    decode_cursor(CURSOR, cursor)
}

/// The audit row of the messages a reader was shown (ids only).
fn list_read(viewer: &Viewer, grant: &ThreadGrant, list: &[service::Message]) -> AuditEvent {
    let ids: Vec<String> = list.iter().map(|m| m.row.id.to_string()).collect();
    AuditEvent::by(viewer, "message.read", "message_thread")
        .scope(grant)
        .resource(grant.thread_id().to_string())
        .detail(serde_json::json!({ "count": ids.len(), "messages": ids }))
}

fn thread_read(viewer: &Viewer, grant: &ThreadGrant, via: &str) -> AuditEvent {
    AuditEvent::by(viewer, "thread.read", "message_thread")
        .scope(grant)
        .resource(grant.thread_id().to_string())
        .detail(serde_json::json!({ "via": via }))
}

// ---------------------------------------------------------------------------------------
// Participants, by thread grant

/// Each thread's participants, named: one query for every thread a response shows. Keyed
/// by the grant `access::messaging` gave for the thread, never by a bare id.
pub struct ParticipantsByThread {
    pub db: DatabaseConnection,
}

impl Loader<Arc<ThreadGrant>> for ParticipantsByThread {
    type Value = Vec<service::Participant>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        grants: &[Arc<ThreadGrant>],
    ) -> Result<HashMap<Arc<ThreadGrant>, Self::Value>, Self::Error> {
        let ids: Vec<Uuid> = grants.iter().map(|g| g.thread_id()).collect();
        let mut all = service::participants(&self.db, &ids)
            .await
            .map_err(Arc::new)?;
        Ok(grants
            .iter()
            .map(|g| (g.clone(), all.remove(&g.thread_id()).unwrap_or_default()))
            .collect())
    }
}

pub type Participants = DataLoader<ParticipantsByThread>;

async fn participants_of(
    ctx: &Context<'_>,
    grant: &Arc<ThreadGrant>,
) -> AppResult<Vec<Participant>> {
    let loader = ctx
        .data::<Participants>()
        .map_err(|_| AppError::internal_msg("participants loader missing"))?;
    let rows = loader
        .load_one(grant.clone())
        .await
        .map_err(|e| {
            tracing::error!(error = ?e, "participants loader failed");
            AppError::internal_msg("loading a thread's participants failed")
        })?
        .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for p in rows {
        let display_name = match (p.role, p.provider_id) {
            (Role::Provider, Some(id)) => crate::appointments::graphql::load_provider(ctx, id)
                .await?
                .map(|m| m.display_name)
                .unwrap_or_else(|| "Provider".into()),
            (Role::Admin, _) => "Administrator".into(),
            _ => "Patient".into(),
        };
        out.push(Participant {
            id: ID(p.user_id.to_string()),
            display_name,
            role: p.role,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Queries

/// Filters of the inbox.
#[derive(InputObject, Default)]
pub struct InboxFilterInput {
    /// Only threads with messages you have not read.
    #[graphql(default = false)]
    pub unread_only: bool,
    /// Only this patient's threads (an ADMIN, the patient and break-glass see all of them;
    /// a care-team provider those they take part in).
    pub patient_id: Option<ID>,
}

#[derive(Default)]
pub struct MessagesQuery;

#[Object]
impl MessagesQuery {
    /// Your threads, latest activity first (archived ones aside), each with your unread
    /// count.
    #[graphql(
        complexity = "1 + first.clamp(1, crate::graphql::relay::MAX_FIRST) as usize * child_complexity"
    )]
    async fn inbox(
        &self,
        ctx: &Context<'_>,
        filter: Option<InboxFilterInput>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> Result<Connection<MessageThread>> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let first = relay::page_size(first)?;
        let after = after
            .as_deref()
            .map(|c| relay::decode_time_cursor(INBOX_CURSOR, c))
            .transpose()?;
        let f = filter.unwrap_or_default();
        let patient = match &f.patient_id {
            Some(id) => {
                let id = parse_id("patientId", id)?;
                Some(grants::messaging_grant(state, viewer, id, false, "thread.read").await?)
            }
            None => None,
        };
        let filter = InboxFilter {
            unread_only: f.unread_only,
            patient,
        };
        let readable = grants::readable_threads(viewer)?;
        let want_total = ctx.look_ahead().field("totalCount").exists();
        let page = service::inbox(
            &state.db,
            &state.keys,
            viewer,
            readable,
            &filter,
            first,
            after,
            want_total,
        )
        .await?;
        // Each row passed the decision in SQL; each gets its grant through the same call a
        // single read makes (so a row that changed meanwhile is left out, not shown).
        let mut edges = Vec::with_capacity(page.threads.len());
        let mut events = Vec::with_capacity(page.threads.len());
        for (thread, unread) in page.threads {
            let grant = match grants::thread_grant(
                state,
                viewer,
                thread.row.id,
                false,
                "thread.read",
            )
            .await
            {
                Ok((g, _)) => Arc::new(g),
                Err(AppError::NotFound | AppError::ConsentRequired { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            events.push(thread_read(viewer, &grant, "inbox"));
            edges.push(Edge {
                cursor: relay::encode_time_cursor(
                    INBOX_CURSOR,
                    thread.row.last_message_at,
                    thread.row.id,
                ),
                node: MessageThread {
                    thread,
                    grant,
                    unread: Some(unread),
                },
            });
        }
        audit_reads(ctx, events).await?;
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

    /// One thread. NOT_FOUND both when it does not exist and when you may not read it.
    async fn thread(&self, ctx: &Context<'_>, id: ID) -> Result<MessageThread> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let (grant, row) = grants::thread_grant(state, viewer, id, false, "thread.read").await?;
        audit_read(ctx, thread_read(viewer, &grant, "thread")).await?;
        Ok(MessageThread {
            thread: service::open_thread(&state.keys, row)?,
            grant: Arc::new(grant),
            unread: None,
        })
    }
}

/// The viewer's unread messages across their inbox (`Me.unreadCount`).
pub async fn unread_count(ctx: &Context<'_>) -> AppResult<i64> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    if viewer.role == Role::Researcher {
        return Ok(0);
    }
    service::unread_total(&state.db, viewer, grants::readable_threads(viewer)?).await
}

// ---------------------------------------------------------------------------------------
// Mutations

fn idempotency(
    ctx: &Context<'_>,
    key: Option<&str>,
    operation: &'static str,
    request: impl FnOnce() -> String,
) -> AppResult<Option<Idempotency>> {
    let state = ctx.state()?;
    key.map(|k| {
        let k = bounded_text("idempotencyKey", k, 200)?;
        Ok(Idempotency::new(&state.keys, &k, operation, &request()))
    })
    .transpose()
}

/// The attachments named, checked: each a clinical document of the patient that the sender
/// may read (VALIDATION otherwise, without saying which failed how).
async fn attachments(
    ctx: &Context<'_>,
    patient_id: Uuid,
    ids: Option<Vec<ID>>,
) -> AppResult<Vec<Uuid>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let ids = ids.unwrap_or_default();
    if ids.len() > service::ATTACHMENTS_MAX {
        return Err(AppError::validation(
            "attachmentIds",
            "names more than 10 documents",
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in &ids {
        let id = parse_id("attachmentIds", id)?;
        if out.contains(&id) {
            continue;
        }
        if !crate::records::graphql::attachable(state, viewer, patient_id, id).await? {
            return Err(AppError::validation(
                "attachmentIds",
                "must name clinical documents of this patient that you may read",
            ));
        }
        out.push(id);
    }
    Ok(out)
}

fn parse_body(raw: &str) -> AppResult<String> {
    parse_clinical_text("body", raw, service::BODY_MAX)
}

#[derive(Default)]
pub struct MessagesMutation;

#[Object]
impl MessagesMutation {
    /// Start a thread about a patient with its first message. A patient's thread without
    /// `providerIds` goes to every care-team provider holding their MESSAGES consent; a
    /// provider who starts one takes part. Every provider named must be on the care team
    /// and hold that consent.
    #[allow(clippy::too_many_arguments)]
    async fn start_thread(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        subject: String,
        body: String,
        provider_ids: Option<Vec<ID>>,
        attachment_ids: Option<Vec<ID>>,
        idempotency_key: Option<String>,
    ) -> Result<MessageThread> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let patient_id = parse_id("patientId", &patient_id)?;
        let subject = bounded_text("subject", &subject, service::SUBJECT_MAX)?;
        let body = parse_body(&body)?;
        let named = provider_ids
            .map(|ids| {
                ids.iter()
                    .map(|id| parse_id("providerIds", id))
                    .collect::<AppResult<Vec<_>>>()
            })
            .transpose()?;
        let action = "thread.create";
        let grant = grants::messaging_grant(state, viewer, patient_id, true, action).await?;
        let providers = grants::recipients(state, viewer, &grant, named.as_deref(), action).await?;
        let attachments = attachments(ctx, patient_id, attachment_ids).await?;
        let idem = idempotency(ctx, idempotency_key.as_deref(), "startThread", || {
            format!("{patient_id}|{subject}|{body}|{named:?}|{attachments:?}")
        })?;
        let others = grants::participant_users(state, patient_id, &providers).await?;
        let mut tx = WriteTxn::begin_in(&state.db, service::LANE).await?;
        let (thread, first) = service::start(
            &mut tx,
            &state.keys,
            viewer,
            &grant,
            service::NewThread {
                subject,
                body,
                attachments,
                others,
            },
            idem.as_ref(),
        )
        .await?;
        tx.commit().await?;
        super::live::message_sent(state, &first).await?;
        let (grant, _) =
            grants::thread_grant(state, viewer, thread.row.id, false, "thread.read").await?;
        Ok(MessageThread {
            thread,
            grant: Arc::new(grant),
            unread: None,
        })
    }

    /// Send a message in a thread you may write to (an ADMIN joins it by writing).
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        thread_id: ID,
        body: String,
        idempotency_key: Option<String>,
        attachment_ids: Option<Vec<ID>>,
    ) -> Result<Message> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let thread_id = parse_id("threadId", &thread_id)?;
        let body = parse_body(&body)?;
        let (grant, thread) =
            grants::thread_grant(state, viewer, thread_id, true, "message.send").await?;
        let attachments = attachments(ctx, thread.patient_id, attachment_ids).await?;
        let idem = idempotency(ctx, idempotency_key.as_deref(), "sendMessage", || {
            format!("{thread_id}|{body}|{attachments:?}")
        })?;
        let sent = state
            .service::<super::writer::Sends>()?
            .send(service::SendJob {
                viewer: viewer.clone(),
                grant: grant.clone(),
                body,
                attachments,
                idempotency: idem,
            })
            .await?;
        // The writer has announced it (a replay was announced when first sent).
        Ok(Message::new(sent.message, Arc::new(grant)))
    }

    /// Mark a thread read up to (and including) message `upTo`; never moves backwards.
    async fn mark_thread_read(
        &self,
        ctx: &Context<'_>,
        thread_id: ID,
        up_to: ID,
    ) -> Result<MessageThread> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let thread_id = parse_id("threadId", &thread_id)?;
        let up_to = parse_id("upTo", &up_to)?;
        let (grant, row) =
            grants::thread_grant(state, viewer, thread_id, false, "thread.mark_read").await?;
        let mut tx = WriteTxn::begin_in(&state.db, service::LANE).await?;
        service::mark_read(&mut tx, viewer, &grant, up_to).await?;
        tx.commit().await?;
        super::live::unread_changed(state, vec![viewer.user_id]).await;
        Ok(MessageThread {
            thread: service::open_thread(&state.keys, row)?,
            grant: Arc::new(grant),
            unread: None,
        })
    }

    /// Archive a thread for yourself: it leaves your inbox until a new message arrives.
    async fn archive_thread(&self, ctx: &Context<'_>, thread_id: ID) -> Result<MessageThread> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let thread_id = parse_id("threadId", &thread_id)?;
        let (grant, row) =
            grants::thread_grant(state, viewer, thread_id, false, "thread.archive").await?;
        let mut tx = WriteTxn::begin_in(&state.db, service::LANE).await?;
        service::archive(&mut tx, viewer, &grant).await?;
        tx.commit().await?;
        super::live::unread_changed(state, vec![viewer.user_id]).await;
        Ok(MessageThread {
            thread: service::open_thread(&state.keys, row)?,
            grant: Arc::new(grant),
            unread: None,
        })
    }

    /// Retract a message you sent, within 5 minutes of sending it: it stays in the thread
    /// as a "retracted" stub without its body.
    async fn retract_message(&self, ctx: &Context<'_>, id: ID) -> Result<Message> {
        let state = ctx.state()?;
        let viewer = ctx.viewer()?;
        let id = parse_id("id", &id)?;
        let Some(thread_id) = service::thread_of(&state.db, id).await? else {
            return Err(AppError::NotFound.into());
        };
        let (grant, _) =
            grants::thread_grant(state, viewer, thread_id, true, "message.retract").await?;
        let mut tx = WriteTxn::begin_in(&state.db, service::LANE).await?;
        let m = service::retract(&mut tx, viewer, &grant, id).await?;
        tx.commit().await?;
        // Others' unread counts drop by the retracted message.
        let others = service::participant_users(&state.db, thread_id)
            .await?
            .into_iter()
            .filter(|u| *u != viewer.user_id)
            .collect();
        super::live::unread_changed(state, others).await;
        Ok(Message::new(m, Arc::new(grant)))
    }
}
