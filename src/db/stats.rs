//! Counting the statements sent to the database.

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
