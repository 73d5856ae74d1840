//! Consent scopes and status.
use async_graphql::Enum;

/// The categories a consent covers: `access`'s vocabulary, named here too.
pub use crate::access::ConsentScope;

/// Lifecycle of a consent record.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ConsentStatus {
    Active,
    Withdrawn,
    /// Past its `expiresAt`.
    Expired,
}
