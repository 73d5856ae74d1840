use sea_orm::entity::prelude::*;

/// A clinical document's body (up to 1 MiB), sealed, apart from the record so lists never
/// load it. Amending a document's content adds a blob; old ones stay for its history.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "record_blobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub record_id: Uuid,
    pub patient_id: Uuid,
    pub content_enc: Vec<u8>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
