//! Client idempotency keys for writes that create something (a record, an appointment): a
//! repeated request with the same key and input gets what the first one created; the same
//! key with another input is CONFLICT. Keys are per actor and operation, stored keyed-hashed
//! (clients may put anything in them), next to a keyed hash of the request they came with,
//! inside the caller's [`WriteTxn`], so the key and what it created commit together.
use chrono::Utc;
use sea_orm::{EntityTrait, Set};
use uuid::Uuid;

use crate::audit::WriteTxn;
use crate::crypto::KeyRing;
use crate::error::{AppError, AppResult};
use entity::idempotency_keys;

/// A client's idempotency key for one actor and operation, with a keyed hash of the
/// request it came with.
pub struct Idempotency {
    key: String,
    operation: &'static str,
    request_hash: Vec<u8>,
}

impl Idempotency {
    /// `request` is everything that defines the request, as text (never stored in clear).
    pub fn new(keys: &KeyRing, key: &str, operation: &'static str, request: &str) -> Self {
        Idempotency {
            key: hex::encode(keys.blind_index("idempotency_keys", "key", key)),
            operation,
            request_hash: keys.blind_index("idempotency_keys", "request", request),
        }
    }

    /// The resource an earlier request with this key created, or CONFLICT when the key
    /// came with another operation or input.
    pub async fn replay(&self, tx: &WriteTxn, actor: Uuid) -> AppResult<Option<Uuid>> {
        let prior = idempotency_keys::Entity::find_by_id((actor, self.key.clone()))
            .one(tx.conn())
            .await?;
        match prior {
            None => Ok(None),
            Some(p) if p.operation == self.operation && p.request_hash == self.request_hash => {
                Ok(Some(p.resource_id))
            }
            Some(_) => Err(AppError::Conflict(
                "this idempotency key was already used with a different input; use a new key",
            )),
        }
    }

    /// Remember that this key created `resource_id`.
    pub async fn remember(&self, tx: &WriteTxn, actor: Uuid, resource_id: Uuid) -> AppResult<()> {
        idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            actor_id: Set(actor),
            key: Set(self.key.clone()),
            operation: Set(self.operation.into()),
            request_hash: Set(self.request_hash.clone()),
            resource_id: Set(resource_id),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(tx.conn())
        .await?;
        Ok(())
    }
}
