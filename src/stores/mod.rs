//! Ephemeral state behind one set of traits: sessions, key-value (MFA challenges), persisted
//! documents (APQ) and rate-limit counters. `memory` serves the embedded single-process setup,
//! `redis` the horizontally scaled one; the test suite runs against both.
pub mod bus;
pub mod memory;
pub mod redis_store;
pub mod session_cache;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::identity::Role;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("session store value is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for crate::error::AppError {
    fn from(e: StoreError) -> Self {
        crate::error::AppError::internal(e)
    }
}

/// A signed-in session. Holds identifiers and flags only, never PHI.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Session {
    pub user_id: Uuid,
    pub role: Role,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub mfa_enrolled: bool,
    /// MFA is required for this role but not enrolled: only MFA enrolment is allowed.
    pub restricted: bool,
    /// Generation of the one live refresh token of this session's family.
    pub refresh_gen: u64,
    pub created_at: i64,
}

/// Points a refresh-token hash at its session and the generation it was issued for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RefreshRecord {
    pub sid: String,
    pub generation: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rotation {
    /// The presented generation was current: the session now expects `generation + 1`.
    Rotated(Session),
    /// A rotated-out token came back: the session (and so the whole family) was revoked.
    Reused,
    /// The session has already ended.
    Gone,
}

#[async_trait::async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, sid: &str, session: &Session, idle: Duration) -> StoreResult<()>;
    /// Read the session and push its inactivity deadline out by `idle`, in one round trip.
    async fn touch(&self, sid: &str, idle: Duration) -> StoreResult<Option<Session>>;
    /// Read the session without pushing its deadline out (a live socket checking that its
    /// session still stands is not user activity), with how long it has left.
    async fn peek(&self, sid: &str) -> StoreResult<Option<(Session, Duration)>>;
    /// Mark the session's user as MFA-enrolled and lift its restriction, atomically (a
    /// concurrent refresh rotation must not be undone). No-op when the session has ended.
    async fn mark_mfa_enrolled(&self, sid: &str, idle: Duration) -> StoreResult<()>;
    async fn delete(&self, sid: &str) -> StoreResult<()>;
    async fn put_refresh(&self, hash: &str, rec: &RefreshRecord, ttl: Duration) -> StoreResult<()>;
    async fn get_refresh(&self, hash: &str) -> StoreResult<Option<RefreshRecord>>;
    /// Atomically compare the session's refresh generation with `expected` and advance it,
    /// or revoke the session when it does not match (reuse of a rotated-out token).
    async fn rotate(&self, sid: &str, expected: u64, idle: Duration) -> StoreResult<Rotation>;
    async fn ping(&self) -> StoreResult<()>;
}

#[async_trait::async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> StoreResult<()>;
    /// Read and delete in one step (one-time tokens).
    async fn take(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
}

/// Registered persisted documents (APQ), by the SHA-256 of their text (lowercase hex).
/// Content-addressed, so a document never changes under its hash and nothing expires; the
/// number registered is bounded.
#[async_trait::async_trait]
pub trait DocumentStore: Send + Sync {
    async fn document(&self, hash: &str) -> StoreResult<Option<String>>;
    /// Register `text` under `hash` unless `max` documents are registered already; true
    /// when it is registered (now or before).
    async fn register(&self, hash: &str, text: &str, max: u64) -> StoreResult<bool>;
}

#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Count one attempt in the fixed window that starts with the first attempt; returns the
    /// count so far and the seconds until the window closes.
    async fn hit(&self, key: &str, window: Duration) -> StoreResult<(u64, u64)>;
    /// Take one attempt back (a successful login from a shared IP).
    async fn undo(&self, key: &str) -> StoreResult<()>;
    async fn reset(&self, key: &str) -> StoreResult<()>;
}

/// The stores one Caregraph process uses.
#[derive(Clone)]
pub struct Stores {
    pub sessions: Arc<dyn SessionStore>,
    pub kv: Arc<dyn KvStore>,
    pub documents: Arc<dyn DocumentStore>,
    pub limits: Arc<dyn RateLimiter>,
    /// Live events to subscriptions, on this instance and (with Redis) every other.
    pub bus: bus::Bus,
}

impl Stores {
    pub fn memory() -> Stores {
        let bus = bus::Bus::local();
        let m = Arc::new(memory::MemoryStore::with_bus(
            memory::DEFAULT_CAPACITY,
            bus.clone(),
        ));
        Stores {
            sessions: m.clone(),
            kv: m.clone(),
            documents: m.clone(),
            limits: m,
            bus,
        }
    }

    /// `session_fresh_for`: how long a checked session may be answered from this instance's
    /// memory (see `session_cache`); zero checks every request with Redis.
    pub async fn redis(
        url: &str,
        prefix: &str,
        session_fresh_for: Duration,
    ) -> StoreResult<Stores> {
        let r = Arc::new(redis_store::RedisStore::connect(url, prefix).await?);
        let (bus, inbound) = bus::Bus::remote(r.clone());
        let (sessions, cache): (Arc<dyn SessionStore>, _) = if session_fresh_for.is_zero() {
            (r.clone(), None)
        } else {
            let cache = Arc::new(session_cache::SessionCache::new(
                r.clone(),
                session_fresh_for,
                memory::DEFAULT_CAPACITY,
            ));
            let weak = Arc::downgrade(&cache);
            (cache, Some(weak))
        };
        r.watch(cache, inbound);
        Ok(Stores {
            sessions,
            kv: r.clone(),
            documents: r.clone(),
            limits: r,
            bus,
        })
    }
}
