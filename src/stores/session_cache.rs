//! Sessions this instance has checked recently, in front of the shared (Redis) store.
//!
//! Every request checks its session. Sent to Redis each time, that check was one round trip
//! per request and a visible share of the server's and Redis's CPU. Here a session checked
//! within the last `fresh_for` is answered from memory. Any change to a session (logout,
//! revocation after a reused refresh token, MFA enrolment) is published by the store that
//! makes it, and every instance drops its copy when the message arrives, so a signed-out
//! session stops working everywhere at once, not after `fresh_for`.
//!
//! Nothing is cached while revocations are not being received (before the subscription is
//! confirmed, and after it drops until it is back), and a check that overlapped with any
//! revocation is not cached either, so a message can never be overtaken by an older answer.
//! `fresh_for` is also the longest a copy is used without asking Redis, which bounds the
//! damage of a message that is lost without the subscription dropping. Sessions served from
//! memory do not push the idle deadline in Redis; the next real check does, so a session can
//! expire up to `fresh_for` earlier than a strict sliding window would let it.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;

struct Cached {
    session: Session,
    checked: Instant,
}

pub struct SessionCache {
    inner: Arc<dyn SessionStore>,
    fresh_for: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Cached>>,
    /// Moved on by every revocation and by every change of `listening`.
    generation: AtomicU64,
    /// Whether revocations are being received; nothing is cached while not.
    listening: AtomicBool,
}

impl SessionCache {
    pub fn new(inner: Arc<dyn SessionStore>, fresh_for: Duration, capacity: usize) -> Self {
        SessionCache {
            inner,
            fresh_for,
            capacity,
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop this instance's copy of a session that changed (here or on another instance).
    pub fn invalidate(&self, sid: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries().remove(sid);
    }

    /// Drop every copy (a message that cannot be read could have been any session's).
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries().clear();
    }

    /// Revocations are being received (`true`), or not any more (`false`: forget everything).
    pub fn set_listening(&self, on: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.listening.store(on, Ordering::Release);
        if !on {
            self.entries().clear();
        }
    }

    fn cached(&self, sid: &str) -> Option<Session> {
        if !self.listening.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries();
        let c = entries.get(sid)?;
        (c.checked.elapsed() < self.fresh_for).then(|| c.session.clone())
    }

    fn remember(&self, sid: &str, session: &Option<Session>, generation: u64, checked: Instant) {
        let mut entries = self.entries();
        // Under the lock, so an invalidation cannot slip in between this check and the insert.
        if !self.listening.load(Ordering::Acquire)
            || self.generation.load(Ordering::Acquire) != generation
        {
            return;
        }
        match session {
            Some(s) => {
                if entries.len() >= self.capacity {
                    entries.retain(|_, c| c.checked.elapsed() < self.fresh_for);
                    if entries.len() >= self.capacity {
                        entries.clear();
                    }
                }
                entries.insert(
                    sid.to_owned(),
                    Cached {
                        session: s.clone(),
                        checked,
                    },
                );
            }
            None => {
                entries.remove(sid);
            }
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for SessionCache {
    async fn create(&self, sid: &str, session: &Session, idle: Duration) -> StoreResult<()> {
        self.inner.create(sid, session, idle).await
    }

    async fn touch(&self, sid: &str, idle: Duration) -> StoreResult<Option<Session>> {
        if let Some(s) = self.cached(sid) {
            return Ok(Some(s));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let checked = Instant::now();
        let session = self.inner.touch(sid, idle).await?;
        self.remember(sid, &session, generation, checked);
        Ok(session)
    }

    /// Always asked of Redis: a peek decides whether a live socket's session still stands.
    async fn peek(&self, sid: &str) -> StoreResult<Option<(Session, Duration)>> {
        self.inner.peek(sid).await
    }

    async fn mark_mfa_enrolled(&self, sid: &str, idle: Duration) -> StoreResult<()> {
        self.invalidate(sid);
        self.inner.mark_mfa_enrolled(sid, idle).await?;
        self.invalidate(sid);
        Ok(())
    }

    async fn delete(&self, sid: &str) -> StoreResult<()> {
        self.invalidate(sid);
        self.inner.delete(sid).await?;
        self.invalidate(sid);
        Ok(())
    }

    async fn put_refresh(&self, hash: &str, rec: &RefreshRecord, ttl: Duration) -> StoreResult<()> {
        self.inner.put_refresh(hash, rec, ttl).await
    }

    async fn get_refresh(&self, hash: &str) -> StoreResult<Option<RefreshRecord>> {
        self.inner.get_refresh(hash).await
    }

    async fn rotate(&self, sid: &str, expected: u64, idle: Duration) -> StoreResult<Rotation> {
        let out = self.inner.rotate(sid, expected, idle).await?;
        if out != Rotation::Gone {
            self.invalidate(sid);
        }
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::memory::MemoryStore;

    fn session() -> Session {
        Session {
            user_id: uuid::Uuid::new_v4(),
            role: Role::Provider,
            patient_id: None,
            provider_id: None,
            mfa_enrolled: false,
            restricted: false,
            refresh_gen: 0,
            created_at: 0,
        }
    }

    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn serves_from_memory_only_while_listening() {
        let shared = Arc::new(MemoryStore::new(100));
        let cache = SessionCache::new(shared.clone(), Duration::from_secs(60), 100);
        shared.create("s1", &session(), IDLE).await.unwrap();

        // Not listening: every check goes to the shared store.
        assert!(cache.touch("s1", IDLE).await.unwrap().is_some());
        shared.delete("s1").await.unwrap();
        assert!(cache.touch("s1", IDLE).await.unwrap().is_none());

        // Listening: a deletion elsewhere is seen only through its revocation message.
        cache.set_listening(true);
        shared.create("s2", &session(), IDLE).await.unwrap();
        assert!(cache.touch("s2", IDLE).await.unwrap().is_some());
        shared.delete("s2").await.unwrap();
        assert!(
            cache.touch("s2", IDLE).await.unwrap().is_some(),
            "served from memory"
        );
        cache.invalidate("s2");
        assert!(cache.touch("s2", IDLE).await.unwrap().is_none());

        // Losing the subscription forgets everything.
        shared.create("s3", &session(), IDLE).await.unwrap();
        assert!(cache.touch("s3", IDLE).await.unwrap().is_some());
        shared.delete("s3").await.unwrap();
        cache.set_listening(false);
        cache.set_listening(true);
        assert!(cache.touch("s3", IDLE).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_check_that_overlaps_a_revocation_is_not_remembered() {
        let shared = Arc::new(MemoryStore::new(100));
        let cache = SessionCache::new(shared.clone(), Duration::from_secs(60), 100);
        cache.set_listening(true);
        shared.create("s", &session(), IDLE).await.unwrap();
        // The answer was read before the revocation arrived ...
        let generation = cache.generation.load(Ordering::Acquire);
        let stale = shared.touch("s", IDLE).await.unwrap();
        shared.delete("s").await.unwrap();
        cache.invalidate("s");
        // ... so it must not be kept.
        cache.remember("s", &stale, generation, Instant::now());
        assert!(cache.touch("s", IDLE).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn copies_expire_after_fresh_for() {
        let shared = Arc::new(MemoryStore::new(100));
        let cache = SessionCache::new(shared.clone(), Duration::from_millis(50), 100);
        cache.set_listening(true);
        shared.create("s", &session(), IDLE).await.unwrap();
        assert!(cache.touch("s", IDLE).await.unwrap().is_some());
        shared.delete("s").await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(cache.touch("s", IDLE).await.unwrap().is_none());
    }
}
