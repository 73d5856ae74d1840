//! FHIR R4 representations of medical records (US Core 6.1.0 profiles): pure functions over
//! an opened [`Record`], no database and no keys. Callers decide what the viewer may see
//! before mapping; a SENSITIVE record, once mapped, carries the v3 Confidentiality label `R`.
//!
//! JSON forms: instants and dateTimes are RFC 3339 in UTC with `Z`; dates are `YYYY-MM-DD`
//! (the UTC date of the event time). Absent optional values are left out, never `null`, and
//! no empty array or string is written (FHIR JSON allows neither).
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use entity::medical_records;
use serde_json::{Number, Value, json};
use uuid::Uuid;

use super::corrections::Correction;
use super::family::Record;
use super::kinds::{
    AllergyContent, Content, DocumentContent, ImmunizationContent, LabContent, MedicationContent,
    MedicationStatus, NoteContent, RecordStatus, Sensitivity,
};
use super::types::{AllergySeverity, AllergyStatus};

const PROFILE_LAB: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab";
const PROFILE_DOCUMENT_REFERENCE: &str =
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference";
const PROFILE_MEDICATION_REQUEST: &str =
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-medicationrequest";
const PROFILE_ALLERGY: &str =
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-allergyintolerance";
const PROFILE_IMMUNIZATION: &str =
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-immunization";

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const OBSERVATION_INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";
const DOCUMENT_CATEGORY: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";
const ALLERGY_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
const CVX: &str = "http://hl7.org/fhir/sid/cvx";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// The FHIR resource for a record, by its kind. `body` is a document's decoded content; it is
/// written as the attachment's `data` only when given (and ignored for other kinds).
pub fn resource(rec: &Record, body: Option<&[u8]>) -> Value {
    let row = &rec.row;
    match &rec.content {
        Content::Lab(c) => observation(row, c),
        Content::Note(c) => visit_note(row, c),
        Content::Medication(c) => medication_request(row, c),
        Content::Allergy(c) => allergy_intolerance(row, c),
        Content::Immunization(c) => immunization(row, c),
        Content::Document(c) => document(row, c, body),
    }
}

/// A FHIR R4 `searchset` Bundle of `entries` (resources from [`resource`]), each with its
/// `fullUrl` under `base_url` (one trailing slash is dropped).
pub fn bundle(entries: Vec<Value>, base_url: &str) -> Value {
    let base = base_url.strip_suffix('/').unwrap_or(base_url);
    let total = entries.len();
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|resource| {
            let mut e = json!({ "search": { "mode": "match" } });
            if let (Some(t), Some(id)) =
                (resource["resourceType"].as_str(), resource["id"].as_str())
            {
                e["fullUrl"] = format!("{base}/{t}/{id}").into();
            }
            e["resource"] = resource;
            e
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "timestamp": instant(&Utc::now()),
    });
    if !entry.is_empty() {
        b["entry"] = Value::Array(entry);
    }
    b
}

/// The extension a disputed record carries: the canonical URL of its definition.
pub const DISAGREEMENT_EXTENSION: &str =
    "https://caregraph.dev/fhir/StructureDefinition/amendment-disagreement";

