use async_graphql::Enum;

pub use crate::input::parse_clinical_text;

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AllergySeverity {
    Mild,
    Moderate,
    Severe,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum AllergyStatus {
    Active,
    Resolved,
}

crate::text_enum!(AllergySeverity { Mild => "MILD", Moderate => "MODERATE", Severe => "SEVERE" });
crate::text_enum!(AllergyStatus { Active => "ACTIVE", Resolved => "RESOLVED" });
