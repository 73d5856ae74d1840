//! The role × operation matrix in one table: every role against every operation, with the
//! outcome each must get. `None` means allowed; otherwise the error code.
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(role_operation_matrix);

struct Ids {
    p1: String,
    p2: String,
    doctor: String,
    doctor2: String,
    from: String,
    to: String,
}

fn operations(ids: &Ids) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "read own-care-team patient",
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "read allergies",
            "query($id: ID!) { patient(id: $id) { allergies { substance } } }",
            json!({ "id": ids.p1 }),
        ),
        ("list patients", "{ patients { totalCount } }", json!({})),
        (
            "read consents",
            "query($id: ID!) { consents(patientId: $id) { id } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "read access history",
            "query($id: ID!) { accessHistory(patientId: $id) { edges { cursor } } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "create patient",
            "mutation { createPatient(input: { givenName: \"Matrix\", familyName: \"Rowcase\", birthDate: \"1990-01-01\", sexAtBirth: UNKNOWN, genderIdentity: UNDISCLOSED }) { id } }",
            json!({}),
        ),
        (
            "update contact details",
            "mutation($id: ID!) { updatePatient(id: $id, expectedVersion: 1, input: { consentToContact: false }) { version } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "record allergy",
            "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"Demo pollen\", severity: MILD }) { id } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "grant consent",
            "mutation($p: ID!, $g: ID!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: [RECORDS] }) { id } }",
            json!({ "p": ids.p1, "g": ids.doctor2 }),
        ),
        (
            "assign care team",
            "mutation($p: ID!, $d: ID!) { assignCareTeam(patientId: $p, providerId: $d) }",
            json!({ "p": ids.p2, "d": ids.doctor }),
        ),
        (
            "archive patient",
            "mutation($id: ID!) { archivePatient(id: $id, reason: \"matrix check\") { id } }",
            json!({ "id": ids.p2 }),
        ),
        (
            "open emergency access",
            "mutation($id: ID!) { openEmergencyAccess(patientId: $id, reason: \"matrix emergency\") { id } }",
            json!({ "id": ids.p2 }),
        ),
        (
            "read records",
            "query($id: ID!) { patient(id: $id) { records { totalCount } } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "prescribe medication",
            "mutation($id: ID!) { prescribeMedication(patientId: $id, input: { drug: \"Demo matrixol\", dose: \"1 mg\", route: \"oral\", frequency: \"daily\", startOn: \"2026-11-01\" }) { id } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "read appointments",
            "query($id: ID!) { patient(id: $id) { appointments { totalCount } } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "provider availability",
            "query($d: ID!, $from: DateTime!, $to: DateTime!) { providerAvailability(providerId: $d, from: $from, to: $to) { startsAt } }",
            json!({ "d": ids.doctor, "from": ids.from, "to": ids.to }),
        ),
        (
            "export FHIR",
            "query($id: ID!) { patient(id: $id) { fhirExport } }",
            json!({ "id": ids.p1 }),
        ),
        (
            "records shared with me",
            "{ sharedWithMe { totalCount } }",
            json!({}),
        ),
        (
            "provider directory",
            "{ providers { totalCount } }",
            json!({}),
        ),
    ]
}

/// Expected outcome per operation (same order as `operations`), per role.
fn expected(email: &str) -> [Option<&'static str>; 19] {
    const OK: Option<&str> = None;
    const NF: Option<&str> = Some("NOT_FOUND");
    const FB: Option<&str> = Some("FORBIDDEN");
    match email {
        // read allerg list consent hist create update record grant assign archive emergency
        // | records prescribe appts availability export shared directory
        ADMIN => [
            OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, OK, FB, OK, OK, OK, OK, OK, FB, OK,
        ],
        DOCTOR => [
            OK, OK, OK, FB, FB, OK, OK, OK, FB, FB, FB, OK, OK, OK, OK, OK, OK, OK, OK,
        ],
        DOCTOR2 => [
            NF, NF, OK, NF, NF, OK, NF, NF, NF, FB, FB, OK, NF, NF, NF, OK, NF, OK, OK,
        ],
        PATIENT => [
            OK, OK, OK, OK, OK, FB, OK, FB, OK, FB, FB, FB, OK, FB, OK, OK, OK, FB, OK,
        ],
        PATIENT2 => [
            NF, NF, OK, NF, NF, FB, NF, FB, NF, FB, FB, FB, NF, FB, NF, FB, NF, FB, OK,
        ],
        RESEARCHER => [
            FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, FB, OK,
        ],
        _ => unreachable!(),
    }
}

async fn role_operation_matrix(b: Backend) {
    let mut failures = Vec::new();
    for email in [ADMIN, DOCTOR, DOCTOR2, PATIENT, PATIENT2, RESEARCHER] {
        // A fresh server per role, so one role's writes do not change another's outcome.
        let app = spawn_app(b).await;
        let ids = Ids {
            p1: app.patient_id(PATIENT).await,
            p2: app.patient_id(PATIENT2).await,
            doctor: app.provider_id(DOCTOR).await,
            doctor2: app.provider_id(DOCTOR2).await,
            from: chrono::Utc::now().to_rfc3339(),
            to: (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
        };
        let token = app.token(email).await;
        for ((name, q, v), want) in operations(&ids).into_iter().zip(expected(email)) {
            let r = app.gql(Some(&token), q, v).await;
            let got = code(&r);
            if got != want {
                failures.push(format!(
                    "{email} / {name}: expected {want:?}, got {got:?}: {r}"
                ));
            }
            if want.is_some() && r.to_string().contains("Testy") {
                failures.push(format!(
                    "{email} / {name}: refused, yet the response holds PHI: {r}"
                ));
            }
        }
        let denials = app.audit_count("outcome = 'DENIED'").await;
        let refused = expected(email).iter().filter(|e| e.is_some()).count() as i64;
        if denials < refused {
            failures.push(format!(
                "{email}: {refused} refusals but only {denials} audited denials"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
