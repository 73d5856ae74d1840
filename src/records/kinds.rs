//! The medical-record family: kinds, statuses and each kind's content (the JSON sealed in
//! `medical_records.content_enc`). Plaintext columns carry only what lists filter and order
//! by: kind, statuses, sensitivity and the event time.
use async_graphql::Enum;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::AllergySeverity;
use crate::consent::types::ConsentScope;
use crate::error::{AppError, AppResult};

/// What a medical record is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    LabResult,
    VisitNote,
    Medication,
    Allergy,
    Immunization,
    Document,
}

crate::text_enum!(RecordKind {
    LabResult => "LAB_RESULT",
    VisitNote => "VISIT_NOTE",
    Medication => "MEDICATION",
    Allergy => "ALLERGY",
    Immunization => "IMMUNIZATION",
    Document => "DOCUMENT",
});

impl RecordKind {
    /// The consent scope a care-team provider needs to read or write this kind.
    pub fn consent(self) -> ConsentScope {
        match self {
            RecordKind::LabResult | RecordKind::VisitNote => ConsentScope::Records,
            RecordKind::Medication => ConsentScope::Medications,
            RecordKind::Allergy => ConsentScope::Allergies,
            RecordKind::Immunization => ConsentScope::Immunizations,
            RecordKind::Document => ConsentScope::Documents,
        }
    }

    /// The kinds a set of consent scopes covers, in declaration order.
    pub fn covered_by(scopes: &[ConsentScope]) -> Vec<RecordKind> {
        RecordKind::VARIANTS
            .iter()
            .copied()
            .filter(|k| scopes.contains(&k.consent()))
            .collect()
    }
}

/// Where a record stands as a whole (each kind keeps its own `status` besides).
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum RecordStatus {
    /// As first recorded.
    Current,
    /// Changed since; `history` holds the earlier versions.
    Amended,
    /// Withdrawn as a mistake; kept, never deleted.
    EnteredInError,
}

crate::text_enum!(RecordStatus {
    Current => "CURRENT",
    Amended => "AMENDED",
    EnteredInError => "ENTERED_IN_ERROR",
});

/// SENSITIVE records (substance-use treatment under 42 CFR Part 2, HIV, reproductive and
/// mental health) need the patient's SENSITIVE consent besides their category's; without
/// it they are left out of every list, total and export, as if they did not exist.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum Sensitivity {
    Normal,
    Sensitive,
}

crate::text_enum!(Sensitivity { Normal => "NORMAL", Sensitive => "SENSITIVE" });

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum MedicationStatus {
    Active,
    Stopped,
}

crate::text_enum!(MedicationStatus { Active => "ACTIVE", Stopped => "STOPPED" });

/// A lab result's fields. `observedAt` is the record's event time (plaintext column).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabContent {
    /// Test code (LOINC, or the lab's own system).
    pub code: String,
    /// Code system URI, e.g. `http://loinc.org`.
    pub system: String,
    /// The test's name as the lab reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub value: String,
    /// UCUM unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<String>,
    pub abnormal: bool,
}

/// A visit note. The encounter date is the event time; the author the record's provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NoteContent {
    pub text: String,
}

/// A prescription. Its start date is the event time; the prescriber the record's provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MedicationContent {
    pub drug: String,
    pub dose: String,
    pub route: String,
    pub frequency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// An allergy or intolerance; its status (ACTIVE/RESOLVED) is a plaintext column.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllergyContent {
    pub substance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reaction: Option<String>,
    pub severity: AllergySeverity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<Uuid>,
}

/// A vaccine given. The administration date is the event time; the performer the record's
/// provider.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImmunizationContent {
    /// CVX code, checked against `records::cvx`.
    pub cvx_code: String,
    /// The CVX table's name for the code.
    pub vaccine: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dose_unit: Option<String>,
}

/// A clinical document's description; its body is a sealed `record_blobs` row.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentContent {
    pub title: String,
    pub document_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    pub content_type: String,
    pub blob_id: Uuid,
    /// Decoded size in bytes.
    pub size: u32,
}

/// A record's content, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Lab(LabContent),
    Note(NoteContent),
    Medication(MedicationContent),
    Allergy(AllergyContent),
    Immunization(ImmunizationContent),
    Document(DocumentContent),
}

impl Content {
    pub fn kind(&self) -> RecordKind {
        match self {
            Content::Lab(_) => RecordKind::LabResult,
            Content::Note(_) => RecordKind::VisitNote,
            Content::Medication(_) => RecordKind::Medication,
            Content::Allergy(_) => RecordKind::Allergy,
            Content::Immunization(_) => RecordKind::Immunization,
            Content::Document(_) => RecordKind::Document,
        }
    }

