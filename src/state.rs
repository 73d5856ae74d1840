//! Everything a request handler needs, built once at start-up: infrastructure, plus a typed
//! slot for the domains' own long-lived services, which the composition root (`startup`)
//! fills and the domains fetch back by type.
use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::credentials::password::Passwords;
use crate::credentials::tokens::TokenKeys;
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use crate::stores::Stores;

pub use crate::db::stats::SqlStats;

#[derive(Clone)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub db: DatabaseConnection,
    pub keys: KeyRing,
    pub tokens: Arc<TokenKeys>,
    pub passwords: Passwords,
    pub stores: Stores,
    pub audit: AuditLog,
    /// Domain services by type (e.g. providers' coalesced patient reads), inserted once by
    /// `startup`; see [`AppState::service`].
    pub services: Arc<axum::http::Extensions>,
    pub sql: Arc<SqlStats>,
}

impl AppState {
    /// The domain service of type `T`; INTERNAL if start-up did not provide one.
    pub fn service<T: Clone + Send + Sync + 'static>(&self) -> AppResult<&T> {
        self.services.get::<T>().ok_or_else(|| {
            tracing::error!(
                service = std::any::type_name::<T>(),
                "domain service missing from AppState"
            );
            AppError::internal_msg("a domain service is missing from AppState")
        })
    }
}
