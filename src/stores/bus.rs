//! Live events: what a committed change tells the subscriptions that may care. Nothing
//! crosses the bus but ids and kinds, so no PHI reaches Redis; each subscriber loads what
//! an event names through its own access decision, at delivery.
//!
//! One [`Bus`] per process. In-process by default; with Redis, every instance holds one
//! Redis subscription (not one per socket) and publishing goes through Redis, so an event
//! reaches the subscribers of every instance. Locally, events are routed by [`Topic`] to
//! each subscription's bounded queue: a subscription that falls behind is marked lagged
//! (its consumer ends it with RESYNC) rather than buffered without bound or allowed to
//! stall the others. Redis drops what is published while an instance is disconnected: on
//! reconnecting, the bus tells every local subscription to [`Delivery::Resync`], that is
//! to replay from the database what it may have missed.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A committed change, by ids.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Event {
    /// A message was sent in a thread; `to` are the thread's participants (user ids).
    Message {
        id: Uuid,
        thread: Uuid,
        seq: i64,
        to: Vec<Uuid>,
    },
    /// These users' unread counts may have changed.
    Unread { to: Vec<Uuid> },
    /// An appointment was booked, moved or changed status; `to` are the users who may
    /// follow it without naming the patient (the patient, the provider, the care team).
    Appointment {
        id: Uuid,
        patient: Uuid,
        to: Vec<Uuid>,
    },
}

/// Where an event is routed on an instance.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Topic {
    /// Everything addressed to this user.
    User(Uuid),
    /// Everything about this patient.
    Patient(Uuid),
    /// Messages of this thread.
    Thread(Uuid),
    /// Changes to this session (its id): ended, revoked, MFA enrolled.
    Session(Uuid),
}

impl Event {
    fn topics(&self) -> Vec<Topic> {
        match self {
            Event::Message { thread, to, .. } => std::iter::once(Topic::Thread(*thread))
                .chain(to.iter().copied().map(Topic::User))
                .collect(),
            Event::Unread { to } => to.iter().copied().map(Topic::User).collect(),
            Event::Appointment { patient, to, .. } => std::iter::once(Topic::Patient(*patient))
                .chain(to.iter().copied().map(Topic::User))
                .collect(),
        }
    }
}

/// What a subscription receives. An event is shared by every subscription it reaches (one
/// pointer a queue slot: ten thousand idle queues cost little, and fan-out copies nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Event(Arc<Event>),
    /// Events may have been missed (the instance lost Redis for a while): replay from the
    /// database.
    Resync,
    /// The session changed (on any instance): look whether it still stands.
    SessionChanged,
}

