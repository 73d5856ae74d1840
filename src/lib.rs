//! Caregraph: a HIPAA-grade GraphQL backend-for-frontend for a patient portal.
pub mod access;
pub mod appointments;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod config;
pub mod consent;
pub mod credentials;
pub mod crypto;
pub mod db;
pub mod error;
pub mod fhir;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod identity;
pub mod input;
pub mod messages;
pub mod patients;
pub mod records;
pub mod schema;
pub mod seed;
pub mod startup;
pub mod state;
pub mod stores;
pub mod telemetry;
pub mod text_enum;

#[cfg(test)]
mod layering_tests;
