//! Hostile paths through `access`: writes under break-glass, re-opened emergency access,
//! archived and invisible patients asked about before consent, and person names carrying
//! invisible, reordering or markup characters.
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    break_glass_is_read_only_for_clinical_writes,
    reopening_live_break_glass_is_conflict,
    archived_patient_is_not_found_before_consent,
    invisible_patient_is_not_found_before_consent,
    person_names_refuse_invisible_and_markup_characters,
);

const READ_ALLERGIES: &str =
    "query($id: ID!) { patient(id: $id) { id givenName allergies { id substance status } } }";
const RECORD: &str = "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"Demo shellfish\", severity: SEVERE }) { id } }";
const RESOLVE: &str = "mutation($id: ID!) { resolveAllergy(id: $id) { id status } }";
const OPEN: &str = "mutation($id: ID!, $r: String!) { openEmergencyAccess(patientId: $id, reason: $r) { id expiresAt } }";
const REASON: &str = "Unresponsive on arrival, chart needed";

/// `SELECT COUNT(*)` of any query, straight from the test server's database.
async fn count(app: &TestApp, from_where: &str) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &app.state.db;
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {from_where}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

/// The seeded allergy of the demo patient, read as ADMIN.
async fn seeded_allergy(app: &TestApp, pid: &str) -> String {
    let admin = app.token(ADMIN).await;
    let r = app
        .gql(Some(&admin), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    r["data"]["patient"]["allergies"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("seeded allergy: {r}"))
        .to_owned()
}

fn message(r: &Value) -> &str {
    r["errors"][0]["message"].as_str().unwrap_or_default()
}

async fn break_glass_is_read_only_for_clinical_writes(b: Backend) {
    let app = spawn_app(b).await;
    let doc2 = app.token(DOCTOR2).await;
    let pid = app.patient_id(PATIENT).await;
    let allergy = seeded_allergy(&app, &pid).await;
    let r = app
        .gql(Some(&doc2), OPEN, json!({ "id": pid, "r": REASON }))
        .await;
    assert!(r["data"]["openEmergencyAccess"]["id"].is_string(), "{r}");

    // Break-glass reads.
    let r = app
        .gql(Some(&doc2), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    assert_eq!(
        r["data"]["patient"]["allergies"][0]["substance"], "Demo peanut protein",
        "{r}"
    );
    let allergies_before = count(&app, "medical_records WHERE kind = 'ALLERGY'").await;

    // It writes nothing clinical: both writes FORBIDDEN, saying why, each denial audited.
    let r = app.gql(Some(&doc2), RECORD, json!({ "id": pid })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert!(message(&r).contains("read-only"), "{r}");
    assert!(r["data"].is_null(), "{r}");
    let r = app
        .gql(Some(&doc2), RESOLVE, json!({ "id": allergy }))
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert!(message(&r).contains("read-only"), "{r}");
    assert!(!r.to_string().contains("peanut"), "{r}");
    // Nor demographics (the same rule, from the same place).
    let upd = "mutation($id: ID!) { updatePatient(id: $id, expectedVersion: 1, input: { consentToContact: false }) { id } }";
    let r = app.gql(Some(&doc2), upd, json!({ "id": pid })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert!(message(&r).contains("read-only"), "{r}");

    // Nothing was written: no new allergy, the seeded one still active, no write audited.
    assert_eq!(
        count(&app, "medical_records WHERE kind = 'ALLERGY'").await,
        allergies_before
    );
    assert_eq!(
        count(
            &app,
            "medical_records WHERE kind = 'ALLERGY' AND status = 'RESOLVED'"
        )
        .await,
        0
    );
    let r = app
        .gql(Some(&doc2), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    let list = r["data"]["patient"]["allergies"].as_array().expect("{r}");
    assert_eq!(list.len(), 1, "{r}");
    assert_eq!(list[0]["status"], "ACTIVE", "{r}");
    assert_eq!(count(&app, "patients WHERE version <> 1").await, 0);
    for action in ["record.create", "record.resolve", "patient.update"] {
        assert_eq!(
            app.audit_count(&format!(
                "action = '{action}' AND outcome = 'DENIED' AND actor_role = 'PROVIDER'"
            ))
            .await,
            1,
            "{action}"
        );
        assert_eq!(
            app.audit_count(&format!("action = '{action}' AND outcome <> 'DENIED'"))
                .await,
            0,
            "{action}"
        );
    }

    // Once on the care team (the emergency grant still live), writes need the patient's
    // consent, not break-glass; with it, they go through.
    let admin = app.token(ADMIN).await;
    let doc2_id = app.provider_id(DOCTOR2).await;
    let assign = "mutation($p: ID!, $d: ID!) { assignCareTeam(patientId: $p, providerId: $d) }";
    let r = app
        .gql(Some(&admin), assign, json!({ "p": pid, "d": doc2_id }))
        .await;
    assert_eq!(r["data"]["assignCareTeam"], true, "{r}");
    let r = app.gql(Some(&doc2), RECORD, json!({ "id": pid })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "ALLERGIES");
    let pat = app.token(PATIENT).await;
    let grant = "mutation($p: ID!, $g: ID!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: [ALLERGIES] }) { id } }";
    let r = app
        .gql(Some(&pat), grant, json!({ "p": pid, "g": doc2_id }))
        .await;
    assert!(r["data"]["grantConsent"]["id"].is_string(), "{r}");
    let r = app.gql(Some(&doc2), RECORD, json!({ "id": pid })).await;
    assert!(r["data"]["recordAllergy"]["id"].is_string(), "{r}");
    assert_eq!(
        count(&app, "medical_records WHERE kind = 'ALLERGY'").await,
        allergies_before + 1
    );
    // Its audit row does not claim break-glass: the write rests on care team and consent.
    assert_eq!(
        app.audit_count("action = 'record.create' AND outcome = 'SUCCESS' AND break_glass = FALSE")
            .await,
        1
    );
}

async fn reopening_live_break_glass_is_conflict(b: Backend) {
    let app = spawn_app(b).await;
    let doc2 = app.token(DOCTOR2).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(Some(&doc2), OPEN, json!({ "id": pid, "r": REASON }))
        .await;
    let first = r["data"]["openEmergencyAccess"]["expiresAt"].clone();
    assert!(first.is_string(), "{r}");
    let r = app
        .gql(
            Some(&doc2),
            OPEN,
            json!({ "id": pid, "r": "Second look, same emergency" }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    assert!(r["data"].is_null(), "{r}");
    // No second grant row, the first one not extended, the refusal audited.
    assert_eq!(count(&app, "emergency_access").await, 1);
    let r = app
        .gql(
            Some(&app.token(PATIENT).await),
            "query($id: ID!) { accessHistory(patientId: $id, first: 50) { edges { node { action outcome breakGlass } } } }",
            json!({ "id": pid }),
        )
        .await;
    let edges = r["data"]["accessHistory"]["edges"]
        .as_array()
        .expect("history");
    let opens: Vec<&Value> = edges
        .iter()
        .filter(|e| e["node"]["action"] == "emergency_access.open")
        .collect();
    assert_eq!(opens.len(), 2, "{r}");
    assert_eq!(
        opens
            .iter()
            .filter(|e| e["node"]["outcome"] == "DENIED")
            .count(),
        1,
        "{r}"
    );
    assert_eq!(
        app.audit_count("action = 'emergency_access.open' AND outcome = 'SUCCESS'")
            .await,
        1
    );
    // Once the grant has expired, a new one may be opened.
    app.expire_emergency_access().await;
    let r = app
        .gql(Some(&doc2), OPEN, json!({ "id": pid, "r": REASON }))
        .await;
    assert!(r["data"]["openEmergencyAccess"]["id"].is_string(), "{r}");
    assert_eq!(count(&app, "emergency_access").await, 2);
}

/// What the care-team doctor asks about a patient: reads and clinical writes.
fn doctor_operations(pid: &str, allergy: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "read",
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        ),
        ("read allergies", READ_ALLERGIES, json!({ "id": pid })),
        ("record allergy", RECORD, json!({ "id": pid })),
        ("resolve allergy", RESOLVE, json!({ "id": allergy })),
        (
            "update",
            "mutation($id: ID!) { updatePatient(id: $id, expectedVersion: 2, input: { consentToContact: false }) { id } }",
            json!({ "id": pid }),
        ),
        (
            "read consents",
            "query($id: ID!) { consents(patientId: $id) { id } }",
            json!({ "id": pid }),
        ),
        (
            "read access history",
            "query($id: ID!) { accessHistory(patientId: $id) { edges { cursor } } }",
            json!({ "id": pid }),
        ),
    ]
}

async fn archived_patient_is_not_found_before_consent(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let doc = app.token(DOCTOR).await;
    let doc2 = app.token(DOCTOR2).await;
    let pid = app.patient_id(PATIENT).await;
    let allergy = seeded_allergy(&app, &pid).await;
    // A provider with emergency access opened before the archive loses it with the record.
    let r = app
        .gql(Some(&doc2), OPEN, json!({ "id": pid, "r": REASON }))
        .await;
    assert!(r["data"]["openEmergencyAccess"]["id"].is_string(), "{r}");
    let r = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { archivePatient(id: $id, reason: \"duplicate record\") { archivedAt } }",
            json!({ "id": pid }),
        )
        .await;
    assert!(r["data"]["archivePatient"]["archivedAt"].is_string(), "{r}");
    let missing = app
        .gql(
            Some(&doc),
            RECORD,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    assert_eq!(code(&missing), Some("NOT_FOUND"));
    let allergies_before = count(&app, "medical_records WHERE kind = 'ALLERGY'").await;

    let check = |phase: &'static str| {
        let app = &app;
        let doc = doc.clone();
        let doc2 = doc2.clone();
        let pid = pid.clone();
        let allergy = allergy.clone();
        let missing = missing.clone();
        async move {
            for (who, token) in [("doctor", &doc), ("doctor2", &doc2)] {
                for (name, q, v) in doctor_operations(&pid, &allergy) {
                    let r = app.gql(Some(token), q, v).await;
                    assert_eq!(code(&r), Some("NOT_FOUND"), "{phase} / {who} / {name}: {r}");
                    // Exactly like a patient that does not exist.
                    assert_eq!(
                        r["errors"][0]["message"], missing["errors"][0]["message"],
                        "{phase} / {who} / {name}"
                    );
                    assert!(r["data"].is_null(), "{phase} / {who} / {name}: {r}");
                    assert!(!r.to_string().contains("Testy"), "{r}");
                }
                let r = app
                    .gql(Some(token), "{ patients { totalCount } }", json!({}))
                    .await;
                assert_eq!(
                    r["data"]["patients"]["totalCount"], 0,
                    "{phase} / {who}: {r}"
                );
            }
        }
    };
    // With the seeded consent still active...
    check("with consent").await;
    // ...and once the administrator has withdrawn it: still NOT_FOUND, not CONSENT_REQUIRED.
    let r = app
        .gql(
            Some(&admin),
            "query($id: ID!) { consents(patientId: $id) { id status } }",
            json!({ "id": pid }),
        )
        .await;
    let consents = r["data"]["consents"].as_array().expect("consents").clone();
    assert!(!consents.is_empty(), "{r}");
    for c in consents.iter().filter(|c| c["status"] == "ACTIVE") {
        let r = app
            .gql(
                Some(&admin),
                "mutation($id: ID!) { withdrawConsent(id: $id) { status } }",
                json!({ "id": c["id"] }),
            )
            .await;
        assert_eq!(r["data"]["withdrawConsent"]["status"], "WITHDRAWN", "{r}");
    }
    check("without consent").await;

    // Nothing was written, and no refusal named a consent scope.
    assert_eq!(
        count(&app, "medical_records WHERE kind = 'ALLERGY'").await,
        allergies_before
    );
    assert_eq!(
        count(
            &app,
            "medical_records WHERE kind = 'ALLERGY' AND status = 'RESOLVED'"
        )
        .await,
        0
    );
    assert_eq!(
        app.audit_count("outcome = 'DENIED' AND detail LIKE '%CONSENT_REQUIRED%'")
            .await,
        0
    );
    assert_eq!(
        app.audit_count(
            "action IN ('record.create', 'record.resolve') AND outcome = 'DENIED' AND detail LIKE '%NOT_FOUND%'"
        )
        .await,
        // two phases × two providers × two writes, plus the missing-patient probe
        9
    );
    // Restored, the record is the care team's again (consent decides clinical data anew).
    let r = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { restorePatient(id: $id) { archivedAt } }",
            json!({ "id": pid }),
        )
        .await;
    assert!(r["data"]["restorePatient"]["archivedAt"].is_null(), "{r}");
    let r = app.gql(Some(&doc), RECORD, json!({ "id": pid })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
}

async fn invisible_patient_is_not_found_before_consent(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let doc2 = app.token(DOCTOR2).await;
    let pat2 = app.token(PATIENT2).await;
    let p1 = app.patient_id(PATIENT).await;
    let p2 = app.patient_id(PATIENT2).await;
    let allergy = seeded_allergy(&app, &p1).await;
    // Patient 2 consents to the demo doctor, who is not on their care team: the consent
    // alone shows nothing, and is never what the refusal is about.
    let doc_id = app.provider_id(DOCTOR).await;
    let grant = "mutation($p: ID!, $g: ID!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: [ALLERGIES, RECORDS] }) { id } }";
    let r = app
        .gql(Some(&pat2), grant, json!({ "p": p2, "g": doc_id }))
        .await;
    assert!(r["data"]["grantConsent"]["id"].is_string(), "{r}");
    for (who, token, pid) in [("doctor", &doc, &p2), ("doctor2", &doc2, &p1)] {
        for (name, q, v) in doctor_operations(pid, &allergy) {
            // The doctor's resolve names patient 1's allergy, which is theirs to resolve.
            if who == "doctor" && name == "resolve allergy" {
                continue;
            }
            let r = app.gql(Some(token), q, v).await;
            assert_eq!(code(&r), Some("NOT_FOUND"), "{who} / {name}: {r}");
        }
    }
    assert_eq!(
        app.audit_count("outcome = 'DENIED' AND detail LIKE '%CONSENT_REQUIRED%'")
            .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "medical_records WHERE kind = 'ALLERGY' AND status = 'RESOLVED'"
        )
        .await,
        0
    );
}

const CREATE: &str = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id givenName middleName familyName version emergencyContact { name } } }";
const UPDATE: &str = "mutation($id: ID!, $v: Int!, $i: UpdatePatientInput!) { updatePatient(id: $id, expectedVersion: $v, input: $i) { version givenName familyName emergencyContact { name } } }";

fn new_patient(given: &str, middle: Option<&str>, family: &str, contact: &str) -> Value {
    json!({
        "givenName": given,
        "middleName": middle,
        "familyName": family,
        "birthDate": "1984-03-09",
        "sexAtBirth": "UNKNOWN",
        "genderIdentity": "UNDISCLOSED",
        "emergencyContact": { "name": contact, "relationship": "sibling", "phone": "+442079460002" },
    })
}

async fn person_names_refuse_invisible_and_markup_characters(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    // Names as they really are: accents (one precomposed, one combining), curly and straight
    // apostrophes, hyphens, periods, non-Latin scripts.
    let r = app
        .gql(
            Some(&doc),
            CREATE,
            json!({ "i": new_patient("Zoë", Some("Jose\u{301}"), "O’Brien-St. John", "Séamus O'Neill") }),
        )
        .await;
    let created = &r["data"]["createPatient"];
    assert_eq!(created["givenName"], "Zoë", "{r}");
    assert_eq!(created["middleName"], "Jose\u{301}", "{r}");
    assert_eq!(created["familyName"], "O’Brien-St. John", "{r}");
    assert_eq!(created["emergencyContact"]["name"], "Séamus O'Neill", "{r}");
    let patients_before = count(&app, "patients").await;

    let hostile = [
        "Mallory\u{202E}yrollaM",
        "Mall\u{2066}ory\u{2069}",
        "Mal\u{200B}lory",
        "Mal\u{200D}lory",
        "\u{FEFF}Mallory",
        "Mallory\u{00AD}",
        "Mallory\u{0007}",
        "<img src=x>Mallory",
        "Mallory>",
    ];
    for name in hostile {
        for (field, input) in [
            (
                "givenName",
                new_patient(name, None, "Fixture", "Pat Fixture"),
            ),
            (
                "middleName",
                new_patient("Pat", Some(name), "Fixture", "Pat Fixture"),
            ),
            ("familyName", new_patient("Pat", None, name, "Pat Fixture")),
            (
                "emergencyContact.name",
                new_patient("Pat", None, "Fixture", name),
            ),
        ] {
            let r = app.gql(Some(&doc), CREATE, json!({ "i": input })).await;
            assert_eq!(code(&r), Some("VALIDATION"), "create {field} {name:?}: {r}");
            assert_eq!(
                r["errors"][0]["extensions"]["fields"],
                json!([field]),
                "{r}"
            );
            assert!(!message(&r).contains("Mallory"), "{r}");
            assert!(!message(&r).contains(name), "{r}");
            assert!(!r.to_string().contains("Mallory"), "{r}");
        }
        for (field, input) in [
            ("givenName", json!({ "givenName": name })),
            ("middleName", json!({ "middleName": name })),
            ("familyName", json!({ "familyName": name })),
            (
                "emergencyContact.name",
                json!({ "emergencyContact": { "name": name, "relationship": "sibling", "phone": "+442079460002" } }),
            ),
        ] {
            for token in [&doc, &admin] {
                let r = app
                    .gql(
                        Some(token),
                        UPDATE,
                        json!({ "id": pid, "v": 1, "i": input }),
                    )
                    .await;
                assert_eq!(code(&r), Some("VALIDATION"), "update {field} {name:?}: {r}");
                assert_eq!(
                    r["errors"][0]["extensions"]["fields"],
                    json!([field]),
                    "{r}"
                );
                assert!(!message(&r).contains("Mallory"), "{r}");
                assert!(!r.to_string().contains("Mallory"), "{r}");
            }
        }
    }
    // Nothing was created or changed.
    assert_eq!(count(&app, "patients").await, patients_before);
    assert_eq!(
        app.audit_count("action = 'patient.update'").await,
        0,
        "refused before any write"
    );
    // The same names, cleanly typed, update fine.
    let r = app
        .gql(
            Some(&doc),
            UPDATE,
            json!({ "id": pid, "v": 1, "i": { "givenName": "Jean-Luc", "familyName": "D’Arcy" } }),
        )
        .await;
    assert_eq!(r["data"]["updatePatient"]["version"], 2, "{r}");
    assert_eq!(r["data"]["updatePatient"]["familyName"], "D’Arcy", "{r}");
}
