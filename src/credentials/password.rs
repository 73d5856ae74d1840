//! argon2id password hashing, always on the blocking pool and bounded in concurrency
//! (each hash holds ~19 MiB), so a login flood neither stalls the runtime nor exhausts memory.
//! On Linux a hash also runs at a lower CPU priority ([`Yielding`]): on a small machine a
//! 25 ms hash otherwise takes a whole core from the requests in flight, and the kernel
//! shares cores by priority, not by who needs to answer first.
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
            let _yielding = Yielding::enter();
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
            let _yielding = Yielding::enter();
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

/// How far a hash lowers its thread's priority (nice steps; 19 is the lowest).
const HASH_NICE: i32 = 10;

/// While alive, the current thread runs `HASH_NICE` steps nicer; dropped, it goes back.
/// Raising a nice value again needs privilege (`CAP_SYS_NICE` or `RLIMIT_NICE`): without
/// it the blocking thread stays nicer, which only ever slows blocking work. Failures are
/// ignored: priority is an optimisation, never a reason to refuse a login.
struct Yielding {
    #[cfg(target_os = "linux")]
    before: Option<i32>,
}

impl Yielding {
    #[cfg(target_os = "linux")]
    fn enter() -> Yielding {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let before = getpriority_process(me).ok().filter(|&nice| {
            nice < 19 && setpriority_process(me, (nice + HASH_NICE).min(19)).is_ok()
        });
        Yielding { before }
    }

    #[cfg(not(target_os = "linux"))]
    fn enter() -> Yielding {
        Yielding {}
    }
}

impl Drop for Yielding {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(nice) = self.before {
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice);
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::getpriority_process;
    use rustix::thread::gettid;

    #[test]
    fn a_hash_runs_nicer_and_the_thread_goes_back() {
        std::thread::spawn(|| {
            let start = getpriority_process(Some(gettid())).unwrap();
            {
                let _y = super::Yielding::enter();
                let during = getpriority_process(Some(gettid())).unwrap();
                assert_eq!(during, (start + super::HASH_NICE).min(19));
            }
            let after = getpriority_process(Some(gettid())).unwrap();
            // Going back needs privilege; without it the thread stays nicer, never less nice.
            assert!(after == start || after == (start + super::HASH_NICE).min(19));
        })
        .join()
        .unwrap();
    }
}
