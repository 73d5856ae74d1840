use async_graphql::Enum;

use crate::error::{AppError, AppResult};

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
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

impl AllergySeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            AllergySeverity::Mild => "MILD",
            AllergySeverity::Moderate => "MODERATE",
            AllergySeverity::Severe => "SEVERE",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            AllergySeverity::Mild,
            AllergySeverity::Moderate,
            AllergySeverity::Severe,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

impl AllergyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AllergyStatus::Active => "ACTIVE",
            AllergyStatus::Resolved => "RESOLVED",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [AllergyStatus::Active, AllergyStatus::Resolved]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Clinical free text: trimmed, 1..=max characters, no control characters.
pub fn parse_clinical_text(field: &'static str, raw: &str, max: usize) -> AppResult<String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(AppError::validation(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(AppError::validation(field, "is too long"));
    }
    if t.chars().any(|c| c.is_control() && c != '\n') {
        return Err(AppError::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}
