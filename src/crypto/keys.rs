//! Key material: where it comes from and how a fresh set is made.
//!
//! One JSON document holds every secret Caregraph needs: versioned data keys, the
//! blind-index key and the Ed25519 token-signing key (plus older verification keys while
//! tokens signed by them may still be alive). Production reads it from `CAREGRAPH_KEYS`
//! (the JSON itself) or `CAREGRAPH_KEYS_FILE`; development generates one into
//! `data/dev-keys.json` (mode 0600) and marks it `"dev": true`, which production refuses.
use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::KeyRing;

#[derive(Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Generated for development; production refuses such a file.
    #[serde(default)]
    pub dev: bool,
    /// Data-key version used for new ciphertext.
    pub current: u8,
    /// Base64 AES-256 keys by version. Old versions stay until rotation re-encrypts.
    pub data_keys: BTreeMap<u8, String>,
    /// Base64 HMAC key for blind indexes.
    pub blind_index_key: String,
    /// Token signing key (Ed25519, PKCS#8 DER, base64) and its `kid`.
    pub jwt_kid: String,
    pub jwt_ed25519_pkcs8: String,
    /// Public keys (raw 32 bytes, base64) still accepted for verification, by `kid`.
    #[serde(default)]
    pub jwt_previous: BTreeMap<String, String>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("dev", &self.dev)
            .field("current", &self.current)
            .field("jwt_kid", &self.jwt_kid)
            .finish_non_exhaustive()
    }
}

/// Where the key file was found; production refuses anything but an operator's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(String),
    GeneratedDev(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file: {0}")]
    Io(#[from] std::io::Error),
    #[error("key file is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("key file: {0}")]
    Invalid(&'static str),
}

fn random32() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut k);
    k
}

fn decode32(s: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let v = B64.decode(s.trim()).map_err(|_| KeyError::Invalid(what))?;
    v.try_into().map_err(|_| KeyError::Invalid(what))
}

impl KeyFile {
    /// A fresh, random key set.
    pub fn generate(dev: bool) -> KeyFile {
        let signing = SigningKey::from_bytes(&random32());
        let der = signing
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let mut data_keys = BTreeMap::new();
        data_keys.insert(1u8, B64.encode(random32()));
        KeyFile {
            dev,
            current: 1,
            data_keys,
            blind_index_key: B64.encode(random32()),
            jwt_kid: format!("ed25519-{}", &hex::encode(random32())[..8]),
            jwt_ed25519_pkcs8: B64.encode(der.as_bytes()),
            jwt_previous: BTreeMap::new(),
        }
    }

    pub fn parse(json: &str) -> Result<KeyFile, KeyError> {
        let kf: KeyFile = serde_json::from_str(json)?;
        kf.validate()?;
        Ok(kf)
    }

    fn validate(&self) -> Result<(), KeyError> {
        if !self.data_keys.contains_key(&self.current) {
            return Err(KeyError::Invalid(
                "`current` names a data key that is not present",
            ));
        }
        for k in self.data_keys.values() {
            decode32(k, "every data key must be 32 bytes of base64")?;
        }
        decode32(
            &self.blind_index_key,
            "blind_index_key must be 32 bytes of base64",
        )?;
        self.signing_key()?;
        Ok(())
    }

    pub fn key_ring(&self) -> Result<KeyRing, KeyError> {
        let mut keys = Vec::with_capacity(self.data_keys.len());
        for (v, k) in &self.data_keys {
            keys.push((
                *v,
                decode32(k, "every data key must be 32 bytes of base64")?,
            ));
        }
        let index = decode32(
            &self.blind_index_key,
            "blind_index_key must be 32 bytes of base64",
        )?;
        Ok(KeyRing::new(self.current, &keys, &index))
    }

    pub fn signing_key_der(&self) -> Result<Vec<u8>, KeyError> {
        B64.decode(self.jwt_ed25519_pkcs8.trim())
            .map_err(|_| KeyError::Invalid("jwt_ed25519_pkcs8 must be base64 PKCS#8 DER"))
    }

    fn signing_key(&self) -> Result<SigningKey, KeyError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        SigningKey::from_pkcs8_der(&self.signing_key_der()?)
            .map_err(|_| KeyError::Invalid("jwt_ed25519_pkcs8 is not an Ed25519 PKCS#8 key"))
    }

    /// Public verification keys by `kid`: the current one and any previous ones.
    pub fn verification_keys(&self) -> Result<Vec<(String, [u8; 32])>, KeyError> {
        let mut out = vec![(
            self.jwt_kid.clone(),
            self.signing_key()?.verifying_key().to_bytes(),
        )];
        for (kid, pk) in &self.jwt_previous {
            out.push((
                kid.clone(),
                decode32(pk, "jwt_previous keys must be 32 bytes of base64")?,
            ));
        }
        Ok(out)
    }

    /// Read `CAREGRAPH_KEYS` / `CAREGRAPH_KEYS_FILE`, or else the dev file under `data_dir`,
    /// generating it (0600) on first use.
    pub fn load(
        env_json: Option<&str>,
        env_file: Option<&str>,
        data_dir: &Path,
    ) -> Result<(KeyFile, KeySource), KeyError> {
        if let Some(json) = env_json {
            return Ok((KeyFile::parse(json)?, KeySource::Env));
        }
        if let Some(path) = env_file {
            let json = std::fs::read_to_string(path)?;
            return Ok((KeyFile::parse(&json)?, KeySource::File(path.to_owned())));
        }
        let path = data_dir.join("dev-keys.json");
        let shown = path.display().to_string();
        if path.exists() {
            let json = std::fs::read_to_string(&path)?;
            return Ok((KeyFile::parse(&json)?, KeySource::GeneratedDev(shown)));
        }
        std::fs::create_dir_all(data_dir)?;
        let kf = KeyFile::generate(true);
        write_private(&path, &serde_json::to_string_pretty(&kf)?)?;
        Ok((kf, KeySource::GeneratedDev(shown)))
    }
}

/// Write a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> Result<(), KeyError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_parse_and_build_a_ring() {
        let kf = KeyFile::generate(false);
        let json = serde_json::to_string(&kf).unwrap();
        let back = KeyFile::parse(&json).unwrap();
        assert!(!back.dev);
        back.key_ring().unwrap();
        assert_eq!(back.verification_keys().unwrap().len(), 1);
    }

    #[test]
    fn rejects_missing_current_key() {
        let mut kf = KeyFile::generate(false);
        kf.current = 7;
        let json = serde_json::to_string(&kf).unwrap();
        assert!(KeyFile::parse(&json).is_err());
    }
}
