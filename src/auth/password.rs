//! argon2id password hashing, always on the blocking pool and bounded in concurrency
//! (each hash holds ~19 MiB), so a login flood neither stalls the runtime nor exhausts memory.
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::config::HashParams;
use crate::error::{AppError, AppResult};

#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// Verified against when the account does not exist, so both answers take as long.
    dummy_hash: Arc<String>,
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// `lanes`: hashes computed at once (at least one).
    pub fn new(p: HashParams, lanes: usize) -> AppResult<Passwords> {
        let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, None)
            .map_err(|_| AppError::internal_msg("invalid argon2 parameters"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy = argon
            .hash_password(b"caregraph-timing-equaliser", &salt)
            .map_err(|_| AppError::internal_msg("argon2 failed"))?
            .to_string();
        Ok(Passwords {
            argon,
            dummy_hash: Arc::new(dummy),
            permits: Arc::new(Semaphore::new(lanes.max(1))),
        })
    }

    pub async fn hash(&self, password: &SecretString) -> AppResult<String> {
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        let argon = self.argon.clone();
        let pw = password.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            argon
                .hash_password(pw.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|_| AppError::internal_msg("argon2 failed"))
        })
        .await
        .map_err(AppError::internal)?
    }

    /// Verify against `hash`, or against the dummy hash when there is no account, so the
    /// time taken does not tell whether the account exists.
    pub async fn verify(&self, password: &SecretString, hash: Option<&str>) -> AppResult<bool> {
        let _permit = self.permits.acquire().await.map_err(AppError::internal)?;
        let exists = hash.is_some();
        let stored = hash
            .map(str::to_owned)
            .unwrap_or_else(|| self.dummy_hash.to_string());
        let argon = self.argon.clone();
        let pw = password.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&stored).ok()?;
            Some(
                argon
                    .verify_password(pw.expose_secret().as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(AppError::internal)?;
        Ok(exists && ok.unwrap_or(false))
    }
}