struct Slot {
    tx: mpsc::Sender<Delivery>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct Hub {
    next: AtomicU64,
    routes: Mutex<HashMap<Topic, HashMap<u64, Slot>>>,
    /// Events delivered to local queues, and those dropped because a queue was full.
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Topic, HashMap<u64, Slot>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dispatch(&self, event: Event) {
        let event = Arc::new(event);
        let routes = self.lock();
        // One delivery per subscription, however many of its topics the event names.
        let mut seen: Vec<u64> = Vec::new();
        for topic in event.topics() {
            let Some(subs) = routes.get(&topic) else {
                continue;
            };
            for (id, slot) in subs {
                if seen.contains(id) {
                    continue;
                }
                seen.push(*id);
                self.offer(slot, Delivery::Event(Arc::clone(&event)));
            }
        }
    }

    fn resync_all(&self) {
        let routes = self.lock();
        let mut seen: Vec<u64> = Vec::new();
        for subs in routes.values() {
            for (id, slot) in subs {
                if !seen.contains(id) {
                    seen.push(*id);
                    self.offer(slot, Delivery::Resync);
                }
            }
        }
    }

    fn offer(&self, slot: &Slot, d: Delivery) {
        match slot.tx.try_send(d) {
            Ok(()) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                slot.lagged.store(true, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn remove(&self, id: u64, topics: &[Topic]) {
        let mut routes = self.lock();
        for t in topics {
            if let Some(subs) = routes.get_mut(t) {
                subs.remove(&id);
                if subs.is_empty() {
                    routes.remove(t);
                }
            }
        }
    }
}

/// Publishes through Redis (whose subscription feeds every instance's hub).
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn publish(&self, payload: String) -> super::StoreResult<()>;
}

/// The process's event bus.
#[derive(Clone)]
pub struct Bus {
    hub: Arc<Hub>,
    transport: Option<Arc<dyn Transport>>,
    /// Deliveries a subscription's queue holds before it is lagged.
    queue: usize,
}

/// Deliveries a subscription's queue holds before it is lagged, unless configured
/// (`LIVE_QUEUE`).
pub const QUEUE: usize = 256;

impl Bus {
    /// In-process only.
    pub fn local() -> Bus {
        Bus {
            hub: Arc::default(),
            transport: None,
            queue: QUEUE,
        }
    }

    /// The same bus, whose subscriptions from now on get queues of `queue` deliveries.
    pub fn with_queue(self, queue: usize) -> Bus {
        Bus { queue, ..self }
    }

    /// Publishing through `transport`; the caller feeds what its subscription receives to
    /// the returned [`Inbound`].
    pub fn remote(transport: Arc<dyn Transport>) -> (Bus, Inbound) {
        let hub: Arc<Hub> = Arc::default();
        (
            Bus {
                hub: hub.clone(),
                transport: Some(transport),
                queue: QUEUE,
            },
            Inbound(Arc::downgrade(&hub)),
        )
    }

    /// Tell every instance's subscribers about a committed change. Never fails the change
    /// it reports: if Redis is unreachable the event is logged and lost, and subscribers
    /// find the change when they next replay (each replays on reconnecting).
    pub async fn publish(&self, event: Event) {
        match &self.transport {
            None => self.hub.dispatch(event),
            Some(t) => {
                let payload = match serde_json::to_string(&event) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "event did not serialise");
                        return;
                    }
                };
                if let Err(e) = t.publish(payload).await {
                    tracing::warn!(error = %e, "event not published; subscribers will replay");
                }
            }
        }
    }

    /// Receive the events of these topics, into a queue of this bus's size ([`QUEUE`]
    /// unless configured).
    pub fn subscribe(&self, topics: Vec<Topic>) -> Subscription {
        self.subscribe_with(topics, self.queue)
    }

    pub fn subscribe_with(&self, mut topics: Vec<Topic>, capacity: usize) -> Subscription {
        topics.sort_by_key(|t| format!("{t:?}"));
        topics.dedup();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.hub.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut routes = self.hub.lock();
            for t in &topics {
                routes.entry(*t).or_default().insert(
                    id,
                    Slot {
                        tx: tx.clone(),
                        lagged: lagged.clone(),
                    },
                );
            }
        }
        Subscription {
            id,
            topics,
            rx,
            lagged,
            hub: Arc::downgrade(&self.hub),
        }
    }

    /// A session changed: tell this instance's subscriptions of it (every instance hears
    /// of it through the session store's own channel, or this process alone in memory).
    pub fn session_changed(&self, sid: &str) {
        let Ok(id) = Uuid::parse_str(sid) else {
            return;
        };
        let routes = self.hub.lock();
        if let Some(subs) = routes.get(&Topic::Session(id)) {
            for slot in subs.values() {
                self.hub.offer(slot, Delivery::SessionChanged);
            }
        }
    }

    /// Local subscriptions, deliveries made and deliveries dropped (lagged queues).
    pub fn stats(&self) -> (usize, u64, u64) {
        let n = {
            let routes = self.hub.lock();
            let mut ids: Vec<u64> = routes.values().flat_map(|s| s.keys().copied()).collect();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        };
        (
            n,
            self.hub.delivered.load(Ordering::Relaxed),
            self.hub.dropped.load(Ordering::Relaxed),
        )
    }
}

