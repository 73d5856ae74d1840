use sea_orm::entity::prelude::*;

/// A patient's request to correct a record (45 CFR 164.526), its answer, and the patient's
/// statement of disagreement after a denial. Texts are sealed.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "correction_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub record_id: Uuid,
    pub patient_id: Uuid,
    pub requested_by: Uuid,
    pub requested_at: DateTimeUtc,
    pub text_enc: Vec<u8>,
    /// REQUESTED, ACCEPTED or DENIED.
    pub status: String,
    pub responded_by: Option<Uuid>,
    pub responded_at: Option<DateTimeUtc>,
    pub response_enc: Option<Vec<u8>>,
    /// The record version an accepted request produced.
    pub amended_version: Option<i32>,
    pub disagreement_enc: Option<Vec<u8>>,
    pub disagreed_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
