use sea_orm::entity::prelude::*;

/// A provider in the directory. Names and specialties are not patient PHI.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "providers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub display_name: String,
    pub created_at: DateTimeUtc,
    pub specialty: Option<String>,
    /// IANA time zone the weekly hours are read in; `None` until a schedule is set.
    pub time_zone: Option<String>,
    /// Length of one bookable slot, in minutes.
    pub slot_minutes: Option<i32>,
    /// The recurring week as JSON: `[{"weekday":"MONDAY","start":"09:00","end":"12:00"}]`.
    pub weekly_hours: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
