//! Client idempotency keys for writes that create something (a record, an appointment): a
//! repeated request with the same key and input gets what the first one created; the same
//! key with another input is CONFLICT. Keys are per actor and operation, stored keyed-hashed
//! (clients may put anything in them), next to a keyed hash of the request they came with,
//! inside the caller's [`WriteTxn`], so the key and what it created commit together.
use chrono::Utc;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
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
        self.judge(prior.as_ref())
    }

    /// [`Idempotency::replay`] for many requests in one statement: one answer per entry
    /// of `asked` (`None` for a request without a key), in order.
    pub async fn replay_many(
        tx: &WriteTxn,
        asked: &[Option<(Uuid, &Idempotency)>],
    ) -> AppResult<Vec<AppResult<Option<Uuid>>>> {
        let mut any = Condition::any();
        for (actor, idem) in asked.iter().flatten() {
            any = any.add(
                idempotency_keys::Column::ActorId
                    .eq(*actor)
                    .and(idempotency_keys::Column::Key.eq(idem.key.as_str())),
            );
        }
        let found = if asked.iter().any(Option::is_some) {
            idempotency_keys::Entity::find()
                .filter(any)
                .all(tx.conn())
                .await?
        } else {
            Vec::new()
        };
        Ok(asked
            .iter()
            .map(|a| match a {
                None => Ok(None),
                Some((actor, idem)) => idem.judge(
                    found
                        .iter()
                        .find(|p| p.actor_id == *actor && p.key == idem.key),
                ),
            })
            .collect())
    }

    /// Whether `other` is the same request under the same key: a repeat of it.
    pub fn repeats(&self, other: &Idempotency) -> bool {
        self.key == other.key
            && self.operation == other.operation
            && self.request_hash == other.request_hash
    }

    /// Whether `other` came with the same key (whatever its request).
    pub fn same_key(&self, other: &Idempotency) -> bool {
        self.key == other.key
    }

    fn judge(&self, prior: Option<&idempotency_keys::Model>) -> AppResult<Option<Uuid>> {
        match prior {
            None => Ok(None),
            Some(p) if p.operation == self.operation && p.request_hash == self.request_hash => {
                Ok(Some(p.resource_id))
            }
            Some(_) => Err(AppError::Conflict(REUSED)),
        }
    }

    /// Remember that this key created `resource_id`.
    pub async fn remember(&self, tx: &WriteTxn, actor: Uuid, resource_id: Uuid) -> AppResult<()> {
        Idempotency::remember_many(tx, &[(actor, self, resource_id)]).await
    }

    /// [`Idempotency::remember`] for many keys in one statement (each `(actor, key)` once).
    pub async fn remember_many(
        tx: &WriteTxn,
        created: &[(Uuid, &Idempotency, Uuid)],
    ) -> AppResult<()> {
        if created.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        idempotency_keys::Entity::insert_many(created.iter().map(|(actor, idem, resource)| {
            idempotency_keys::ActiveModel {
                actor_id: Set(*actor),
                key: Set(idem.key.clone()),
                operation: Set(idem.operation.into()),
                request_hash: Set(idem.request_hash.clone()),
                resource_id: Set(*resource),
                created_at: Set(now),
            }
        }))
        .exec_without_returning(tx.conn())
        .await?;
        Ok(())
    }
}

/// The CONFLICT a key gets when it comes back with another operation or input.
pub const REUSED: &str =
    "this idempotency key was already used with a different input; use a new key";
