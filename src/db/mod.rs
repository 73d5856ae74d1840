//! Database plumbing below the domains: statement counting, connections that long-lived
//! tasks hold, and the coalescing of concurrent statements into batches.
pub mod coalesce;
pub mod columns;
pub mod held;
pub mod keyset;
pub mod stats;
