use sea_orm::entity::prelude::*;

/// One message of a thread. Never edited or deleted; its sender may retract it within
/// minutes, which hides the body (kept sealed, as the record of what was sent) behind a
/// stub. `seq` is unique and follows commit order (allocated inside the write transaction,
/// which holds the audit head's lock): subscribers replay "after a cursor" by it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub seq: i64,
    pub thread_id: Uuid,
    pub patient_id: Uuid,
    pub sender_id: Uuid,
    /// PATIENT, PROVIDER or ADMIN.
    pub sender_role: String,
    pub body_enc: Vec<u8>,
    pub sent_at: DateTimeUtc,
    pub retracted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
