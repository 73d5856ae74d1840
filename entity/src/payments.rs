use sea_orm::entity::prelude::*;

/// A payment attempt, written (PENDING) before the gateway is called: the client's
/// idempotency key (keyed hash, unique per payer), a keyed fingerprint of the request, and
/// what the gateway answered. The gateway is passed the same key, so a retry can never
/// charge twice.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub statement_id: Uuid,
    pub patient_id: Uuid,
    pub actor_id: Uuid,
    pub key_bidx: Vec<u8>,
    pub fingerprint_bidx: Vec<u8>,
    pub amount_cents: i64,
    /// PENDING, SUCCEEDED, DECLINED or REFUNDED.
    pub status: String,
    /// The payment method token, sealed (reconciliation asks the gateway about it).
    pub token_enc: Vec<u8>,
    pub gateway_ref: Option<String>,
    pub refunded_cents: i64,
    pub created_at: DateTimeUtc,
    pub settled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
