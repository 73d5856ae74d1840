//! Creating, validating, updating and archiving patients.
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    create_validates_and_stores_nothing_on_failure,
    idempotent_creation,
    optimistic_concurrency,
    archive_and_restore,
    creating_provider_joins_the_care_team,
);

const CREATE: &str = "mutation($i: CreatePatientInput!, $k: String) { createPatient(input: $i, idempotencyKey: $k) { id mrn givenName middleName familyName birthDate email phone preferredLanguage address { postalCode country } emergencyContact { phone } version fhir } }";

fn input() -> Value {
    json!({
        "givenName": "  Zoë   Fixture ",
        "familyName": "Testcase",
        "birthDate": "1975-05-05",
        "sexAtBirth": "FEMALE",
        "genderIdentity": "WOMAN",
        "email": "Zoe.Testcase@Example.ORG",
        "phone": "+44 20 7946 0000",
        "address": { "line1": "2 Sample Road", "postalCode": "SW1A 1AA", "country": "gb" },
        "emergencyContact": { "name": "Pat Fixture", "relationship": "partner", "phone": "+442079460001" },
        "ssn": "900-00-1234",
        "preferredLanguage": "en-gb"
    })
}

async fn total_patients(app: &TestApp) -> i64 {
    let t = app.token(ADMIN).await;
    let r = app
        .gql(
            Some(&t),
            "{ patients(filter: { includeArchived: true }) { totalCount } }",
            json!({}),
        )
        .await;
    r["data"]["patients"]["totalCount"].as_i64().unwrap()
}

async fn create_validates_and_stores_nothing_on_failure(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(ADMIN).await;
    let r = app.gql(Some(&t), CREATE, json!({ "i": input() })).await;
    let p = &r["data"]["createPatient"];
    assert_eq!(p["givenName"], "Zoë Fixture", "{r}");
    assert_eq!(p["email"], "zoe.testcase@example.org");
    assert_eq!(p["phone"], "+442079460000");
    assert_eq!(p["preferredLanguage"], "en-GB");
    assert_eq!(p["address"]["country"], "GB");
    assert_eq!(p["version"], 1);
    assert_eq!(p["fhir"]["resourceType"], "Patient");
    assert_eq!(p["fhir"]["name"][0]["family"], "Testcase");
    assert!(p["mrn"].as_str().unwrap().len() >= 4);
    let before = total_patients(&app).await;
    let cases: Vec<(&str, Value)> = vec![
        ("givenName", json!({ "givenName": "R2D2" })),
        ("givenName", json!({ "givenName": "   " })),
        ("familyName", json!({ "familyName": "x".repeat(101) })),
        ("birthDate", json!({ "birthDate": "2999-01-01" })),
        ("birthDate", json!({ "birthDate": "1850-01-01" })),
        ("email", json!({ "email": "not-an-email" })),
        ("phone", json!({ "phone": "555-0100" })),
        (
            "address.country",
            json!({ "address": { "postalCode": "12345" } }),
        ),
        ("address.country", json!({ "address": { "country": "XX" } })),
        (
            "preferredLanguage",
            json!({ "preferredLanguage": "not a language" }),
        ),
        ("ssn", json!({ "ssn": "12" })),
        ("genderIdentityOther", json!({ "genderIdentity": "OTHER" })),
    ];
    for (field, patch) in cases {
        let mut i = input();
        i["email"] = json!(null);
        for (k, v) in patch.as_object().unwrap() {
            i[k] = v.clone();
        }
        let r = app.gql(Some(&t), CREATE, json!({ "i": i })).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{field}: {r}");
        assert_eq!(r["errors"][0]["extensions"]["fields"][0], field, "{r}");
        // The message never echoes the input.
        let msg = r["errors"][0]["message"].as_str().unwrap();
        assert!(
            !msg.contains("R2D2") && !msg.contains("not-an-email") && !msg.contains("555-0100"),
            "{msg}"
        );
    }
    assert_eq!(
        total_patients(&app).await,
        before,
        "a refused create stored something"
    );
    // Family members may share an e-mail address: no CONFLICT that would tell a caller the
    // address belongs to some patient.
    let mut family = input();
    family["givenName"] = json!("Other");
    let r = app.gql(Some(&t), CREATE, json!({ "i": family })).await;
    assert!(r["data"]["createPatient"]["id"].is_string(), "{r}");
    // MRNs: only administrators choose them, and they are unique.
    let mrn = p["mrn"].as_str().unwrap().to_owned();
    let mut with_mrn = input();
    with_mrn["mrn"] = json!(mrn);
    let r = app
        .gql(Some(&t), CREATE, json!({ "i": with_mrn.clone() }))
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), CREATE, json!({ "i": with_mrn })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
}

async fn idempotent_creation(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(ADMIN).await;
    let first = app
        .gql(Some(&t), CREATE, json!({ "i": input(), "k": "create-1" }))
        .await;
    let again = app
        .gql(Some(&t), CREATE, json!({ "i": input(), "k": "create-1" }))
        .await;
    let id = first["data"]["createPatient"]["id"]
        .as_str()
        .expect("created");
    assert_eq!(again["data"]["createPatient"]["id"], id, "{again}");
    let mut changed = input();
    changed["familyName"] = json!("Different");
    let r = app
        .gql(Some(&t), CREATE, json!({ "i": changed, "k": "create-1" }))
        .await;
    assert_eq!(code(&r), Some("CONFLICT"));
    assert_eq!(total_patients(&app).await, 3);
    assert_eq!(app.audit_count("action = 'patient.create'").await, 1);
}

