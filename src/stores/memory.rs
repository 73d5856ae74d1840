//! In-process stores for the embedded setup: one map with per-key deadlines, bounded.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;

pub const DEFAULT_CAPACITY: usize = 200_000;

#[derive(Clone)]
enum Value {
    Session(Session),
    Refresh(RefreshRecord),
    Bytes(Vec<u8>),
    Counter(u64),
}

struct Entry {
    value: Value,
    deadline: Instant,
}

pub struct MemoryStore {
    map: Mutex<HashMap<String, Entry>>,
    /// Persisted documents, apart from the map so that neither evicts the other.
    documents: Mutex<HashMap<String, String>>,
    capacity: usize,
    /// Told of every session that ends or changes (live sockets follow their session).
    bus: Option<bus::Bus>,
}

impl MemoryStore {
    pub fn new(capacity: usize) -> Self {
        MemoryStore {
            map: Mutex::new(HashMap::new()),
            documents: Mutex::new(HashMap::new()),
            capacity,
            bus: None,
        }
    }

    /// A store that tells `bus` of session changes.
    pub fn with_bus(capacity: usize, bus: bus::Bus) -> Self {
        MemoryStore {
            bus: Some(bus),
            ..MemoryStore::new(capacity)
        }
    }

    fn session_changed(&self, sid: &str) {
        if let Some(b) = &self.bus {
            b.session_changed(sid);
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>, Instant) -> R) -> R {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut map, Instant::now())
    }

    fn insert(&self, map: &mut HashMap<String, Entry>, now: Instant, key: &str, e: Entry) {
        if map.len() >= self.capacity && !map.contains_key(key) {
            map.retain(|_, v| v.deadline > now);
            if map.len() >= self.capacity {
                // Still full of live entries: drop the one closest to expiry, so the map
                // stays bounded (sessions end early rather than memory growing without end).
                if let Some(k) = map
                    .iter()
                    .min_by_key(|(_, v)| v.deadline)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&k);
                }
            }
        }
        map.insert(key.to_owned(), e);
    }
}

fn live<'a>(map: &'a mut HashMap<String, Entry>, key: &str, now: Instant) -> Option<&'a mut Entry> {
    if map.get(key).is_some_and(|e| e.deadline <= now) {
        map.remove(key);
    }
    map.get_mut(key)
}

