//! Credential machinery below the sign-in logic: argon2id password hashing on a bounded
//! pool, and the access-token signing keys. `auth` decides when to use them.
pub mod password;
pub mod tokens;
