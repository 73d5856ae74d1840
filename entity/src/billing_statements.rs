use sea_orm::entity::prelude::*;

/// An immutable snapshot of what a patient was billed: dates, currency, total and the line
/// items (sealed: a procedure code reveals a diagnosis). Its balance is never stored: it
/// is the sum of its ledger entries. Only `status` (OPEN, PAID, VOID) and the void reason
/// change after issue.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "billing_statements")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub patient_id: Uuid,
    pub issued_on: Date,
    pub due_on: Date,
    /// ISO 4217, e.g. USD.
    pub currency: String,
    pub total_cents: i64,
    /// JSON array of line items, sealed.
    pub lines_enc: Vec<u8>,
    pub status: String,
    pub void_reason_enc: Option<Vec<u8>>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
