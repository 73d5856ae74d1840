//! Persisted documents: which GraphQL documents a request may run, before anything parses
//! them (`PERSISTED_QUERIES`).
//!
//! - `off`: documents come as text; a request naming a persisted one is refused with
//!   PERSISTED_QUERY_NOT_SUPPORTED, so an APQ client falls back to sending text.
//! - `apq` (the development default): Apollo's automatic persisted queries. A request
//!   carries `extensions.persistedQuery { version: 1, sha256Hash }`, with the text the first
//!   time (registered, once its hash is checked) and without it afterwards; a hash nobody
//!   registered is `PersistedQueryNotFound` (PERSISTED_QUERY_NOT_FOUND), and the client
//!   sends the text. Only signed-in callers register (anonymous ones, e.g. sign-in itself,
//!   run their text each time), so nobody anonymous can fill the store. Registrations live in the document store (Redis with `REDIS_URL`, so
//!   every instance knows them), at most `APQ_MAX_DOCUMENTS` of at most
//!   `APQ_MAX_DOCUMENT_BYTES` each; past the count a document still runs, unregistered.
//! - `trusted` (the production default): only the documents of the manifest
//!   (`PERSISTED_DOCUMENTS_FILE`, `{hash: document}` as GraphQL Code Generator's client
//!   preset writes it, keys bare or as `sha256:<hex>`) run, named by `documentId` (GraphQL
//!   over HTTP, persisted documents appendix) or by an APQ hash, or sent as their exact
//!   text. Anything else, an APQ registration included, is PERSISTED_QUERY_NOT_IN_LIST;
//!   with `PERSISTED_QUERIES_CONSOLE=true` (development only) signed-in PROVIDER and ADMIN
//!   users may still send freeform documents from the console.
//!
//! Documents are content-addressed, so one seen under a hash is that hash's forever: each
//! instance keeps those it has seen (bounded) and asks the store only for new ones.
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_graphql::{Extensions, Value, Variables};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, PersistedMode};
use crate::error::{AppError, AppResult};
use crate::identity::{Role, Viewer};
use crate::stores::DocumentStore;

/// One GraphQL request as sent (POST body, GET parameters or a websocket `subscribe`
/// payload), before its document is known.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Wire {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Variables,
    #[serde(default)]
    pub extensions: Extensions,
    #[serde(default)]
    pub document_id: Option<String>,
}

/// Which documents run, and where persisted ones are found.
#[derive(Clone)]
pub struct Persisted {
    inner: Arc<Inner>,
}

struct Inner {
    mode: PersistedMode,
    /// The trusted documents, by hash (lowercase hex).
    manifest: HashMap<String, Arc<str>>,
    store: Arc<dyn DocumentStore>,
    /// Registered documents this instance has seen, by hash.
    seen: Mutex<HashMap<String, Arc<str>>>,
    max_documents: u64,
    max_bytes: usize,
    console: bool,
}

