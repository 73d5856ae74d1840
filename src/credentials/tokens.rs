//! Access tokens: EdDSA-signed JWTs with a `kid` header; plus opaque refresh tokens
//! (random 256-bit values, stored only as SHA-256 hashes).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::identity::Role;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
}

pub struct TokenKeys {
    /// Tokens whose signature has been checked, with their claims: signature verification is
    /// the costliest step of a request, and a portal sends the same token many times. Expired
    /// ones stay (and are refused at once) until the map fills up and sheds them.
    verified: Mutex<HashMap<String, Arc<Claims>>>,
    kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl TokenKeys {
    pub fn from_config(cfg: &Config) -> AppResult<TokenKeys> {
        let der = cfg.keys.signing_key_der().map_err(AppError::internal)?;
        let decoding = cfg
            .keys
            .verification_keys()
            .map_err(AppError::internal)?
            .into_iter()
            .map(|(kid, pk)| (kid, DecodingKey::from_ed_der(&pk)))
            .collect();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&cfg.jwt_issuer]);
        validation.set_audience(&[&cfg.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        Ok(TokenKeys {
            verified: Mutex::new(HashMap::new()),
            kid: cfg.keys.jwt_kid.clone(),
            encoding: EncodingKey::from_ed_der(&der),
            decoding,
            validation,
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
            ttl_secs: cfg.access_token_ttl.as_secs() as i64,
        })
    }

    /// Sign an access token; returns it with its expiry (unix seconds).
    pub fn issue(&self, user: Uuid, role: Role, sid: &str) -> AppResult<(String, i64)> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user,
            role,
            sid: sid.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + self.ttl_secs,
            iat: now,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(AppError::internal)?;
        Ok((token, claims.exp))
    }

    /// Check signature, `exp`, `iss` and `aud`. Any failure is just "not signed in".
    pub fn verify(&self, token: &str) -> Option<Arc<Claims>> {
        let now = chrono::Utc::now().timestamp();
        if let Some(c) = lock(&self.verified).get(token) {
            // Verified before: only its expiry can have changed. An expired token is refused
            // without checking its signature again (a client keeps sending one until it has
            // refreshed, and each check costs as much as a whole read).
            return (c.exp > now).then(|| c.clone());
        }
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = self.decoding.get(header.kid.as_deref()?)?;
        let claims = Arc::new(
            jsonwebtoken::decode::<Claims>(token, key, &self.validation)
                .ok()?
                .claims,
        );
        let mut cache = lock(&self.verified);
        if cache.len() >= VERIFIED_CAPACITY {
            cache.retain(|_, c| c.exp > now);
            if cache.len() >= VERIFIED_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), claims.clone());
        Some(claims)
    }
}

/// Most verified tokens remembered at once (a few MB at most).
const VERIFIED_CAPACITY: usize = 20_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh opaque secret (256 bits, base64url).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// What the stores keep of an opaque token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
