use sea_orm::entity::prelude::*;

/// A patient's insurance coverage. The member id is sealed (and blind-indexed); payer, plan
/// and dates stay plaintext.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coverages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub patient_id: Uuid,
    pub payer: String,
    pub plan_name: String,
    pub member_id_enc: Vec<u8>,
    pub group_number_enc: Option<Vec<u8>>,
    /// SELF, SPOUSE, CHILD or OTHER.
    pub relationship: String,
    pub effective_from: Date,
    pub effective_to: Option<Date>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