async fn optimistic_concurrency(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let q = "mutation($id: ID!, $v: Int!, $i: UpdatePatientInput!) { updatePatient(id: $id, expectedVersion: $v, input: $i) { version givenName phone middleName } }";
    let r = app
        .gql(
            Some(&t),
            q,
            json!({ "id": pid, "v": 1, "i": { "phone": "+15555550111", "middleName": "Quinn" } }),
        )
        .await;
    assert_eq!(r["data"]["updatePatient"]["version"], 2, "{r}");
    assert_eq!(r["data"]["updatePatient"]["phone"], "+15555550111");
    // A stale version changes nothing.
    let r = app
        .gql(
            Some(&t),
            q,
            json!({ "id": pid, "v": 1, "i": { "givenName": "Stale" } }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"));
    let read = app
        .gql(
            Some(&t),
            "query($id: ID!) { patient(id: $id) { givenName version middleName } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(read["data"]["patient"]["givenName"], "Testy");
    assert_eq!(read["data"]["patient"]["version"], 2);
    // null clears an optional field.
    let r = app
        .gql(
            Some(&t),
            q,
            json!({ "id": pid, "v": 2, "i": { "middleName": null } }),
        )
        .await;
    assert!(r["data"]["updatePatient"]["middleName"].is_null(), "{r}");
    let r = app
        .gql(
            Some(&t),
            q,
            json!({ "id": pid, "v": 3, "i": { "givenName": "4four" } }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"));
    // Outside the care team: NOT_FOUND.
    let t2 = app.token(DOCTOR2).await;
    let r = app
        .gql(
            Some(&t2),
            q,
            json!({ "id": pid, "v": 3, "i": { "givenName": "Nope" } }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    // The patient may change contact details, not identity fields.
    let pat = app.token(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            q,
            json!({ "id": pid, "v": 3, "i": { "phone": "+15555550112" } }),
        )
        .await;
    assert_eq!(r["data"]["updatePatient"]["phone"], "+15555550112", "{r}");
    let r = app
        .gql(
            Some(&pat),
            q,
            json!({ "id": pid, "v": 4, "i": { "givenName": "Renamed" } }),
        )
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"));
    assert_eq!(
        app.audit_count("action = 'patient.update' AND outcome = 'SUCCESS'")
            .await,
        3
    );
}

async fn archive_and_restore(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let arch = "mutation($id: ID!) { archivePatient(id: $id, reason: \"duplicate record\") { archivedAt } }";
    assert_eq!(
        code(&app.gql(Some(&pat), arch, json!({ "id": pid })).await),
        Some("FORBIDDEN")
    );
    let r = app.gql(Some(&admin), arch, json!({ "id": pid })).await;
    assert!(r["data"]["archivePatient"]["archivedAt"].is_string(), "{r}");
    assert_eq!(
        code(&app.gql(Some(&admin), arch, json!({ "id": pid })).await),
        Some("CONFLICT")
    );
    let read = "query($id: ID!) { patient(id: $id) { id } }";
    assert_eq!(
        code(&app.gql(Some(&pat), read, json!({ "id": pid })).await),
        Some("NOT_FOUND")
    );
    let r = app
        .gql(Some(&admin), "{ patients { totalCount } }", json!({}))
        .await;
    assert_eq!(r["data"]["patients"]["totalCount"], 1);
    let r = app
        .gql(
            Some(&admin),
            "{ patients(filter: { includeArchived: true }) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(r["data"]["patients"]["totalCount"], 2);
    let restore = "mutation($id: ID!) { restorePatient(id: $id) { archivedAt } }";
    let r = app.gql(Some(&admin), restore, json!({ "id": pid })).await;
    assert!(r["data"]["restorePatient"]["archivedAt"].is_null(), "{r}");
    assert!(
        app.gql(Some(&pat), read, json!({ "id": pid })).await["data"]["patient"]["id"].is_string()
    );
    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        code(&app.gql(Some(&admin), arch, json!({ "id": missing })).await),
        Some("NOT_FOUND")
    );
}

async fn creating_provider_joins_the_care_team(b: Backend) {
    let app = spawn_app(b).await;
    let doc2 = app.token(DOCTOR2).await;
    let r = app.gql(Some(&doc2), CREATE, json!({ "i": input() })).await;
    let id = r["data"]["createPatient"]["id"]
        .as_str()
        .expect("created")
        .to_owned();
    let r = app
        .gql(
            Some(&doc2),
            "query($id: ID!) { patient(id: $id) { familyName } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["familyName"], "Testcase");
    let doc = app.token(DOCTOR).await;
    let r = app
        .gql(
            Some(&doc),
            "query($id: ID!) { patient(id: $id) { familyName } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    let pat = app.token(PATIENT).await;
    assert_eq!(
        code(&app.gql(Some(&pat), CREATE, json!({ "i": input() })).await),
        Some("FORBIDDEN")
    );
    let res = app.token(RESEARCHER).await;
    assert_eq!(
        code(&app.gql(Some(&res), CREATE, json!({ "i": input() })).await),
        Some("FORBIDDEN")
    );
}
