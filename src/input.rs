//! Checks of free text that no domain owns: reasons, clinical notes, bounded labels. Each
//! returns `AppError::Validation` naming the field, never echoing the input.
use crate::error::{AppError, AppResult};

/// Whitespace runs collapsed to one space; 1..=max characters, no control characters.
pub fn bounded_text(field: &'static str, raw: &str, max: usize) -> AppResult<String> {
    let t = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        return Err(AppError::validation(field, "must not be empty"));
    }
    if t.chars().count() > max || t.chars().any(|c| c.is_control()) {
        return Err(AppError::validation(
            field,
            "is too long or contains control characters",
        ));
    }
    Ok(t)
}

/// Why someone acts (break-glass, archiving): at least 5 characters, at most 1000.
pub fn parse_reason(raw: &str) -> AppResult<String> {
    let t = raw.trim();
    if t.chars().count() < 5 {
        return Err(AppError::validation(
            "reason",
            "must say why, in at least 5 characters",
        ));
    }
    bounded_text("reason", t, 1000)
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

/// A statement someone writes in their own words (a request, an answer to it, a statement of
/// disagreement): clinical free text of `min..=max` characters, line breaks kept.
pub fn parse_statement(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> AppResult<String> {
    let t = parse_clinical_text(field, raw, max)?;
    if t.chars().count() < min {
        return Err(AppError::validation(field, "is too short"));
    }
    Ok(t)
}
