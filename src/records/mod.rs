//! Clinical records. Allergies are the first category; later categories reuse the same
//! consent-scoped field mechanism on `Patient`.
pub mod graphql;
pub mod loaders;
pub mod service;
pub mod types;
