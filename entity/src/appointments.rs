use sea_orm::entity::prelude::*;

/// One booked visit of a patient with a provider. What scheduling filters and orders on is
/// plaintext (who, when, status); the reason, the notes and the cancellation reason are
/// sealed. `[starts_at, ends_at)` of non-cancelled appointments of one provider never
/// overlap (on PostgreSQL the database refuses it).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "appointments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub patient_id: Uuid,
    pub provider_id: Uuid,
    pub starts_at: DateTimeUtc,
    pub ends_at: DateTimeUtc,
    pub duration_minutes: i32,
    /// SCHEDULED, COMPLETED, CANCELLED or NO_SHOW.
    pub status: String,
    pub reason_enc: Vec<u8>,
    pub notes_enc: Option<Vec<u8>>,
    pub cancel_reason_enc: Option<Vec<u8>>,
    pub version: i32,
    /// User who booked it.
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_by: Uuid,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
