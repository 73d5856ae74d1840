//! Patients: demographics (encrypted per field), search through blind indexes, idempotent
//! creation, optimistic concurrency, soft archive.
pub mod graphql;
pub mod service;
pub mod types;
