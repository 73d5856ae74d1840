//! Summarised security events: requests that name protected data without a valid token
//! (none, expired or forged) are counted per client address and minute, and written as one
//! `security.unauthenticated` audit row per address and minute. Visible in the log, and
//! nobody can flood it: the rows grow with the number of addresses, not requests, and the
//! addresses kept per minute are bounded (the rest are counted together).
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use super::{AuditEvent, AuditLog, Outcome};

/// Addresses counted one by one in a minute; beyond that they share one row.
const MAX_ADDRESSES: usize = 10_000;

/// (minute since the epoch, client address or `None` for the shared row).
type Slot = (i64, Option<Arc<str>>);

#[derive(Default)]
pub struct SecurityTally {
    /// Requests refused per slot.
    counts: Mutex<HashMap<Slot, u64>>,
}

fn minute(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(60)
}

impl SecurityTally {
    /// Count one refused request from `ip`.
    pub fn note(&self, ip: Option<&Arc<str>>) {
        let m = minute(Utc::now());
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = (m, ip.cloned());
        if let Some(n) = counts.get_mut(&key) {
            *n += 1;
            return;
        }
        let key = if counts.len() < MAX_ADDRESSES {
            key
        } else {
            (m, None)
        };
        *counts.entry(key).or_insert(0) += 1;
    }

    /// The counts of minutes before `before` (all of them with `None`), as audit events.
    fn drain(&self, before: Option<i64>) -> Vec<AuditEvent> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<_> = counts
            .keys()
            .filter(|(m, _)| before.is_none_or(|b| *m < b))
            .cloned()
            .collect();
        due.into_iter()
            .filter_map(|key| counts.remove_entry(&key))
            .map(|((m, ip), count)| {
                let start = Utc
                    .timestamp_opt(m * 60, 0)
                    .single()
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let mut ev = AuditEvent::new("security.unauthenticated", "request")
                    .outcome(Outcome::Denied)
                    .detail(serde_json::json!({
                        "count": count,
                        "minute": start,
                        "addresses": if ip.is_some() { "one" } else { "many" },
                    }));
                ev.ip = ip;
                ev
            })
            .collect()
    }
}

impl AuditLog {
    /// Count a request refused as UNAUTHENTICATED for protected data (see the module).
    pub fn note_unauthenticated(&self, ip: Option<&Arc<str>>) {
        self.security.note(ip);
    }

    /// Write every count now, the current minute's included (shutdown, tests).
    pub async fn flush_security_events(&self) -> crate::error::AppResult<()> {
        self.record_many(self.security.drain(None)).await
    }
}

/// Writes each minute's counts shortly after it ends; stops with the audit log.
pub(super) fn start_flusher(log: &AuditLog) {
    let tally: Weak<SecurityTally> = Arc::downgrade(&log.security);
    let tx = log.tx.downgrade();
    tokio::spawn(async move {
        loop {
            let now = Utc::now();
            let into_minute =
                Duration::from_millis((now.timestamp_millis().rem_euclid(60_000)) as u64);
            tokio::time::sleep(Duration::from_secs(61).saturating_sub(into_minute)).await;
            let (Some(tally), Some(tx)) = (tally.upgrade(), tx.upgrade()) else {
                return;
            };
            let log = AuditLog {
                tx,
                security: tally.clone(),
            };
            let events = tally.drain(Some(minute(Utc::now())));
            if let Err(e) = log.record_many(events).await {
                tracing::error!(error = ?e, "security events were not written");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_minute_bounded() {
        let t = SecurityTally::default();
        let a: Arc<str> = Arc::from("192.0.2.1");
        for _ in 0..5 {
            t.note(Some(&a));
        }
        t.note(None);
        let mut evs = t.drain(None);
        evs.sort_by_key(|e| e.ip.is_none());
        assert_eq!(evs.len(), 2);
        assert!(evs[0].detail.contains("\"count\":5"), "{}", evs[0].detail);
        assert_eq!(evs[0].action, "security.unauthenticated");
        assert!(t.drain(None).is_empty());
        for i in 0..(MAX_ADDRESSES + 50) {
            t.note(Some(&Arc::from(format!("10.0.{}.{}", i / 256, i % 256))));
        }
        assert!(t.drain(None).len() <= MAX_ADDRESSES + 1);
    }
}
