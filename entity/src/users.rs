use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub email_bidx: Vec<u8>,
    pub email_enc: Vec<u8>,
    pub password_hash: String,
    pub role: String,
    pub patient_id: Option<Uuid>,
    pub provider_id: Option<Uuid>,
    pub mfa_enrolled: bool,
    pub mfa_secret_enc: Option<Vec<u8>>,
    pub mfa_pending_enc: Option<Vec<u8>>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
