use sea_orm::entity::prelude::*;

/// A conversation about one patient between the patient and members of their care team
/// (an ADMIN may join). The subject is sealed; who, when and the patient stay plaintext so
/// the inbox filters and orders in SQL.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_threads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub patient_id: Uuid,
    pub subject_enc: Vec<u8>,
    /// User who started it.
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    /// When its latest message was sent (the inbox's order).
    pub last_message_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