/// The SHA-256 of a document's text, in lowercase hex (APQ's and the manifest's key).
pub fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Persisted {
    /// As configured; the manifest, when there is one, is read and checked here (each
    /// key must be its document's hash), so a wrong one stops the start, not a request.
    pub fn load(cfg: &Config, store: Arc<dyn DocumentStore>) -> Result<Persisted, String> {
        let manifest = match &cfg.persisted_documents_file {
            Some(path) => read_manifest(path)?,
            None => HashMap::new(),
        };
        Ok(Persisted {
            inner: Arc::new(Inner {
                mode: cfg.persisted,
                manifest,
                store,
                seen: Mutex::new(HashMap::new()),
                max_documents: cfg.apq_max_documents,
                max_bytes: cfg.apq_max_document_bytes,
                console: cfg.persisted_console,
            }),
        })
    }

    pub fn mode(&self) -> PersistedMode {
        self.inner.mode
    }

    /// Whether who is asking can matter: freeform console documents in trusted mode.
    pub fn wants_staff(&self) -> bool {
        self.inner.mode == PersistedMode::Trusted && self.inner.console
    }

    /// The request to run, its document found or checked; refused as the mode says.
    /// `viewer` matters only for the console's freeform documents in trusted mode.
    pub async fn resolve(
        &self,
        wire: Wire,
        viewer: Option<&Viewer>,
    ) -> AppResult<async_graphql::Request> {
        let Wire {
            query,
            operation_name,
            variables,
            mut extensions,
            document_id,
        } = wire;
        let query = query.filter(|q| !q.is_empty());
        let named = named_hash(document_id.as_deref(), extensions.remove("persistedQuery"))?;
        let text = self.document(query, named, viewer).await?;
        let mut req = async_graphql::Request::new(text).variables(variables);
        req.operation_name = operation_name.filter(|n| !n.is_empty());
        req.extensions = extensions;
        Ok(req)
    }

    async fn document(
        &self,
        query: Option<String>,
        named: Option<String>,
        viewer: Option<&Viewer>,
    ) -> AppResult<String> {
        let inner = &*self.inner;
        match inner.mode {
            PersistedMode::Off => match (query, named) {
                (Some(text), _) => Ok(text),
                (None, Some(_)) => Err(AppError::PersistedQueryNotSupported),
                (None, None) => Err(no_document()),
            },
            PersistedMode::Apq => match (query, named) {
                (Some(text), None) => Ok(text),
                (Some(text), Some(h)) => {
                    // Only signed-in callers register: nobody anonymous can fill the store
                    // (a sign-in's own document still runs from its text every time).
                    if viewer.is_some_and(|v| !v.restricted) {
                        self.register(&h, &text).await?;
                    } else if hash(&text) != h {
                        return Err(mismatch());
                    }
                    Ok(text)
                }
                (None, Some(h)) => match self.known(&h).await? {
                    Some(text) => Ok(text.to_string()),
                    None => Err(AppError::PersistedQueryNotFound),
                },
                (None, None) => Err(no_document()),
            },
            PersistedMode::Trusted => {
                let (listed, text) = match (&query, named) {
                    (None, None) => return Err(no_document()),
                    (_, Some(h)) => (inner.manifest.get(&h), query.as_deref()),
                    (Some(text), None) => (inner.manifest.get(&hash(text)), Some(text.as_str())),
                };
                match (listed, text) {
                    // A listed document's text, sent with it, must be that document.
                    (Some(doc), Some(t)) if **doc != *t => Err(mismatch()),
                    (Some(doc), _) => Ok(doc.to_string()),
                    (None, Some(_)) if inner.console && viewer.is_some_and(staff) => {
                        Ok(query.unwrap_or_default())
                    }
                    (None, _) => Err(AppError::PersistedQueryNotInList),
                }
            }
        }
    }

    /// The document registered under `h` (this instance's copy, the manifest's, or the
    /// store's).
    async fn known(&self, h: &str) -> AppResult<Option<Arc<str>>> {
        let inner = &*self.inner;
        if let Some(doc) = inner.manifest.get(h) {
            return Ok(Some(doc.clone()));
        }
        if let Some(doc) = lock(&inner.seen).get(h) {
            return Ok(Some(doc.clone()));
        }
        let Some(text) = inner.store.document(h).await? else {
            return Ok(None);
        };
        // The store holds what was checked on registration; a copy that is not its hash's
        // (a corrupted store) is not run.
        if hash(&text) != h {
            tracing::error!("a registered persisted document does not match its hash");
            return Ok(None);
        }
        let doc: Arc<str> = Arc::from(text);
        self.remember(h, &doc);
        Ok(Some(doc))
    }

    /// Register `text` under `h` once its hash and size are checked.
    async fn register(&self, h: &str, text: &str) -> AppResult<()> {
        let inner = &*self.inner;
        if hash(text) != h {
            return Err(mismatch());
        }
        if text.len() > inner.max_bytes {
            return Err(AppError::validation(
                "persistedQuery",
                "the document is longer than APQ_MAX_DOCUMENT_BYTES allows; send it as text without a hash",
            ));
        }
        if inner.manifest.contains_key(h) || lock(&inner.seen).contains_key(h) {
            return Ok(());
        }
        if inner.store.register(h, text, inner.max_documents).await? {
            self.remember(h, &Arc::from(text));
        } else {
            // Full: the document runs, unregistered; a later request for it by hash alone
            // misses, and the client sends the text again.
            tracing::warn!(
                max = inner.max_documents,
                "APQ_MAX_DOCUMENTS reached: a persisted document was not registered"
            );
        }
        Ok(())
    }

    fn remember(&self, h: &str, doc: &Arc<str>) {
        let inner = &*self.inner;
        let mut seen = lock(&inner.seen);
        if (seen.len() as u64) < inner.max_documents {
            seen.insert(h.to_owned(), doc.clone());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn staff(v: &Viewer) -> bool {
    !v.restricted && matches!(v.role, Role::Provider | Role::Admin)
}

fn no_document() -> AppError {
    AppError::validation(
        "query",
        "send a query, or the id of a persisted document (documentId or extensions.persistedQuery)",
    )
}

fn mismatch() -> AppError {
    AppError::validation("persistedQuery", "provided sha does not match query")
}

/// The hash a request names: `documentId` (`sha256:<hex>`, or the bare hex) or APQ's
/// `persistedQuery { version: 1, sha256Hash }`; VALIDATION for one that is malformed.
fn named_hash(document_id: Option<&str>, apq: Option<Value>) -> AppResult<Option<String>> {
    let raw = match (document_id.filter(|d| !d.is_empty()), apq) {
        (Some(id), _) => id.strip_prefix("sha256:").unwrap_or(id).to_owned(),
        (None, None) => return Ok(None),
        (None, Some(Value::Object(pq))) => {
            let version = pq.get("version").and_then(|v| match v {
                Value::Number(n) => n.as_i64(),
                _ => None,
            });
            if version != Some(1) {
                return Err(AppError::validation(
                    "persistedQuery",
                    "only version 1 of persisted queries is supported",
                ));
            }
            match pq.get("sha256Hash") {
                Some(Value::String(h)) => h.clone(),
                _ => {
                    return Err(AppError::validation(
                        "persistedQuery",
                        "sha256Hash must be a string",
                    ));
                }
            }
        }
        (None, Some(_)) => {
            return Err(AppError::validation(
                "persistedQuery",
                "must be an object with version and sha256Hash",
            ));
        }
    };
    if raw.len() != 64 || !raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::validation(
            "documentId",
            "must be a SHA-256 in hex, optionally prefixed with sha256:",
        ));
    }
    Ok(Some(raw.to_ascii_lowercase()))
}

/// The manifest at `path`: a JSON object of hash → document, each key the SHA-256 of its
/// document (bare hex or `sha256:<hex>`).
fn read_manifest(path: &Path) -> Result<HashMap<String, Arc<str>>, String> {
    let what = || format!("PERSISTED_DOCUMENTS_FILE ({})", path.display());
    let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", what()))?;
    let entries: HashMap<String, String> = serde_json::from_str(&raw).map_err(|_| {
        format!(
            "{} is not a JSON object of hash to document, as GraphQL Code Generator's client preset writes it",
            what()
        )
    })?;
    let mut out = HashMap::with_capacity(entries.len());
    for (key, doc) in entries {
        let h = key
            .strip_prefix("sha256:")
            .unwrap_or(&key)
            .to_ascii_lowercase();
        if hash(&doc) != h {
            return Err(format!(
                "{}: the document under {key} does not hash to it; regenerate the manifest",
                what()
            ));
        }
        out.insert(h, Arc::from(doc));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_hashes_are_checked() {
        let h = hash("{ me { role } }");
        assert_eq!(
            named_hash(Some(&format!("sha256:{h}")), None).unwrap(),
            Some(h.clone())
        );
        assert_eq!(
            named_hash(Some(&h.to_uppercase()), None).unwrap(),
            Some(h.clone())
        );
        assert!(named_hash(Some("sha256:abc"), None).is_err());
        let pq = |v: i64| {
            let mut m = async_graphql::indexmap::IndexMap::new();
            m.insert(async_graphql::Name::new("version"), Value::from(v));
            m.insert(
                async_graphql::Name::new("sha256Hash"),
                Value::from(h.clone()),
            );
            Value::Object(m)
        };
        assert_eq!(named_hash(None, Some(pq(1))).unwrap(), Some(h.clone()));
        assert!(named_hash(None, Some(pq(2))).is_err());
        assert!(named_hash(None, Some(Value::from("x"))).is_err());
        assert_eq!(named_hash(None, None).unwrap(), None);
    }
}
