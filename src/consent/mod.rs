//! Patient consent: who may see which clinical categories. Versioned records, history kept,
//! withdrawal effective on the very next request (nothing caches a decision across requests).
pub mod graphql;
pub mod service;
pub mod types;
