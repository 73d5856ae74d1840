//! Sign-in, sessions, tokens and MFA. The hashing pool and signing keys they use are
//! `crate::credentials`.
pub mod cookie;
pub mod graphql;
pub mod service;