#[async_trait::async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, sid: &str, session: &Session, idle: Duration) -> StoreResult<()> {
        self.with(|m, now| {
            let e = Entry {
                value: Value::Session(session.clone()),
                deadline: now + idle,
            };
            self.insert(m, now, &format!("s:{sid}"), e)
        });
        Ok(())
    }

    async fn touch(&self, sid: &str, idle: Duration) -> StoreResult<Option<Session>> {
        Ok(self.with(|m, now| match live(m, &format!("s:{sid}"), now) {
            Some(e) => {
                e.deadline = now + idle;
                match &e.value {
                    Value::Session(s) => Some(s.clone()),
                    _ => None,
                }
            }
            None => None,
        }))
    }

    async fn peek(&self, sid: &str) -> StoreResult<Option<(Session, Duration)>> {
        Ok(self.with(|m, now| match live(m, &format!("s:{sid}"), now) {
            Some(Entry {
                value: Value::Session(s),
                deadline,
            }) => Some((s.clone(), deadline.saturating_duration_since(now))),
            _ => None,
        }))
    }

    async fn mark_mfa_enrolled(&self, sid: &str, idle: Duration) -> StoreResult<()> {
        self.with(|m, now| {
            if let Some(e) = live(m, &format!("s:{sid}"), now)
                && let Value::Session(s) = &mut e.value
            {
                s.mfa_enrolled = true;
                s.restricted = false;
                e.deadline = now + idle;
            }
        });
        self.session_changed(sid);
        Ok(())
    }

    async fn delete(&self, sid: &str) -> StoreResult<()> {
        self.with(|m, _| m.remove(&format!("s:{sid}")));
        self.session_changed(sid);
        Ok(())
    }

    async fn put_refresh(&self, hash: &str, rec: &RefreshRecord, ttl: Duration) -> StoreResult<()> {
        self.with(|m, now| {
            let e = Entry {
                value: Value::Refresh(rec.clone()),
                deadline: now + ttl,
            };
            self.insert(m, now, &format!("r:{hash}"), e)
        });
        Ok(())
    }

    async fn get_refresh(&self, hash: &str) -> StoreResult<Option<RefreshRecord>> {
        Ok(self.with(
            |m, now| match live(m, &format!("r:{hash}"), now).map(|e| &e.value) {
                Some(Value::Refresh(r)) => Some(r.clone()),
                _ => None,
            },
        ))
    }

    async fn rotate(&self, sid: &str, expected: u64, idle: Duration) -> StoreResult<Rotation> {
        let key = format!("s:{sid}");
        let out = self.with(|m, now| {
            let Some(e) = live(m, &key, now) else {
                return Rotation::Gone;
            };
            let Value::Session(s) = &mut e.value else {
                return Rotation::Gone;
            };
            if s.refresh_gen == expected {
                // A token refresh is not user activity: the inactivity deadline stays.
                let _ = idle;
                s.refresh_gen += 1;
                Rotation::Rotated(s.clone())
            } else {
                m.remove(&key);
                Rotation::Reused
            }
        });
        if out == Rotation::Reused {
            self.session_changed(sid);
        }
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.with(
            |m, now| match live(m, &format!("k:{key}"), now).map(|e| &e.value) {
                Some(Value::Bytes(b)) => Some(b.clone()),
                _ => None,
            },
        ))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> StoreResult<()> {
        self.with(|m, now| {
            let e = Entry {
                value: Value::Bytes(value.to_vec()),
                deadline: now + ttl,
            };
            self.insert(m, now, &format!("k:{key}"), e)
        });
        Ok(())
    }

    async fn take(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = format!("k:{key}");
        Ok(self.with(|m, now| {
            live(m, &key, now)?;
            match m.remove(&key).map(|e| e.value) {
                Some(Value::Bytes(b)) => Some(b),
                _ => None,
            }
        }))
    }
}

#[async_trait::async_trait]
impl DocumentStore for MemoryStore {
    async fn document(&self, hash: &str) -> StoreResult<Option<String>> {
        let docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        Ok(docs.get(hash).cloned())
    }

    async fn register(&self, hash: &str, text: &str, max: u64) -> StoreResult<bool> {
        let mut docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        if docs.contains_key(hash) {
            return Ok(true);
        }
        if docs.len() as u64 >= max {
            return Ok(false);
        }
        docs.insert(hash.to_owned(), text.to_owned());
        Ok(true)
    }
}

#[async_trait::async_trait]
impl RateLimiter for MemoryStore {
    async fn hit(&self, key: &str, window: Duration) -> StoreResult<(u64, u64)> {
        let key = format!("l:{key}");
        Ok(self.with(|m, now| {
            if let Some(Entry {
                value: Value::Counter(c),
                deadline,
            }) = live(m, &key, now)
            {
                *c += 1;
                return (*c, deadline.saturating_duration_since(now).as_secs().max(1));
            }
            let e = Entry {
                value: Value::Counter(1),
                deadline: now + window,
            };
            self.insert(m, now, &key, e);
            (1, window.as_secs().max(1))
        }))
    }

    async fn undo(&self, key: &str) -> StoreResult<()> {
        self.with(|m, now| {
            if let Some(Entry {
                value: Value::Counter(c),
                ..
            }) = live(m, &format!("l:{key}"), now)
            {
                *c = c.saturating_sub(1);
            }
        });
        Ok(())
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.with(|m, _| m.remove(&format!("l:{key}")));
        Ok(())
    }
}
