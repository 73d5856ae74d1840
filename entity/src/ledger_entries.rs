use sea_orm::entity::prelude::*;

/// One movement on a statement's balance, append-only: CHARGE (positive), PAYMENT
/// (negative), REFUND (positive), ADJUSTMENT (either). A statement's balance is the sum.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub statement_id: Uuid,
    pub patient_id: Uuid,
    pub kind: String,
    pub amount_cents: i64,
    pub payment_id: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    /// Why the entry was made, when given (a refund's reason): sealed.
    pub reason_enc: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