/// Attach to a record's resource, for each of `filed` (its denied correction requests with
/// a statement of disagreement), what 45 CFR 164.526(d)(5) says must go with the record:
/// the request, the denial and the patient's statement.
///
/// Represented as one complex `extension` per request on the resource itself, whatever its
/// type: it travels with the resource wherever the resource goes, needs no second resource
/// to be resolved, and every FHIR resource takes it, where `note` exists on some types only
/// (DocumentReference has none) and a `Provenance` has no place for the texts. Its parts
/// (sub-extensions): `correctionRequest` (our id), `request`, `requestedAt`, `denial`,
/// `deniedAt`, `statement`, `statementFiledAt`. Requests without a statement are skipped.
pub fn with_disagreements(resource: &mut Value, filed: &[Correction]) {
    let mut list: Vec<Value> = match resource.get_mut("extension").map(Value::take) {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    for c in filed {
        let Some(statement) = text(c.disagreement.as_deref()) else {
            continue;
        };
        let mut parts = vec![
            json!({ "url": "correctionRequest", "valueString": c.row.id.to_string() }),
            json!({ "url": "request", "valueString": c.text }),
            json!({ "url": "requestedAt", "valueDateTime": instant(&c.row.requested_at) }),
        ];
        if let Some(denial) = text(c.response.as_deref()) {
            parts.push(json!({ "url": "denial", "valueString": denial }));
        }
        if let Some(t) = &c.row.responded_at {
            parts.push(json!({ "url": "deniedAt", "valueDateTime": instant(t) }));
        }
        parts.push(json!({ "url": "statement", "valueString": statement }));
        if let Some(t) = &c.row.disagreed_at {
            parts.push(json!({ "url": "statementFiledAt", "valueDateTime": instant(t) }));
        }
        list.push(json!({ "url": DISAGREEMENT_EXTENSION, "extension": parts }));
    }
    if !list.is_empty() {
        resource["extension"] = Value::Array(list);
    }
}

// --- the kinds ------------------------------------------------------------------------------

fn observation(row: &medical_records::Model, c: &LabContent) -> Value {
    let mut r = skeleton("Observation", PROFILE_LAB, row, "subject");
    r["status"] = match record_status(row) {
        RecordStatus::Current => "final",
        RecordStatus::Amended => "amended",
        RecordStatus::EnteredInError => "entered-in-error",
    }
    .into();
    r["category"] = json!([{ "coding": [{
        "system": OBSERVATION_CATEGORY,
        "code": "laboratory",
        "display": "Laboratory",
    }] }]);
    let mut coding = json!({ "system": c.system, "code": c.code });
    if let Some(d) = text(c.display.as_deref()) {
        coding["display"] = d.into();
    }
    r["code"] = json!({ "coding": [coding] });
    r["effectiveDateTime"] = instant(&row.occurred_at).into();
    let value = c.value.trim();
    let unit = text(c.unit.as_deref());
    match (decimal(value), unit) {
        (Some(v), Some(u)) => {
            r["valueQuantity"] = json!({ "value": v, "unit": u, "system": UCUM, "code": u });
        }
        // A non-numeric value keeps its unit in the text rather than losing it.
        (None, Some(u)) if !value.is_empty() => r["valueString"] = format!("{value} {u}").into(),
        _ if !value.is_empty() => r["valueString"] = value.into(),
        _ => {}
    }
    if let Some(range) = text(c.reference_range.as_deref()) {
        r["referenceRange"] = json!([{ "text": range }]);
    }
    if c.abnormal {
        r["interpretation"] = json!([{
            "coding": [{ "system": OBSERVATION_INTERPRETATION, "code": "A", "display": "Abnormal" }],
            "text": "Abnormal",
        }]);
    }
    r
}

fn visit_note(row: &medical_records::Model, c: &NoteContent) -> Value {
    let mut r = document_reference_skeleton(row);
    r["type"] =
        json!({ "coding": [{ "system": LOINC, "code": "11506-3", "display": "Progress note" }] });
    r["category"] = json!([{ "coding": [{
        "system": DOCUMENT_CATEGORY,
        "code": "clinical-note",
        "display": "Clinical Note",
    }] }]);
    r["content"] = json!([{ "attachment": {
        "contentType": "text/plain",
        "data": STANDARD.encode(c.text.as_bytes()),
    } }]);
    r
}

fn document(row: &medical_records::Model, c: &DocumentContent, body: Option<&[u8]>) -> Value {
    let mut r = document_reference_skeleton(row);
    r["type"] = json!({ "text": c.document_type });
    if let Some(class) = text(c.classification.as_deref()) {
        r["category"] = json!([{ "text": class }]);
    }
    if let Some(title) = text(Some(&c.title)) {
        r["description"] = title.into();
    }
    let mut attachment = json!({ "contentType": c.content_type, "size": c.size });
    if let Some(title) = text(Some(&c.title)) {
        attachment["title"] = title.into();
    }
    if let Some(b) = body {
        attachment["data"] = STANDARD.encode(b).into();
    }
    r["content"] = json!([{ "attachment": attachment }]);
    r
}

/// What visit notes and documents share: statuses, date, author, period.
fn document_reference_skeleton(row: &medical_records::Model) -> Value {
    let mut r = skeleton(
        "DocumentReference",
        PROFILE_DOCUMENT_REFERENCE,
        row,
        "subject",
    );
    let status = record_status(row);
    r["status"] = match status {
        RecordStatus::EnteredInError => "entered-in-error",
        RecordStatus::Current | RecordStatus::Amended => "current",
    }
    .into();
    r["docStatus"] = match status {
        RecordStatus::Amended => "amended",
        RecordStatus::Current | RecordStatus::EnteredInError => "final",
    }
    .into();
    r["date"] = instant(&row.recorded_at).into();
    if let Some(p) = row.provider_id {
        r["author"] = json!([practitioner(p)]);
    }
    r["context"] = json!({ "period": { "start": date(&row.occurred_at) } });
    r
}

fn medication_request(row: &medical_records::Model, c: &MedicationContent) -> Value {
    let mut r = skeleton(
        "MedicationRequest",
        PROFILE_MEDICATION_REQUEST,
        row,
        "subject",
    );
    let stopped =
        row.status.as_deref().and_then(MedicationStatus::parse) == Some(MedicationStatus::Stopped);
    r["status"] = match (record_status(row), stopped) {
        (RecordStatus::EnteredInError, _) => "entered-in-error",
        (_, true) => "stopped",
        (_, false) => "active",
    }
    .into();
    if stopped && let Some(reason) = text(c.stop_reason.as_deref()) {
        r["statusReason"] = json!({ "text": reason });
    }
    r["intent"] = "order".into();
    r["medicationCodeableConcept"] = json!({ "text": c.drug });
    r["authoredOn"] = date(&row.occurred_at).into();
    if let Some(p) = row.provider_id {
        r["requester"] = practitioner(p);
    }
    let dose = text(Some(&c.dose));
    let route = text(Some(&c.route));
    let frequency = text(Some(&c.frequency));
    let mut dosage = json!({});
    let words: Vec<&str> = [dose, route, frequency].into_iter().flatten().collect();
    if !words.is_empty() {
        dosage["text"] = words.join(" ").into();
    }
    if let Some(f) = frequency {
        dosage["timing"] = json!({ "code": { "text": f } });
    }
    if let Some(rt) = route {
        dosage["route"] = json!({ "text": rt });
    }
    if dosage.as_object().is_some_and(|o| !o.is_empty()) {
        r["dosageInstruction"] = json!([dosage]);
    }
    let mut period = json!({ "start": date(&row.occurred_at) });
    if let Some(end) = c.stop_on {
        period["end"] = end.to_string().into();
    }
    r["dispenseRequest"] = json!({ "validityPeriod": period });
    r
}

fn allergy_intolerance(row: &medical_records::Model, c: &AllergyContent) -> Value {
    let mut r = skeleton("AllergyIntolerance", PROFILE_ALLERGY, row, "patient");
    if record_status(row) == RecordStatus::EnteredInError {
        // ait-2: no clinicalStatus when the verification status is entered-in-error.
        r["verificationStatus"] =
            coded(ALLERGY_VERIFICATION, "entered-in-error", "Entered in Error");
    } else {
        r["clinicalStatus"] = match row.status.as_deref().and_then(AllergyStatus::parse) {
            Some(AllergyStatus::Resolved) => coded(ALLERGY_CLINICAL, "resolved", "Resolved"),
            _ => coded(ALLERGY_CLINICAL, "active", "Active"),
        };
        r["verificationStatus"] = coded(ALLERGY_VERIFICATION, "confirmed", "Confirmed");
    }
    r["code"] = json!({ "text": c.substance });
    r["criticality"] = match c.severity {
        AllergySeverity::Severe => "high",
        AllergySeverity::Mild | AllergySeverity::Moderate => "low",
    }
    .into();
    if let Some(reaction) = text(c.reaction.as_deref()) {
        let severity = match c.severity {
            AllergySeverity::Mild => "mild",
            AllergySeverity::Moderate => "moderate",
            AllergySeverity::Severe => "severe",
        };
        r["reaction"] = json!([{ "manifestation": [{ "text": reaction }], "severity": severity }]);
    }
    r["recordedDate"] = instant(&row.recorded_at).into();
    r
}

fn immunization(row: &medical_records::Model, c: &ImmunizationContent) -> Value {
    let mut r = skeleton("Immunization", PROFILE_IMMUNIZATION, row, "patient");
    r["status"] = match record_status(row) {
        RecordStatus::EnteredInError => "entered-in-error",
        RecordStatus::Current | RecordStatus::Amended => "completed",
    }
    .into();
    let mut coding = json!({ "system": CVX, "code": c.cvx_code.trim() });
    if let Some(v) = text(Some(&c.vaccine)) {
        coding["display"] = v.into();
    }
    r["vaccineCode"] = json!({ "coding": [coding] });
    r["occurrenceDateTime"] = instant(&row.occurred_at).into();
    r["primarySource"] = true.into();
    if let Some(lot) = text(c.lot.as_deref()) {
        r["lotNumber"] = lot.into();
    }
    if let Some(site) = text(c.site.as_deref()) {
        r["site"] = json!({ "text": site });
    }
    if let Some(route) = text(c.route.as_deref()) {
        r["route"] = json!({ "text": route });
    }
    let dose = text(c.dose.as_deref());
    let unit = text(c.dose_unit.as_deref());
    let value = dose.and_then(decimal);
    let mut quantity = json!({});
    if let Some(v) = &value {
        quantity["value"] = v.clone().into();
    }
    if let Some(u) = unit {
        quantity["unit"] = u.into();
    }
    if quantity.as_object().is_some_and(|o| !o.is_empty()) {
        r["doseQuantity"] = quantity;
    }
    // A dose that is not a number cannot be a Quantity's value; keep it as a note.
    if let (Some(d), None) = (dose, &value) {
        let note = match unit {
            Some(u) => format!("Dose: {d} {u}"),
            None => format!("Dose: {d}"),
        };
        r["note"] = json!([{ "text": note }]);
    }
    if let Some(p) = row.provider_id {
        r["performer"] = json!([{ "actor": practitioner(p) }]);
    }
    r
}

// --- shared pieces --------------------------------------------------------------------------

/// `resourceType`, `id`, `meta` and the patient reference under `patient_field`.
fn skeleton(
    resource_type: &str,
    profile: &str,
    row: &medical_records::Model,
    patient_field: &str,
) -> Value {
    let mut meta = json!({
        "versionId": row.version.to_string(),
        "lastUpdated": instant(&row.updated_at),
        "profile": [profile],
    });
    // Fail closed: anything but NORMAL is labelled restricted.
    if row.sensitivity != Sensitivity::Normal.as_str() {
        meta["security"] =
            json!([{ "system": CONFIDENTIALITY, "code": "R", "display": "restricted" }]);
    }
    let mut r = json!({
        "resourceType": resource_type,
        "id": row.id.to_string(),
        "meta": meta,
    });
    r[patient_field] = json!({ "reference": format!("Patient/{}", row.patient_id) });
    r
}

/// The stored record status; text that is not one of ours reads as CURRENT.
fn record_status(row: &medical_records::Model) -> RecordStatus {
    RecordStatus::parse(&row.record_status).unwrap_or(RecordStatus::Current)
}

fn practitioner(id: Uuid) -> Value {
    json!({ "reference": format!("Practitioner/{id}") })
}

fn coded(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }] })
}

