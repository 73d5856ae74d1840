use sea_orm::entity::prelude::*;

/// A prior version of a medical record, kept when the record changes (amendment, entered in
/// error, stop, resolve). Rows are only ever inserted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "medical_record_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub record_id: Uuid,
    pub patient_id: Uuid,
    /// The version this row preserves.
    pub version: i32,
    pub status: Option<String>,
    pub record_status: String,
    pub sensitivity: String,
    pub occurred_at: DateTimeUtc,
    /// The content as it was, sealed for this row.
    pub content_enc: Vec<u8>,
    /// Who made that version, and when.
    pub made_by: Uuid,
    pub made_at: DateTimeUtc,
    /// What replaced it: AMEND, ENTERED_IN_ERROR, STOP, RESOLVE, CORRECTION.
    pub change: String,
    pub changed_by: Uuid,
    pub changed_at: DateTimeUtc,
    /// Why it was changed (sealed), when a reason was given.
    pub reason_enc: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
