use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "patients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub mrn_enc: Vec<u8>,
    pub mrn_bidx: Vec<u8>,
    pub given_name_enc: Vec<u8>,
    pub middle_name_enc: Option<Vec<u8>>,
    pub family_name_enc: Vec<u8>,
    pub family_name_bidx: Vec<u8>,
    pub birth_date_enc: Vec<u8>,
    pub birth_date_bidx: Vec<u8>,
    /// Legacy plaintext column, always empty: see `sex_at_birth_enc`.
    pub sex_at_birth: String,
    /// Legacy plaintext column, always empty: see `gender_identity_enc`.
    pub gender_identity: String,
    pub sex_at_birth_enc: Option<Vec<u8>>,
    pub gender_identity_enc: Option<Vec<u8>>,
    pub gender_identity_other_enc: Option<Vec<u8>>,
    pub email_enc: Option<Vec<u8>>,
    pub email_bidx: Option<Vec<u8>>,
    pub phone_enc: Option<Vec<u8>>,
    pub phone_bidx: Option<Vec<u8>>,
    pub address_enc: Option<Vec<u8>>,
    pub emergency_contact_enc: Option<Vec<u8>>,
    pub ssn_enc: Option<Vec<u8>>,
    pub ssn_last4_enc: Option<Vec<u8>>,
    pub preferred_language: Option<String>,
    pub consent_to_contact: bool,
    pub version: i32,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub archived_at: Option<DateTimeUtc>,
    pub archive_reason_enc: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
