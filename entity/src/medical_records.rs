use sea_orm::entity::prelude::*;

/// One clinical record of any kind (lab result, visit note, medication, allergy,
/// immunization, document). What is needed to filter and order in SQL is plaintext (kind,
/// statuses, sensitivity, event time); every clinical value is in `content_enc`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "medical_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub patient_id: Uuid,
    /// `RecordKind` as text.
    pub kind: String,
    /// The kind's own status (ACTIVE/RESOLVED for allergies, ACTIVE/STOPPED for medications).
    pub status: Option<String>,
    /// CURRENT, AMENDED or ENTERED_IN_ERROR.
    pub record_status: String,
    /// NORMAL or SENSITIVE.
    pub sensitivity: String,
    pub version: i32,
    /// When the clinical event happened (observed, encounter, started, administered).
    pub occurred_at: DateTimeUtc,
    pub recorded_at: DateTimeUtc,
    /// User who recorded it.
    pub recorded_by: Uuid,
    /// The provider the record names (author, prescriber, performer), if any.
    pub provider_id: Option<Uuid>,
    /// Blind index of the record's code (LOINC-like lab code, CVX code), for exact search.
    pub code_bidx: Option<Vec<u8>>,
    /// The kind's fields as JSON, sealed.
    pub content_enc: Vec<u8>,
    pub updated_at: DateTimeUtc,
    pub updated_by: Uuid,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
