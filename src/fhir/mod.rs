//! FHIR R4 representations of Caregraph resources. Pure mapping: callers fill the plain
//! input structs below from their own (decrypted) types.
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

/// A postal address, as a FHIR `Address` is built from it.
#[derive(Clone, Copy, Default)]
pub struct Address<'a> {
    pub line1: Option<&'a str>,
    pub line2: Option<&'a str>,
    pub city: Option<&'a str>,
    pub state_province: Option<&'a str>,
    pub postal_code: Option<&'a str>,
    pub country: Option<&'a str>,
}

/// Decrypted demographics a FHIR `Patient` is built from.
pub struct PatientFields<'a> {
    pub id: Uuid,
    pub mrn: String,
    pub given_name: String,
    pub middle_name: Option<String>,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex_at_birth: &'a str,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address<'a>>,
    pub preferred_language: Option<String>,
    pub active: bool,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

/// FHIR administrative gender from sex at birth (FHIR's `gender` is administrative).
fn administrative_gender(sex: &str) -> &'static str {
    match sex {
        "FEMALE" => "female",
        "MALE" => "male",
        "INTERSEX" => "other",
        _ => "unknown",
    }
}

pub fn patient_resource(p: &PatientFields<'_>) -> Value {
    let mut given = vec![p.given_name.clone()];
    if let Some(m) = &p.middle_name {
        given.push(m.clone());
    }
    let mut telecom = Vec::new();
    if let Some(phone) = &p.phone {
        telecom.push(json!({ "system": "phone", "value": phone }));
    }
    if let Some(email) = &p.email {
        telecom.push(json!({ "system": "email", "value": email }));
    }
    let mut r = json!({
        "resourceType": "Patient",
        "id": p.id.to_string(),
        "meta": { "versionId": p.version.to_string(), "lastUpdated": p.updated_at.to_rfc3339() },
        "identifier": [{
            "use": "usual",
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] },
            "system": "urn:caregraph:mrn",
            "value": p.mrn,
        }],
        "active": p.active,
        "name": [{ "use": "official", "family": p.family_name, "given": given }],
        "gender": administrative_gender(p.sex_at_birth),
        "birthDate": p.birth_date.to_string(),
    });
    if !telecom.is_empty() {
        r["telecom"] = Value::Array(telecom);
    }
    if let Some(a) = &p.address {
        let lines: Vec<&str> = a.line1.iter().chain(a.line2.iter()).copied().collect();
        r["address"] = json!([{
            "line": lines,
            "city": a.city,
            "state": a.state_province,
            "postalCode": a.postal_code,
            "country": a.country,
        }]);
    }
    if let Some(lang) = &p.preferred_language {
        r["communication"] = json!([{ "language": { "coding": [{ "system": "urn:ietf:bcp:47", "code": lang }] }, "preferred": true }]);
    }
    r
}
