//! Field encryption (AES-256-GCM-SIV) and keyed blind indexes (HMAC-SHA-256).
//!
//! Ciphertext layout: `version (1 byte) ‖ nonce (12 bytes) ‖ sealed bytes`. The associated
//! data is `table ‖ 0 ‖ column ‖ 0 ‖ row id`, so a value copied to another row or column
//! does not open. Blind indexes are HMAC(index key, `table.column` ‖ 0 ‖ normalized value)
//! truncated to 16 bytes, for exact-match search on encrypted columns.
pub mod keys;

pub use keys::{KeyFile, KeySource, write_private};

use std::collections::HashMap;
use std::sync::Arc;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use crate::error::{AppError, AppResult};

const NONCE_LEN: usize = 12;
pub const BLIND_INDEX_LEN: usize = 16;

/// Where an encrypted value lives; it becomes the associated data.
#[derive(Clone, Copy, Debug)]
pub struct Slot<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub row: &'a Uuid,
}

/// Versioned data keys plus the blind-index key. Cipher instances are built once.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<KeyRingInner>,
}

struct KeyRingInner {
    current: u8,
    ciphers: HashMap<u8, Aes256GcmSiv>,
    index_mac: Hmac<Sha256>,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is too short")]
    Truncated,
    #[error("no data key with version {0}")]
    UnknownKey(u8),
    #[error("ciphertext failed authentication")]
    Open,
    #[error("sealing failed")]
    Seal,
    #[error("decrypted value is not UTF-8")]
    Utf8,
}

impl KeyRing {
    pub fn new(current: u8, data_keys: &[(u8, [u8; 32])], index_key: &[u8; 32]) -> Self {
        let ciphers = data_keys
            .iter()
            .map(|(v, k)| (*v, Aes256GcmSiv::new(k.into())))
            .collect();
        let index_mac =
            <Hmac<Sha256> as Mac>::new_from_slice(index_key).expect("HMAC accepts any key length");
        KeyRing {
            inner: Arc::new(KeyRingInner {
                current,
                ciphers,
                index_mac,
            }),
        }
    }

    pub fn current_version(&self) -> u8 {
        self.inner.current
    }

    fn aad(slot: Slot<'_>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(slot.table.len() + slot.column.len() + 18);
        aad.extend_from_slice(slot.table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(slot.column.as_bytes());
        aad.push(0);
        aad.extend_from_slice(slot.row.as_bytes());
        aad
    }

    pub fn seal(&self, slot: Slot<'_>, plaintext: &[u8]) -> AppResult<Vec<u8>> {
        let version = self.inner.current;
        let cipher = self
            .inner
            .ciphers
            .get(&version)
            .ok_or_else(|| AppError::internal(CryptoError::UnknownKey(version)))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = Self::aad(slot);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| AppError::internal(CryptoError::Seal))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(version);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn seal_str(&self, slot: Slot<'_>, plaintext: &str) -> AppResult<Vec<u8>> {
        self.seal(slot, plaintext.as_bytes())
    }

    pub fn open(&self, slot: Slot<'_>, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if ciphertext.len() < 1 + NONCE_LEN + 16 {
            return Err(CryptoError::Truncated);
        }
        let version = ciphertext[0];
        let cipher = self
            .inner
            .ciphers
            .get(&version)
            .ok_or(CryptoError::UnknownKey(version))?;
        let nonce = Nonce::from_slice(&ciphertext[1..1 + NONCE_LEN]);
        let aad = Self::aad(slot);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &ciphertext[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Open)
    }

    pub fn open_str(&self, slot: Slot<'_>, ciphertext: &[u8]) -> AppResult<String> {
        let bytes = self.open(slot, ciphertext).map_err(AppError::internal)?;
        String::from_utf8(bytes).map_err(|_| AppError::internal(CryptoError::Utf8))
    }

    /// Keyed blind index of an already normalized value.
    pub fn blind_index(&self, table: &str, column: &str, normalized: &str) -> Vec<u8> {
        let mut mac = self.inner.index_mac.clone();
        mac.update(table.as_bytes());
        mac.update(b".");
        mac.update(column.as_bytes());
        mac.update(&[0]);
        mac.update(normalized.as_bytes());
        mac.finalize().into_bytes()[..BLIND_INDEX_LEN].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(2, &[(1, [1; 32]), (2, [2; 32])], &[9; 32])
    }

    #[test]
    fn round_trip_and_binding() {
        let r = ring();
        let id = Uuid::new_v4();
        let other = Uuid::new_v4();
        let slot = Slot {
            table: "patients",
            column: "given_name",
            row: &id,
        };
        let ct = r.seal_str(slot, "Testy").unwrap();
        assert_eq!(ct[0], 2, "key version leads the ciphertext");
        assert_eq!(r.open_str(slot, &ct).unwrap(), "Testy");
        // Moved to another row or column, it no longer opens.
        assert!(
            r.open(
                Slot {
                    row: &other,
                    ..slot
                },
                &ct
            )
            .is_err()
        );
        assert!(
            r.open(
                Slot {
                    column: "family_name",
                    ..slot
                },
                &ct
            )
            .is_err()
        );
        // Same plaintext, fresh nonce: different ciphertext.
        assert_ne!(ct, r.seal_str(slot, "Testy").unwrap());
    }

    #[test]
    fn old_key_versions_still_open() {
        let id = Uuid::new_v4();
        let slot = Slot {
            table: "t",
            column: "c",
            row: &id,
        };
        let old = KeyRing::new(1, &[(1, [1; 32])], &[9; 32]);
        let ct = old.seal(slot, b"x").unwrap();
        assert_eq!(ring().open(slot, &ct).unwrap(), b"x");
        let only_new = KeyRing::new(2, &[(2, [2; 32])], &[9; 32]);
        assert!(matches!(
            only_new.open(slot, &ct),
            Err(CryptoError::UnknownKey(1))
        ));
    }

    #[test]
    fn blind_index_is_keyed_and_column_bound() {
        let r = ring();
        let a = r.blind_index("patients", "family_name", "doe");
        assert_eq!(a.len(), BLIND_INDEX_LEN);
        assert_eq!(a, r.blind_index("patients", "family_name", "doe"));
        assert_ne!(a, r.blind_index("patients", "email", "doe"));
        let other_key = KeyRing::new(1, &[(1, [1; 32])], &[8; 32]);
        assert_ne!(a, other_key.blind_index("patients", "family_name", "doe"));
    }
}
