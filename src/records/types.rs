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

crate::text_enum!(AllergySeverity { Mild => "MILD", Moderate => "MODERATE", Severe => "SEVERE" });
crate::text_enum!(AllergyStatus { Active => "ACTIVE", Resolved => "RESOLVED" });

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