/// Where an instance's Redis subscription hands what it receives.
pub struct Inbound(Weak<Hub>);

impl Inbound {
    /// An event's payload as published; false once the bus is gone.
    pub fn receive(&self, payload: &str) -> bool {
        let Some(hub) = self.0.upgrade() else {
            return false;
        };
        match serde_json::from_str::<Event>(payload) {
            Ok(e) => hub.dispatch(e),
            Err(e) => tracing::warn!(error = %e, "unreadable event on the bus"),
        }
        true
    }

    /// A session changed (the payload of the session store's channel).
    pub fn session_changed(&self, sid: &str) -> bool {
        let Some(hub) = self.0.upgrade() else {
            return false;
        };
        Bus {
            hub,
            transport: None,
            queue: QUEUE,
        }
        .session_changed(sid);
        true
    }

    /// The subscription was (re)established after a loss: every local subscription replays.
    pub fn resumed(&self) -> bool {
        let Some(hub) = self.0.upgrade() else {
            return false;
        };
        hub.resync_all();
        true
    }
}

/// One subscription's queue. Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    topics: Vec<Topic>,
    rx: mpsc::Receiver<Delivery>,
    lagged: Arc<AtomicBool>,
    hub: Weak<Hub>,
}

impl Subscription {
    /// The next delivery; `None` when the bus is gone. Check [`Subscription::lagged`] after
    /// each: a lagged subscription has lost deliveries.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// The next delivery if one is waiting within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Delivery> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Deliveries were dropped because the queue was full.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.remove(self.id, &self.topics);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: Vec<Uuid>) -> Event {
        Event::Message {
            id: Uuid::new_v4(),
            thread: Uuid::new_v4(),
            seq: 1,
            to,
        }
    }

    #[tokio::test]
    async fn events_reach_their_topics_only_once_each() {
        let bus = Bus::local();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut sa = bus.subscribe(vec![Topic::User(a)]);
        let mut sb = bus.subscribe(vec![Topic::User(b)]);
        let ev = message(vec![a, a]);
        bus.publish(ev.clone()).await;
        assert_eq!(sa.next().await, Some(Delivery::Event(Arc::new(ev))));
        assert!(sa.next_within(Duration::from_millis(20)).await.is_none());
        assert!(sb.next_within(Duration::from_millis(20)).await.is_none());
        // An appointment reaches its patient's topic and its users'.
        let p = Uuid::new_v4();
        let mut sp = bus.subscribe(vec![Topic::Patient(p), Topic::User(b)]);
        let ap = Event::Appointment {
            id: Uuid::new_v4(),
            patient: p,
            to: vec![b],
        };
        bus.publish(ap.clone()).await;
        assert_eq!(sp.next().await, Some(Delivery::Event(Arc::new(ap.clone()))));
        assert!(sp.next_within(Duration::from_millis(20)).await.is_none());
        assert_eq!(sb.next().await, Some(Delivery::Event(Arc::new(ap))));
    }

    #[tokio::test]
    async fn a_full_queue_lags_instead_of_growing_and_a_dropped_one_unsubscribes() {
        let bus = Bus::local();
        let a = Uuid::new_v4();
        let mut s = bus.subscribe_with(vec![Topic::User(a)], 2);
        for _ in 0..5 {
            bus.publish(message(vec![a])).await;
        }
        assert!(s.lagged());
        assert!(s.next().await.is_some());
        assert!(s.next().await.is_some());
        assert!(s.next_within(Duration::from_millis(20)).await.is_none());
        assert_eq!(bus.stats().2, 3);
        drop(s);
        assert_eq!(bus.stats().0, 0);
    }

    #[test]
    fn only_ids_cross_the_wire() {
        let ev = message(vec![Uuid::nil()]);
        let json = serde_json::to_string(&ev).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "k", "seq", "thread", "to"]);
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), ev);
    }
}
