//! Sign-in, sessions, tokens and MFA.
pub mod graphql;
pub mod password;
pub mod service;
pub mod tokens;