    /// The JSON sealed at rest.
    pub fn to_json(&self) -> AppResult<Vec<u8>> {
        let r = match self {
            Content::Lab(c) => serde_json::to_vec(c),
            Content::Note(c) => serde_json::to_vec(c),
            Content::Medication(c) => serde_json::to_vec(c),
            Content::Allergy(c) => serde_json::to_vec(c),
            Content::Immunization(c) => serde_json::to_vec(c),
            Content::Document(c) => serde_json::to_vec(c),
        };
        r.map_err(|_| AppError::internal_msg("record content does not encode"))
    }

    /// Read back what [`Content::to_json`] wrote. serde's message may quote the decrypted
    /// value: only its category is logged.
    pub fn from_json(kind: RecordKind, json: &[u8]) -> AppResult<Content> {
        fn de<T: serde::de::DeserializeOwned>(json: &[u8]) -> AppResult<T> {
            serde_json::from_slice(json).map_err(|e| {
                tracing::error!(category = ?e.classify(), "stored record content does not decode");
                AppError::internal_msg("stored record content does not decode")
            })
        }
        Ok(match kind {
            RecordKind::LabResult => Content::Lab(de(json)?),
            RecordKind::VisitNote => Content::Note(de(json)?),
            RecordKind::Medication => Content::Medication(de(json)?),
            RecordKind::Allergy => Content::Allergy(de(json)?),
            RecordKind::Immunization => Content::Immunization(de(json)?),
            RecordKind::Document => Content::Document(de(json)?),
        })
    }

    /// The code searched through the blind index (lab code, CVX code), normalised.
    pub fn code(&self) -> Option<String> {
        match self {
            Content::Lab(c) => Some(code_index_form(&c.code)),
            Content::Immunization(c) => Some(code_index_form(&c.cvx_code)),
            _ => None,
        }
    }
}

/// The form codes are indexed and searched in: trimmed, upper case, CVX leading zeros
/// dropped so "08" and "8" meet.
pub fn code_index_form(code: &str) -> String {
    let t = code.trim().to_uppercase();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n = t.trim_start_matches('0');
        return if n.is_empty() { "0".into() } else { n.into() };
    }
    t
}

/// Short clinical text (codes, names, units): trimmed, 1..=max characters, one line.
pub fn short_text(field: &'static str, raw: &str, max: usize) -> AppResult<String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(AppError::validation(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(AppError::validation(field, "is too long"));
    }
    if t.chars().any(char::is_control) {
        return Err(AppError::validation(
            field,
            "must be one line without control characters",
        ));
    }
    Ok(t.to_owned())
}

/// An optional [`short_text`]; an empty string counts as absent.
pub fn short_text_opt(
    field: &'static str,
    raw: Option<&str>,
    max: usize,
) -> AppResult<Option<String>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => short_text(field, t, max).map(Some),
    }
}

/// A MIME type as documents carry it: `type/subtype`, ASCII, no parameters beyond `;`.
pub fn content_type(raw: &str) -> AppResult<String> {
    let t = raw.trim().to_ascii_lowercase();
    let ok = t.len() <= 100
        && t.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"/.+-;= ".contains(&c))
        });
    if !ok {
        return Err(AppError::validation(
            "contentType",
            "must be a MIME type such as application/pdf",
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_clinical_consent() {
        for k in RecordKind::VARIANTS {
            assert!(ConsentScope::CLINICAL.contains(&k.consent()), "{k:?}");
        }
        assert_eq!(
            RecordKind::covered_by(&[ConsentScope::Records]),
            vec![RecordKind::LabResult, RecordKind::VisitNote]
        );
        assert!(RecordKind::covered_by(&[ConsentScope::Billing]).is_empty());
    }

    #[test]
    fn content_round_trips_through_json() {
        let c = Content::Medication(MedicationContent {
            drug: "Metformin 500 mg tablet".into(),
            dose: "500 mg".into(),
            route: "oral".into(),
            frequency: "twice daily".into(),
            stop_on: None,
            stop_reason: None,
        });
        let json = c.to_json().unwrap();
        assert_eq!(
            Content::from_json(RecordKind::Medication, &json).unwrap(),
            c
        );
        // A kind's content does not decode as another's.
        assert!(Content::from_json(RecordKind::LabResult, &json).is_err());
    }

    #[test]
    fn codes_meet_in_index_form() {
        assert_eq!(code_index_form(" 08 "), "8");
        assert_eq!(code_index_form("8"), "8");
        assert_eq!(code_index_form("2345-7"), "2345-7");
        assert_eq!(code_index_form("abc"), "ABC");
        assert_eq!(code_index_form("000"), "0");
    }

    #[test]
    fn text_checks_refuse_what_they_should() {
        assert!(short_text("drug", "  ", 10).is_err());
        assert!(short_text("drug", "a\nb", 10).is_err());
        assert!(short_text("drug", "abcdefghijk", 10).is_err());
        assert_eq!(short_text("drug", " x ", 10).unwrap(), "x");
        assert_eq!(short_text_opt("lot", Some(""), 10).unwrap(), None);
        assert_eq!(content_type("Application/PDF").unwrap(), "application/pdf");
        assert!(content_type("pdf").is_err());
        assert!(content_type("text/<script>").is_err());
    }
}