/// An optional text, trimmed, absent when empty.
fn text(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|t| !t.is_empty())
}

/// FHIR `instant`/`dateTime`: RFC 3339 in UTC with `Z`, fractional seconds only when present.
fn instant(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// FHIR `date`: the UTC calendar date.
fn date(t: &DateTime<Utc>) -> String {
    t.date_naive().format("%Y-%m-%d").to_string()
}

/// A plain decimal (`-?digits[.digits]`) as a JSON number: integers stay integers, others go
/// through `f64` (so trailing zeros, e.g. `7.10`, are not kept). Anything else (`<5`, `1e3`,
/// `positive`, `NaN`) is not a decimal here.
fn decimal(s: &str) -> Option<Number> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    if frac.is_none()
        && let Ok(n) = s.parse::<i64>()
    {
        return Some(n.into());
    }
    s.parse::<f64>().ok().and_then(Number::from_f64)
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::records::kinds::RecordKind;

    const PATIENT: Uuid = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    const RECORD: Uuid = Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222);
    const PROVIDER: Uuid = Uuid::from_u128(0x3333_3333_3333_4333_8333_3333_3333_3333);
    const USER: Uuid = Uuid::from_u128(0x4444_4444_4444_4444_8444_4444_4444_4444);

    fn record(content: Content) -> Record {
        let kind = content.kind();
        let status = match kind {
            RecordKind::Allergy => Some(AllergyStatus::Active.as_str().to_owned()),
            RecordKind::Medication => Some(MedicationStatus::Active.as_str().to_owned()),
            _ => None,
        };
        Record {
            row: medical_records::Model {
                id: RECORD,
                patient_id: PATIENT,
                kind: kind.as_str().to_owned(),
                status,
                record_status: RecordStatus::Current.as_str().to_owned(),
                sensitivity: Sensitivity::Normal.as_str().to_owned(),
                version: 3,
                occurred_at: Utc.with_ymd_and_hms(2026, 3, 4, 9, 15, 0).unwrap(),
                recorded_at: Utc.with_ymd_and_hms(2026, 3, 5, 10, 0, 0).unwrap(),
                recorded_by: USER,
                provider_id: Some(PROVIDER),
                code_bidx: None,
                content_enc: Vec::new(),
                updated_at: Utc.with_ymd_and_hms(2026, 3, 6, 11, 30, 0).unwrap(),
                updated_by: USER,
            },
            content,
        }
    }

    fn with_status(mut rec: Record, s: RecordStatus) -> Record {
        rec.row.record_status = s.as_str().to_owned();
        rec
    }

    fn lab(value: &str, unit: Option<&str>) -> Record {
        record(Content::Lab(LabContent {
            code: "2345-7".into(),
            system: LOINC.into(),
            display: Some("Glucose [Mass/volume] in Serum or Plasma".into()),
            value: value.into(),
            unit: unit.map(Into::into),
            reference_range: Some("70-99 mg/dL".into()),
            abnormal: true,
        }))
    }

    fn note() -> Record {
        record(Content::Note(NoteContent {
            text: "Seen for follow-up.".into(),
        }))
    }

    fn medication() -> Record {
        record(Content::Medication(MedicationContent {
            drug: "Metformin 500 mg tablet".into(),
            dose: "500 mg".into(),
            route: "oral".into(),
            frequency: "twice daily".into(),
            stop_on: None,
            stop_reason: None,
        }))
    }

    fn allergy(reaction: Option<&str>, severity: AllergySeverity) -> Record {
        record(Content::Allergy(AllergyContent {
            substance: "Penicillin".into(),
            reaction: reaction.map(Into::into),
            severity,
            resolved_at: None,
            resolved_by: None,
        }))
    }

    fn vaccine(dose: Option<&str>) -> Record {
        record(Content::Immunization(ImmunizationContent {
            cvx_code: "208".into(),
            vaccine: "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose".into(),
            lot: Some("EK5730".into()),
            site: Some("left deltoid".into()),
            route: Some("intramuscular".into()),
            dose: dose.map(Into::into),
            dose_unit: Some("mL".into()),
        }))
    }

    fn doc(classification: Option<&str>) -> Record {
        record(Content::Document(DocumentContent {
            title: "Discharge summary".into(),
            document_type: "Discharge summary".into(),
            classification: classification.map(Into::into),
            content_type: "application/pdf".into(),
            blob_id: Uuid::from_u128(5),
            size: 4,
        }))
    }

    fn profile(r: &Value) -> &str {
        r["meta"]["profile"][0].as_str().unwrap()
    }

    /// No `null` anywhere (absent values are left out), and no empty array or string.
    fn assert_no_empties(v: &Value) {
        match v {
            Value::Null => panic!("null in resource"),
            Value::String(s) => assert!(!s.is_empty(), "empty string"),
            Value::Array(a) => {
                assert!(!a.is_empty(), "empty array");
                a.iter().for_each(assert_no_empties);
            }
            Value::Object(o) => o.values().for_each(assert_no_empties),
            _ => {}
        }
    }

    #[test]
    fn every_resource_has_id_meta_and_patient_reference() {
        let cases = [
            (lab("98", Some("mg/dL")), "Observation", "subject"),
            (note(), "DocumentReference", "subject"),
            (medication(), "MedicationRequest", "subject"),
            (
                allergy(None, AllergySeverity::Mild),
                "AllergyIntolerance",
                "patient",
            ),
            (vaccine(Some("0.3")), "Immunization", "patient"),
            (doc(None), "DocumentReference", "subject"),
        ];
        for (rec, resource_type, field) in cases {
            let r = resource(&rec, None);
            assert_eq!(r["resourceType"], resource_type);
            assert_eq!(r["id"], RECORD.to_string());
            assert_eq!(
                r[field],
                json!({ "reference": format!("Patient/{PATIENT}") })
            );
            assert_eq!(r["meta"]["versionId"], "3");
            assert_eq!(r["meta"]["lastUpdated"], "2026-03-06T11:30:00Z");
            assert!(r["meta"].get("security").is_none(), "{resource_type}");
            assert_no_empties(&r);
        }
    }

    #[test]
    fn sensitive_records_carry_the_restricted_label() {
        let mut rec = note();
        rec.row.sensitivity = Sensitivity::Sensitive.as_str().to_owned();
        let r = resource(&rec, None);
        assert_eq!(
            r["meta"]["security"],
            json!([{
                "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                "code": "R",
                "display": "restricted",
            }])
        );
    }

    #[test]
    fn lab_is_a_us_core_lab_observation() {
        let r = resource(&lab("98", Some("mg/dL")), None);
        assert_eq!(profile(&r), PROFILE_LAB);
        assert_eq!(r["status"], "final");
        assert_eq!(
            r["category"][0]["coding"][0]["system"],
            OBSERVATION_CATEGORY
        );
        assert_eq!(r["category"][0]["coding"][0]["code"], "laboratory");
        assert_eq!(
            r["code"]["coding"][0],
            json!({
                "system": "http://loinc.org",
                "code": "2345-7",
                "display": "Glucose [Mass/volume] in Serum or Plasma",
            })
        );
        assert_eq!(r["effectiveDateTime"], "2026-03-04T09:15:00Z");
        assert_eq!(r["referenceRange"], json!([{ "text": "70-99 mg/dL" }]));
        let interp = &r["interpretation"][0]["coding"][0];
        assert_eq!(interp["system"], OBSERVATION_INTERPRETATION);
        assert_eq!(interp["code"], "A");
    }

    #[test]
    fn lab_value_is_a_quantity_when_numeric_with_a_unit() {
        let r = resource(&lab("5.4", Some("mmol/L")), None);
        assert_eq!(
            r["valueQuantity"],
            json!({ "value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L" })
        );
        assert!(r.get("valueString").is_none());
        // Integers stay integers.
        let r = resource(&lab("98", Some("mg/dL")), None);
        assert_eq!(r["valueQuantity"]["value"], json!(98));
    }

    #[test]
    fn lab_value_is_a_string_otherwise() {
        let r = resource(&lab("positive", None), None);
        assert_eq!(r["valueString"], "positive");
        assert!(r.get("valueQuantity").is_none());
        // Numeric without a unit.
        let r = resource(&lab("98", None), None);
        assert_eq!(r["valueString"], "98");
        // Not a plain decimal, with a unit: the unit stays in the text.
        let r = resource(&lab("<5", Some("mg/L")), None);
        assert_eq!(r["valueString"], "<5 mg/L");
        assert!(r.get("valueQuantity").is_none());
    }

    #[test]
    fn lab_normal_result_has_no_interpretation() {
        let mut rec = lab("90", Some("mg/dL"));
        if let Content::Lab(c) = &mut rec.content {
            c.abnormal = false;
            c.display = None;
            c.reference_range = None;
        }
        let r = resource(&rec, None);
        assert!(r.get("interpretation").is_none());
        assert!(r.get("referenceRange").is_none());
        assert!(r["code"]["coding"][0].get("display").is_none());
    }

    #[test]
    fn lab_status_follows_record_status() {
        let amended = resource(&with_status(lab("1", None), RecordStatus::Amended), None);
        assert_eq!(amended["status"], "amended");
        let error = resource(
            &with_status(lab("1", None), RecordStatus::EnteredInError),
            None,
        );
        assert_eq!(error["status"], "entered-in-error");
    }

    #[test]
    fn note_is_a_progress_note_document_reference() {
        let r = resource(&note(), None);
        assert_eq!(profile(&r), PROFILE_DOCUMENT_REFERENCE);
        assert_eq!(
            r["type"]["coding"][0],
            json!({ "system": "http://loinc.org", "code": "11506-3", "display": "Progress note" })
        );
        assert_eq!(r["category"][0]["coding"][0]["system"], DOCUMENT_CATEGORY);
        assert_eq!(r["category"][0]["coding"][0]["code"], "clinical-note");
        assert_eq!(r["date"], "2026-03-05T10:00:00Z");
        assert_eq!(r["context"]["period"]["start"], "2026-03-04");
        assert_eq!(
            r["author"],
            json!([{ "reference": format!("Practitioner/{PROVIDER}") }])
        );
        let att = &r["content"][0]["attachment"];
        assert_eq!(att["contentType"], "text/plain");
        assert_eq!(att["data"], STANDARD.encode("Seen for follow-up."));
        assert_eq!(r["status"], "current");
        assert_eq!(r["docStatus"], "final");
    }

    #[test]
    fn note_without_provider_has_no_author() {
        let mut rec = note();
        rec.row.provider_id = None;
        assert!(resource(&rec, None).get("author").is_none());
    }

    #[test]
    fn note_status_follows_record_status() {
        let r = resource(&with_status(note(), RecordStatus::Amended), None);
        assert_eq!(
            (r["status"].as_str(), r["docStatus"].as_str()),
            (Some("current"), Some("amended"))
        );
        let r = resource(&with_status(note(), RecordStatus::EnteredInError), None);
        assert_eq!(r["status"], "entered-in-error");
    }

    #[test]
    fn medication_is_a_us_core_medication_request() {
        let r = resource(&medication(), None);
        assert_eq!(profile(&r), PROFILE_MEDICATION_REQUEST);
        assert_eq!(r["status"], "active");
        assert_eq!(r["intent"], "order");
        assert_eq!(
            r["medicationCodeableConcept"],
            json!({ "text": "Metformin 500 mg tablet" })
        );
        assert_eq!(r["authoredOn"], "2026-03-04");
        assert_eq!(
            r["requester"],
            json!({ "reference": format!("Practitioner/{PROVIDER}") })
        );
        assert_eq!(
            r["dosageInstruction"],
            json!([{
                "text": "500 mg oral twice daily",
                "route": { "text": "oral" },
                "timing": { "code": { "text": "twice daily" } },
            }])
        );
        assert_eq!(
            r["dispenseRequest"]["validityPeriod"],
            json!({ "start": "2026-03-04" })
        );
        assert!(r.get("statusReason").is_none());
    }

    #[test]
    fn stopped_medication_has_an_end_and_a_reason() {
        let mut rec = medication();
        rec.row.status = Some(MedicationStatus::Stopped.as_str().to_owned());
        if let Content::Medication(c) = &mut rec.content {
            c.stop_on = Some(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap());
            c.stop_reason = Some("GI upset".into());
        }
        let r = resource(&rec, None);
        assert_eq!(r["status"], "stopped");
        assert_eq!(r["statusReason"], json!({ "text": "GI upset" }));
        assert_eq!(
            r["dispenseRequest"]["validityPeriod"],
            json!({ "start": "2026-03-04", "end": "2026-04-01" })
        );
    }

    #[test]
    fn medication_status_follows_record_status() {
        let r = resource(&with_status(medication(), RecordStatus::Amended), None);
        assert_eq!(r["status"], "active");
        let mut rec = with_status(medication(), RecordStatus::EnteredInError);
        rec.row.status = Some(MedicationStatus::Stopped.as_str().to_owned());
        assert_eq!(resource(&rec, None)["status"], "entered-in-error");
    }

    #[test]
    fn allergy_is_a_us_core_allergy_intolerance() {
        let r = resource(&allergy(Some("Hives"), AllergySeverity::Moderate), None);
        assert_eq!(profile(&r), PROFILE_ALLERGY);
        assert_eq!(
            r["clinicalStatus"],
            coded(ALLERGY_CLINICAL, "active", "Active")
        );
        assert_eq!(
            r["verificationStatus"],
            coded(ALLERGY_VERIFICATION, "confirmed", "Confirmed")
        );
        assert_eq!(r["code"], json!({ "text": "Penicillin" }));
        assert_eq!(
            r["reaction"],
            json!([{ "manifestation": [{ "text": "Hives" }], "severity": "moderate" }])
        );
        assert_eq!(r["criticality"], "low");
        assert_eq!(r["recordedDate"], "2026-03-05T10:00:00Z");
    }

    #[test]
    fn allergy_severity_without_reaction_is_criticality_only() {
        let r = resource(&allergy(None, AllergySeverity::Severe), None);
        assert_eq!(r["criticality"], "high");
        assert!(r.get("reaction").is_none());
    }

    #[test]
    fn resolved_allergy_is_clinically_resolved() {
        let mut rec = allergy(None, AllergySeverity::Mild);
        rec.row.status = Some(AllergyStatus::Resolved.as_str().to_owned());
        let r = resource(&rec, None);
        assert_eq!(r["clinicalStatus"]["coding"][0]["code"], "resolved");
    }

    #[test]
    fn allergy_entered_in_error_drops_clinical_status() {
        let rec = with_status(
            allergy(None, AllergySeverity::Mild),
            RecordStatus::EnteredInError,
        );
        let r = resource(&rec, None);
        assert_eq!(
            r["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        assert_eq!(
            r["verificationStatus"]["coding"][0]["system"],
            ALLERGY_VERIFICATION
        );
        assert!(r.get("clinicalStatus").is_none());
        let amended = resource(
            &with_status(allergy(None, AllergySeverity::Mild), RecordStatus::Amended),
            None,
        );
        assert_eq!(
            amended["verificationStatus"]["coding"][0]["code"],
            "confirmed"
        );
    }

    #[test]
    fn immunization_is_a_us_core_immunization() {
        let r = resource(&vaccine(Some("0.3")), None);
        assert_eq!(profile(&r), PROFILE_IMMUNIZATION);
        assert_eq!(r["status"], "completed");
        assert_eq!(
            r["vaccineCode"]["coding"][0],
            json!({
                "system": "http://hl7.org/fhir/sid/cvx",
                "code": "208",
                "display": "COVID-19, mRNA, LNP-S, PF, 30 mcg/0.3 mL dose",
            })
        );
        assert_eq!(r["occurrenceDateTime"], "2026-03-04T09:15:00Z");
        assert_eq!(r["primarySource"], true);
        assert_eq!(r["lotNumber"], "EK5730");
        assert_eq!(r["site"], json!({ "text": "left deltoid" }));
        assert_eq!(r["route"], json!({ "text": "intramuscular" }));
        assert_eq!(r["doseQuantity"], json!({ "value": 0.3, "unit": "mL" }));
        assert_eq!(
            r["performer"],
            json!([{ "actor": { "reference": format!("Practitioner/{PROVIDER}") } }])
        );
        assert!(r.get("note").is_none());
    }

    #[test]
    fn immunization_dose_that_is_not_a_number_is_kept_as_a_note() {
        let r = resource(&vaccine(Some("half")), None);
        assert_eq!(r["doseQuantity"], json!({ "unit": "mL" }));
        assert_eq!(r["note"], json!([{ "text": "Dose: half mL" }]));
    }

    #[test]
    fn immunization_status_follows_record_status() {
        let r = resource(&with_status(vaccine(None), RecordStatus::Amended), None);
        assert_eq!(r["status"], "completed");
        let r = resource(
            &with_status(vaccine(None), RecordStatus::EnteredInError),
            None,
        );
        assert_eq!(r["status"], "entered-in-error");
    }

    #[test]
    fn document_is_a_document_reference_with_its_description() {
        let r = resource(&doc(Some("Hospital records")), None);
        assert_eq!(profile(&r), PROFILE_DOCUMENT_REFERENCE);
        assert_eq!(r["type"], json!({ "text": "Discharge summary" }));
        assert_eq!(r["category"], json!([{ "text": "Hospital records" }]));
        assert_eq!(r["description"], "Discharge summary");
        assert_eq!(r["status"], "current");
        assert_eq!(r["docStatus"], "final");
        let r = resource(&doc(None), None);
        assert!(r.get("category").is_none());
    }

    #[test]
    fn document_attachment_has_data_only_with_a_body() {
        let without = resource(&doc(None), None);
        assert_eq!(
            without["content"][0]["attachment"],
            json!({ "contentType": "application/pdf", "title": "Discharge summary", "size": 4 })
        );
        let with = resource(&doc(None), Some(b"%PDF"));
        assert_eq!(with["content"][0]["attachment"]["data"], "JVBERg==");
        assert_eq!(with["content"][0]["attachment"]["size"], 4);
    }

    #[test]
    fn document_status_follows_record_status() {
        let r = resource(&with_status(doc(None), RecordStatus::Amended), None);
        assert_eq!(r["docStatus"], "amended");
        let r = resource(&with_status(doc(None), RecordStatus::EnteredInError), None);
        assert_eq!(r["status"], "entered-in-error");
    }

    #[test]
    fn bundle_is_a_searchset_with_full_urls() {
        let entries = vec![
            resource(&lab("1", None), None),
            resource(&allergy(None, AllergySeverity::Mild), None),
        ];
        let b = bundle(entries, "https://fhir.example.org/r4/");
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 2);
        assert!(DateTime::parse_from_rfc3339(b["timestamp"].as_str().unwrap()).is_ok());
        assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            b["entry"][0]["fullUrl"],
            format!("https://fhir.example.org/r4/Observation/{RECORD}")
        );
        assert_eq!(
            b["entry"][1]["fullUrl"],
            format!("https://fhir.example.org/r4/AllergyIntolerance/{RECORD}")
        );
        assert_eq!(
            b["entry"][1]["resource"]["resourceType"],
            "AllergyIntolerance"
        );
        assert_eq!(b["entry"][0]["search"], json!({ "mode": "match" }));
    }

    #[test]
    fn bundle_base_without_slash_and_empty_bundle() {
        let b = bundle(vec![resource(&note(), None)], "https://fhir.example.org");
        assert_eq!(
            b["entry"][0]["fullUrl"],
            format!("https://fhir.example.org/DocumentReference/{RECORD}")
        );
        let empty = bundle(Vec::new(), "https://fhir.example.org");
        assert_eq!(empty["total"], 0);
        assert!(empty.get("entry").is_none());
    }

    #[test]
    fn decimals_are_plain_numbers_only() {
        assert_eq!(decimal("98"), Some(98.into()));
        assert_eq!(decimal("-0.5"), Number::from_f64(-0.5));
        assert_eq!(decimal(" 7.25 "), Number::from_f64(7.25));
        for s in [
            "", "-", ".5", "5.", "1e3", "+5", "NaN", "inf", "<5", "5 mg", "1.2.3",
        ] {
            assert_eq!(decimal(s), None, "{s:?}");
        }
    }

    #[test]
    fn instants_use_z_and_keep_fractions() {
        let t = Utc.timestamp_micros(1_795_815_000_123_456).unwrap();
        assert!(instant(&t).ends_with(".123456Z"));
        assert_eq!(date(&t), t.date_naive().to_string());
    }

    fn disputed(disagreement: Option<&str>) -> Correction {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 8, 0, 0).unwrap();
        Correction {
            row: entity::correction_requests::Model {
                id: Uuid::from_u128(9),
                record_id: RECORD,
                patient_id: PATIENT,
                requested_by: USER,
                requested_at: at,
                text_enc: Vec::new(),
                status: "DENIED".into(),
                responded_by: Some(USER),
                responded_at: Some(at + chrono::Duration::days(1)),
                response_enc: None,
                amended_version: None,
                disagreement_enc: None,
                disagreed_at: disagreement.map(|_| at + chrono::Duration::days(2)),
            },
            status: crate::records::types::CorrectionStatus::Denied,
            text: "The value is from another visit.".into(),
            response: Some("The value was checked against the lab report.".into()),
            disagreement: disagreement.map(Into::into),
        }
    }

    #[test]
    fn a_disputed_record_carries_request_denial_and_statement() {
        for rec in [lab("98", Some("mg/dL")), note(), doc(None)] {
            let mut r = resource(&rec, None);
            with_disagreements(
                &mut r,
                &[disputed(Some("I still disagree.")), disputed(None)],
            );
            let ext = r["extension"].as_array().unwrap();
            // The request without a statement adds nothing.
            assert_eq!(ext.len(), 1);
            assert_eq!(ext[0]["url"], DISAGREEMENT_EXTENSION);
            let part = |name: &str| {
                ext[0]["extension"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["url"] == name)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            assert_eq!(
                part("request")["valueString"],
                "The value is from another visit."
            );
            assert_eq!(
                part("denial")["valueString"],
                "The value was checked against the lab report."
            );
            assert_eq!(part("statement")["valueString"], "I still disagree.");
            assert_eq!(part("deniedAt")["valueDateTime"], "2026-03-08T08:00:00Z");
            assert_eq!(
                part("statementFiledAt")["valueDateTime"],
                "2026-03-09T08:00:00Z"
            );
            assert_no_empties(&r);
        }
        let mut r = resource(&note(), None);
        with_disagreements(&mut r, &[disputed(None)]);
        assert!(r.get("extension").is_none());
    }
}
