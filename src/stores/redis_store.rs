//! Redis stores: sessions as JSON with a sliding TTL (GETEX, one round trip per check; an
//! instance answers most checks from `session_cache`), changes to sessions announced on a
//! pub/sub channel, refresh rotation as one Lua script, counters with INCR + EXPIRE NX.
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

use super::*;

pub struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    rotate: Script,
    mark_mfa: Script,
    undo: Script,
    register: Script,
}

/// Register a document (KEYS[1] the set of hashes, KEYS[2] the document's key, ARGV[1] its
/// hash, ARGV[2] its text, ARGV[3] the most documents) unless the set is full. A hash the
/// set already counts is written again even when it is full: its text may have been evicted
/// (`maxmemory`) while the set kept it.
const REGISTER_LUA: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0
  and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"#;

/// Flip the MFA flags in place, leaving the refresh generation as it is, and tell every
/// instance (ARGV[2]: channel, ARGV[3]: session id).
const MARK_MFA_LUA: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local s = cjson.decode(raw)
s['mfa_enrolled'] = true
s['restricted'] = false
redis.call('SET', KEYS[1], cjson.encode(s), 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// Compare-and-advance of the refresh generation; revoke the session on mismatch (and tell
/// every instance: ARGV[3] channel, ARGV[4] session id). Returns the new session JSON, 0 for
/// reuse (session deleted), or nil when it is gone.
const ROTATE_LUA: &str = r#"
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local s = cjson.decode(raw)
if tonumber(s['refresh_gen']) == tonumber(ARGV[1]) then
  s['refresh_gen'] = s['refresh_gen'] + 1
  local out = cjson.encode(s)
  -- A token refresh is not user activity: the inactivity deadline stays (ARGV[2] unused).
  redis.call('SET', KEYS[1], out, 'KEEPTTL')
  return out
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 0
"#;

/// Take back one hit, in one step: a decrement and a delete as two commands let another
/// instance's undo land between them on a key already gone, leaving a negative count that
/// the next hit read as about 2^64 (every login from that address refused for the window).
/// Nothing to take back once the window has expired.
const UNDO_LUA: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]))
if not n then return 0 end
if n <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])
"#;

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        use redis::IntoConnectionInfo;
        // TCP_NODELAY: every session check is one small command waiting on its reply, which
        // Nagle's algorithm would hold back behind the previous one's acknowledgement.
        let info = url
            .into_connection_info()?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), cfg).await?;
        Ok(RedisStore {
            conn,
            client,
            prefix: prefix.to_owned(),
            rotate: Script::new(ROTATE_LUA),
            mark_mfa: Script::new(MARK_MFA_LUA),
            undo: Script::new(UNDO_LUA),
            register: Script::new(REGISTER_LUA),
        })
    }

    fn key(&self, kind: &str, k: &str) -> String {
        format!("{}{kind}:{k}", self.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Where changes to sessions are announced (the payload is the session id).
    fn sessions_channel(&self) -> String {
        format!("{}sessions:changed", self.prefix)
    }

    /// Where live events are published (see `stores::bus`).
    fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// This instance's one Redis subscription, kept for as long as the bus lives: session
    /// changes (which drop `cache`'s copies and tell live sockets to look at their session)
    /// and live events (handed to the bus). Once subscribed, the cache is marked listening;
    /// on a lost connection it is marked not listening (which empties it), the subscription
    /// is made again, and every local subscription is told to replay what it missed.
    pub fn watch(
        &self,
        cache: Option<std::sync::Weak<super::session_cache::SessionCache>>,
        inbound: super::bus::Inbound,
    ) {
        let client = self.client.clone();
        let sessions = self.sessions_channel();
        let events = self.events_channel();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let listening = |on: bool| match &cache {
                None => true,
                Some(w) => match w.upgrade() {
                    Some(c) => {
                        c.set_listening(on);
                        true
                    }
                    None => false,
                },
            };
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&[&sessions, &events]).await {
                        Ok(()) => {
                            if !listening(true) || !inbound.resumed() {
                                return;
                            }
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                let payload = msg.get_payload::<String>().ok();
                                if msg.get_channel_name() == events {
                                    match payload {
                                        Some(p) if inbound.receive(&p) => {}
                                        Some(_) => return,
                                        None => tracing::warn!("unreadable event payload"),
                                    }
                                    continue;
                                }
                                if let Some(c) = cache.as_ref().and_then(|w| w.upgrade()) {
                                    match &payload {
                                        Some(sid) => c.invalidate(sid),
                                        None => c.forget_all(),
                                    }
                                }
                                if let Some(sid) = &payload
                                    && !inbound.session_changed(sid)
                                {
                                    return;
                                }
                            }
                            tracing::warn!("live subscription lost; resubscribing");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to live changes"),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot open the live change subscription")
                    }
                }
                if !listening(false) {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

#[async_trait::async_trait]
impl super::bus::Transport for RedisStore {
    async fn publish(&self, payload: String) -> StoreResult<()> {
        let _: i64 = self.conn().publish(self.events_channel(), payload).await?;
        Ok(())
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

#[async_trait::async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, sid: &str, session: &Session, idle: Duration) -> StoreResult<()> {
        let json = serde_json::to_string(session)?;
        let _: () = self
            .conn()
            .set_ex(self.key("s", sid), json, secs(idle))
            .await?;
        Ok(())
    }

    async fn touch(&self, sid: &str, idle: Duration) -> StoreResult<Option<Session>> {
        let raw: Option<String> = self
            .conn()
            .get_ex(self.key("s", sid), redis::Expiry::EX(secs(idle)))
            .await?;
        Ok(raw.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    async fn peek(&self, sid: &str) -> StoreResult<Option<(Session, Duration)>> {
        let key = self.key("s", sid);
        let (raw, ttl_ms): (Option<String>, i64) = redis::pipe()
            .get(&key)
            .pttl(&key)
            .query_async(&mut self.conn())
            .await?;
        let Some(raw) = raw else { return Ok(None) };
        let left = Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0));
        Ok(Some((serde_json::from_str(&raw)?, left)))
    }

    async fn mark_mfa_enrolled(&self, sid: &str, idle: Duration) -> StoreResult<()> {
        let _: redis::Value = self
            .mark_mfa
            .key(self.key("s", sid))
            .arg(secs(idle))
            .arg(self.sessions_channel())
            .arg(sid)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn delete(&self, sid: &str) -> StoreResult<()> {
        let _: () = redis::pipe()
            .atomic()
            .del(self.key("s", sid))
            .ignore()
            .publish(self.sessions_channel(), sid)
            .ignore()
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn put_refresh(&self, hash: &str, rec: &RefreshRecord, ttl: Duration) -> StoreResult<()> {
        let json = serde_json::to_string(rec)?;
        let _: () = self
            .conn()
            .set_ex(self.key("r", hash), json, secs(ttl))
            .await?;
        Ok(())
    }

    async fn get_refresh(&self, hash: &str) -> StoreResult<Option<RefreshRecord>> {
        let raw: Option<String> = self.conn().get(self.key("r", hash)).await?;
        Ok(raw.map(|r| serde_json::from_str(&r)).transpose()?)
    }

    async fn rotate(&self, sid: &str, expected: u64, idle: Duration) -> StoreResult<Rotation> {
        let out: redis::Value = self
            .rotate
            .key(self.key("s", sid))
            .arg(expected)
            .arg(secs(idle))
            .arg(self.sessions_channel())
            .arg(sid)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match out {
            redis::Value::Nil => Rotation::Gone,
            redis::Value::Int(_) => Rotation::Reused,
            redis::Value::BulkString(b) => Rotation::Rotated(serde_json::from_slice(&b)?),
            redis::Value::SimpleString(s) => Rotation::Rotated(serde_json::from_str(&s)?),
            _ => Rotation::Gone,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvStore for RedisStore {
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.conn().get(self.key("k", key)).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> StoreResult<()> {
        let _: () = self
            .conn()
            .set_ex(self.key("k", key), value, secs(ttl))
            .await?;
        Ok(())
    }

    async fn take(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.conn().get_del(self.key("k", key)).await?)
    }
}

#[async_trait::async_trait]
impl DocumentStore for RedisStore {
    async fn document(&self, hash: &str) -> StoreResult<Option<String>> {
        Ok(self.conn().get(self.key("doc", hash)).await?)
    }

    async fn register(&self, hash: &str, text: &str, max: u64) -> StoreResult<bool> {
        let done: i64 = self
            .register
            .key(self.key("docs", "hashes"))
            .key(self.key("doc", hash))
            .arg(hash)
            .arg(text)
            .arg(max)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisStore {
    async fn hit(&self, key: &str, window: Duration) -> StoreResult<(u64, u64)> {
        let k = self.key("l", key);
        // Signed: a count is never negative now, but one must never read as 2^64 again.
        let (count, _, ttl): (i64, i64, i64) = redis::pipe()
            .atomic()
            .incr(&k, 1)
            .cmd("EXPIRE")
            .arg(&k)
            .arg(secs(window))
            .arg("NX")
            .ttl(&k)
            .query_async(&mut self.conn())
            .await?;
        Ok((count.max(0) as u64, ttl.max(1) as u64))
    }

    async fn undo(&self, key: &str) -> StoreResult<()> {
        let _: i64 = self
            .undo
            .key(self.key("l", key))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn reset(&self, key: &str) -> StoreResult<()> {
        let _: () = self.conn().del(self.key("l", key)).await?;
        Ok(())
    }
}
