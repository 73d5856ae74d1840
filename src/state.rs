//! Everything a request handler needs, built once at start-up.
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::audit::AuditLog;
use crate::auth::password::Passwords;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::stores::Stores;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: DatabaseConnection,
    pub keys: KeyRing,
    pub tokens: Arc<TokenKeys>,
    pub passwords: Passwords,
    pub stores: Stores,
    pub audit: AuditLog,
    /// Providers' patient reads, coalesced across requests.
    pub reads: crate::patients::reads::ProviderReads,
    pub sql: Arc<SqlStats>,
}

/// Statements sent to the database, split into audit-log writes and everything else.
#[derive(Debug, Default)]
pub struct SqlStats {
    pub data: std::sync::atomic::AtomicU64,
    pub audit: std::sync::atomic::AtomicU64,
}

impl SqlStats {
    /// Count one executed statement (called by sea-orm's metric hook).
    pub fn observe(&self, sql: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        // The statement text holds placeholders only, never bound values.
        tracing::trace!(target: "caregraph::sql", %sql);
        // `audit_log` and `audit_head`.
        if sql.contains("audit_") {
            self.audit.fetch_add(1, Relaxed);
        } else {
            self.data.fetch_add(1, Relaxed);
        }
    }

    /// (data, audit) statements so far.
    pub fn snapshot(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.data.load(Relaxed), self.audit.load(Relaxed))
    }
}
