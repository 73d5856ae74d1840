use sea_orm::entity::prelude::*;

/// The sandbox payment gateway's own records (what a real gateway keeps on its side): one
/// row per idempotency key it has charged. Only `billing::gateway::Sandbox` touches it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sandbox_charges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub amount_cents: i64,
    /// APPROVED or DECLINED.
    pub outcome: String,
    pub reference: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
