//! Live messaging: what sends and reads publish (ids only), and the subscriptions that
//! deliver them, each event loaded for its subscriber through `access::messaging` at
//! delivery, against live state (see `graphql::live`).
//!
//! `messageReceived(threadId, after)` first replays, from the database, every message the
//! subscriber may read after `after` (oldest first), then goes live; a subscription whose
//! queue overflowed ends with RESYNC (subscribe again with `after` the last cursor), and
//! one whose instance lost Redis for a while replays from its last cursor on its own.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_graphql::{Context, ID, Result, Subscription};
use futures_util::Stream;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::graphql::{Message, cursor_seq};
use super::service;
use crate::access::Role;
use crate::access::messaging::{self as grants, ThreadGrant};
use crate::audit::AuditEvent;
use crate::error::{AppError, AppResult};
use crate::graphql::context::ContextExt;
use crate::graphql::live::LiveViewer;
use crate::graphql::relay::parse_id;
use crate::identity::Viewer;
use crate::state::AppState;
use crate::stores::bus::{Bus, Delivery, Event, Subscription as BusSubscription, Topic};
use entity::{message_threads, messages};

/// Messages one replay step reads.
const REPLAY_BATCH: u64 = 100;

/// Tell subscribers that a thread's first message was sent (after its transaction
/// committed). Sends are published by their writer (`writer`), in commit order.
pub async fn message_sent(state: &AppState, sent: &service::Sent) -> AppResult<()> {
    let m = &sent.message;
    let to = match &sent.to {
        Some(to) => to.clone(),
        None => service::participant_users(&state.db, m.row.thread_id).await?,
    };
    publish_message(&state.stores.bus, m, to).await;
    Ok(())
}

/// Publish a committed message's events, ids only: the message to everyone in its thread
/// (`to`), and a changed unread count to all but its sender.
pub async fn publish_message(bus: &Bus, m: &service::Message, to: Vec<Uuid>) {
    let others: Vec<Uuid> = to
        .iter()
        .copied()
        .filter(|u| *u != m.row.sender_id)
        .collect();
    bus.publish(Event::Message {
        id: m.row.id,
        thread: m.row.thread_id,
        seq: m.row.seq,
        to,
    })
    .await;
    bus.publish(Event::Unread { to: others }).await;
}

/// Tell a user's subscriptions that their unread count may have changed.
pub async fn unread_changed(state: &AppState, users: Vec<Uuid>) {
    state.stores.bus.publish(Event::Unread { to: users }).await;
}

/// Handled seqs a feed remembers above its floor.
const SEEN_WINDOW: usize = 256;

/// Which message `seq`s a feed has handled, so that each is delivered once even when
/// events arrive out of commit order: two instances announce their sends independently,
/// and a thread's first message is announced by its resolver while the writer announces
/// later sends. Everything at or below `floor` is handled (it precedes the subscription, or
/// a replay read it), and `recent` holds the handled seqs above it. The window is bounded:
/// when it is full the floor rises to its oldest entry, so an event overtaken by more than
/// [`SEEN_WINDOW`] later ones counts as handled rather than memory growing.
struct Seen {
    floor: i64,
    recent: std::collections::BTreeSet<i64>,
}

impl Seen {
    fn new(floor: i64) -> Seen {
        Seen {
            floor,
            recent: Default::default(),
        }
    }

    fn handled(&self, seq: i64) -> bool {
        seq <= self.floor || self.recent.contains(&seq)
    }

    fn mark(&mut self, seq: i64) {
        if seq <= self.floor {
            return;
        }
        self.recent.insert(seq);
        while self.recent.len() > SEEN_WINDOW {
            if let Some(oldest) = self.recent.pop_first() {
                self.floor = oldest;
            }
        }
    }

    /// Everything up to `upto` is handled.
    fn cover(&mut self, upto: i64) {
        if upto > self.floor {
            self.floor = upto;
            self.recent = self.recent.split_off(&(upto + 1));
        }
    }
}

/// One `messageReceived` subscription's state between events.
struct Feed {
    live: LiveViewer,
    thread: Option<Uuid>,
    /// The `seq`s handled (delivered, or skipped as not this subscriber's).
    seen: Seen,
    bus: BusSubscription,
    pending: VecDeque<Message>,
    replay: bool,
    done: bool,
}

