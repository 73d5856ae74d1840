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

/// Where a request to correct a record (45 CFR 164.526) stands.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum CorrectionStatus {
    /// Filed by the patient, not yet answered.
    Requested,
    /// Accepted: the record was amended (`amendedVersion`).
    Accepted,
    /// Denied, with the reason; the patient may file a statement of disagreement.
    Denied,
}

crate::text_enum!(CorrectionStatus {
    Requested => "REQUESTED",
    Accepted => "ACCEPTED",
    Denied => "DENIED",
});

/// Shortest and longest text of a correction request, its answer and a statement of
/// disagreement.
pub const CORRECTION_TEXT_CHARS: (usize, usize) = (5, 2000);

/// The text of a correction request, of its answer or of a statement of disagreement:
/// 5..=2000 characters of free text (VALIDATION naming `field` otherwise).
pub fn parse_correction_text(field: &'static str, raw: &str) -> crate::error::AppResult<String> {
    let (min, max) = CORRECTION_TEXT_CHARS;
    crate::input::parse_statement(field, raw, min, max)
}
