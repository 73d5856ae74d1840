use sea_orm::entity::prelude::*;

/// A user taking part in a thread, with how far they have read (`last_read_seq`, a message
/// `seq`) and whether they archived it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "thread_participants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub thread_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// PATIENT, PROVIDER or ADMIN.
    pub role: String,
    pub joined_at: DateTimeUtc,
    pub last_read_seq: i64,
    pub archived_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