impl Feed {
    /// The next message to deliver, or an error that ends the subscription.
    async fn next(&mut self) -> Option<Result<Message>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(m) = self.pending.pop_front() {
                return Some(Ok(m));
            }
            if self.bus.lagged() {
                self.done = true;
                return Some(Err(AppError::Resync.into()));
            }
            // The heavy steps are boxed: their futures exist while they run, not between
            // events, so an idle subscription holds little more than its queue.
            if self.replay {
                match Box::pin(self.replay_step()).await {
                    Ok(more) => self.replay = more,
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e.into()));
                    }
                }
                continue;
            }
            match self.bus.next().await {
                None => return None,
                Some(Delivery::Resync) => self.replay = true,
                Some(Delivery::Event(e)) => {
                    let Event::Message {
                        id, thread, seq, ..
                    } = *e
                    else {
                        continue;
                    };
                    if self.seen.handled(seq) || self.thread.is_some_and(|t| t != thread) {
                        continue;
                    }
                    match Box::pin(self.deliver(id, thread, seq)).await {
                        Ok(Some(m)) => return Some(Ok(m)),
                        Ok(None) => {}
                        Err(e) => {
                            self.done = true;
                            return Some(Err(e.into()));
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// Load one message for this subscriber, if they may read it now.
    async fn deliver(&mut self, id: Uuid, thread: Uuid, seq: i64) -> AppResult<Option<Message>> {
        let viewer = self.live.now().await?;
        let state = &self.live.state;
        // Handled, even when it is not shown.
        self.seen.mark(seq);
        let Some(grant) = grant(state, &viewer, thread).await? else {
            return Ok(None);
        };
        let Some(m) = service::by_ids(&state.db, &state.keys, &[id]).await?.pop() else {
            return Ok(None);
        };
        record_read(state, &viewer, &grant, &[&m]).await?;
        Ok(Some(Message::live(m, grant, Arc::new(viewer))))
    }

    /// Read (a batch of) what was committed above the handled floor in the threads this
    /// subscriber may read, less what was already delivered live; true when there may be
    /// more. `seq` order is commit order, so once a batch is read everything up to its last
    /// `seq` is handled.
    async fn replay_step(&mut self) -> AppResult<bool> {
        let viewer = self.live.now().await?;
        let state = &self.live.state;
        let mut q = messages::Entity::find()
            .filter(messages::Column::Seq.gt(self.seen.floor))
            .order_by_asc(messages::Column::Seq)
            .limit(REPLAY_BATCH);
        q = match self.thread {
            Some(t) => q.filter(messages::Column::ThreadId.eq(t)),
            None => {
                let readable = sea_orm::sea_query::Query::select()
                    .column((message_threads::Entity, message_threads::Column::Id))
                    .from(message_threads::Entity)
                    .cond_where(grants::readable_threads(&viewer)?)
                    .to_owned();
                q.filter(messages::Column::ThreadId.in_subquery(readable))
            }
        };
        let rows = q.all(&state.db).await?;
        let more = rows.len() as u64 == REPLAY_BATCH;
        let ids: Vec<Uuid> = rows
            .iter()
            .filter(|m| !self.seen.handled(m.seq))
            .map(|m| m.id)
            .collect();
        let Some(last) = rows.last().map(|m| m.seq) else {
            return Ok(false);
        };
        let opened = if ids.is_empty() {
            Vec::new()
        } else {
            service::by_ids(&state.db, &state.keys, &ids).await?
        };
        let mut by_thread: HashMap<Uuid, Option<Arc<ThreadGrant>>> = HashMap::new();
        let mut shown: Vec<(Arc<ThreadGrant>, service::Message)> = Vec::new();
        for m in opened {
            let t = m.row.thread_id;
            let g = match by_thread.get(&t) {
                Some(g) => g.clone(),
                None => {
                    let g = grant(state, &viewer, t).await?;
                    by_thread.insert(t, g.clone());
                    g
                }
            };
            if let Some(g) = g {
                shown.push((g, m));
            }
        }
        for (g, m) in shown {
            record_read(state, &viewer, &g, &[&m]).await?;
            self.pending
                .push_back(Message::live(m, g, Arc::new(viewer.clone())));
        }
        self.seen.cover(last);
        Ok(more)
    }
}

/// The subscriber's grant over a thread now, or `None` when they may not read it (the
/// refusal is audited by `access`).
async fn grant(
    state: &AppState,
    viewer: &Viewer,
    thread: Uuid,
) -> AppResult<Option<Arc<ThreadGrant>>> {
    match grants::thread_grant(state, viewer, thread, false, "message.read").await {
        Ok((g, _)) => Ok(Some(Arc::new(g))),
        Err(AppError::NotFound | AppError::ConsentRequired { .. } | AppError::Forbidden(_)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Each delivery is a read, audited (durably) before it is sent.
async fn record_read(
    state: &AppState,
    viewer: &Viewer,
    grant: &ThreadGrant,
    list: &[&service::Message],
) -> AppResult<()> {
    let ids: Vec<String> = list.iter().map(|m| m.row.id.to_string()).collect();
    state
        .audit
        .record(
            AuditEvent::by(viewer, "message.read", "message_thread")
                .scope(grant)
                .resource(grant.thread_id().to_string())
                .detail(serde_json::json!({ "via": "subscription", "messages": ids })),
        )
        .await
}

/// The unread count of one subscriber, as of now.
async fn unread_now(live: &LiveViewer) -> AppResult<i64> {
    let viewer = live.now().await?;
    if viewer.role == Role::Researcher {
        return Ok(0);
    }
    service::unread_total(&live.state.db, &viewer, grants::readable_threads(&viewer)?).await
}

#[derive(Default)]
pub struct MessagesSubscription;

#[Subscription]
impl MessagesSubscription {
    /// New messages in one thread (or in every thread you may read, without `threadId`).
    /// With `after` (a message's `cursor`), what followed it is replayed first.
    async fn message_received(
        &self,
        ctx: &Context<'_>,
        thread_id: Option<ID>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<Message>> + use<>> {
        // Boxed: what opening the feed awaits is not kept in the subscription's state.
        Box::pin(open_message_feed(ctx, thread_id, after)).await
    }

    /// Your unread count across your inbox: now, then each time it changes.
    async fn unread_count_changed(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = Result<i64>> + use<>> {
        // Boxed: what opening the feed awaits is not kept in the subscription's state.
        Box::pin(open_unread_feed(ctx)).await
    }
}

/// Check the request and open the feed (see the field above).
async fn open_message_feed(
    ctx: &Context<'_>,
    thread_id: Option<ID>,
    after: Option<String>,
) -> Result<impl Stream<Item = Result<Message>> + use<>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let thread = thread_id
        .as_ref()
        .map(|t| parse_id("threadId", t))
        .transpose()?;
    let after = after.as_deref().map(cursor_seq).transpose()?;
    if let Some(t) = thread {
        // NOT_FOUND (or CONSENT_REQUIRED) now rather than a subscription that never
        // delivers.
        grants::thread_grant(state, viewer, t, false, "message.subscribe").await?;
    }
    let topic = match thread {
        Some(t) => Topic::Thread(t),
        None => Topic::User(viewer.user_id),
    };
    // Subscribe before reading where to start, so nothing falls in between.
    let bus = state.stores.bus.subscribe(vec![topic]);
    let (last, replay) = match after {
        Some(seq) => (seq, true),
        None => (service::latest_seq(&state.db).await?, false),
    };
    let feed = Feed {
        live: LiveViewer::new(state, viewer),
        thread,
        seen: Seen::new(last),
        bus,
        pending: VecDeque::new(),
        replay,
        done: false,
    };
    Ok(futures_util::stream::unfold(feed, |mut f| async move {
        f.next().await.map(|item| (item, f))
    }))
}

/// Check the request and open the feed (see the field above).
async fn open_unread_feed(ctx: &Context<'_>) -> Result<impl Stream<Item = Result<i64>> + use<>> {
    let state = ctx.state()?;
    let viewer = ctx.viewer()?;
    let bus = state
        .stores
        .bus
        .subscribe(vec![Topic::User(viewer.user_id)]);
    let live = LiveViewer::new(state, viewer);
    let start = unread_now(&live).await?;
    struct Counter {
        live: LiveViewer,
        bus: BusSubscription,
        last: Option<i64>,
        first: Option<i64>,
        done: bool,
    }
    let c = Counter {
        live,
        bus,
        last: None,
        first: Some(start),
        done: false,
    };
    Ok(futures_util::stream::unfold(c, |mut c| async move {
        if c.done {
            return None;
        }
        if let Some(n) = c.first.take() {
            c.last = Some(n);
            return Some((Ok(n), c));
        }
        loop {
            if c.bus.lagged() {
                c.done = true;
                return Some((Err(AppError::Resync.into()), c));
            }
            match c.bus.next().await? {
                Delivery::Event(e) if matches!(*e, Event::Unread { .. }) => {}
                Delivery::Resync => {}
                _ => continue,
            }
            match Box::pin(unread_now(&c.live)).await {
                Ok(n) if Some(n) == c.last => continue,
                Ok(n) => {
                    c.last = Some(n);
                    return Some((Ok(n), c));
                }
                Err(e) => {
                    c.done = true;
                    return Some((Err(e.into()), c));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::{SEEN_WINDOW, Seen};

    #[test]
    fn a_late_event_is_delivered_once_and_the_window_stays_bounded() {
        let mut s = Seen::new(10);
        assert!(s.handled(10) && !s.handled(11));
        // 12 arrives before 11: both are delivered, each once.
        s.mark(12);
        assert!(!s.handled(11) && s.handled(12));
        s.mark(11);
        assert!(s.handled(11));
        // A replay that read up to 20 covers everything below it.
        s.cover(20);
        assert!(s.handled(15) && !s.handled(21) && s.recent.is_empty());
        for seq in 0..(SEEN_WINDOW as i64 + 10) {
            s.mark(100 + seq * 2);
        }
        assert_eq!(s.recent.len(), SEEN_WINDOW);
        // The floor rose past the oldest ones: an event that late counts as handled.
        assert!(s.handled(101) && s.floor == 118);
    }
}
