//! The role × operation matrix: each role allowed what it may, refused what it must not.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    unauthenticated_is_refused_everywhere,
    patient_sees_only_their_own_record,
    providers_see_their_care_team_only,
    admin_sees_everyone_and_is_audited,
    researcher_gets_no_identified_data,
    consent_withdrawal_applies_on_the_next_request,
    care_team_assignment_is_admin_only,
    break_glass_is_time_limited_audited_and_flagged,
    lists_and_totals_only_count_what_the_viewer_may_see,
    ssn_is_write_only,
    concurrent_reads_by_different_providers_stay_apart,
);

const READ: &str = "query($id: ID!) { patient(id: $id) { id givenName familyName birthDate } }";
const READ_ALLERGIES: &str =
    "query($id: ID!) { patient(id: $id) { id givenName allergies { substance severity status } } }";

async fn unauthenticated_is_refused_everywhere(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    for (q, v) in [
        (READ, json!({ "id": pid })),
        ("{ patients { totalCount } }", json!({})),
        (
            "query($id: ID!) { consents(patientId: $id) { id } }",
            json!({ "id": pid }),
        ),
        (
            "query($id: ID!) { accessHistory(patientId: $id) { edges { cursor } } }",
            json!({ "id": pid }),
        ),
        ("{ me { id } }", json!({})),
        ("mutation { logout }", json!({})),
        (
            "mutation($id: ID!) { archivePatient(id: $id, reason: \"testing it\") { id } }",
            json!({ "id": pid }),
        ),
    ] {
        let r = app.gql(None, q, v.clone()).await;
        assert_eq!(code(&r), Some("UNAUTHENTICATED"), "{q}: {r}");
        let r = app.gql(Some("not.a.token"), q, v).await;
        assert_eq!(
            code(&r),
            Some("UNAUTHENTICATED"),
            "{q} with a forged token: {r}"
        );
    }
}

async fn patient_sees_only_their_own_record(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(PATIENT).await;
    let own = app.patient_id(PATIENT).await;
    let other = app.patient_id(PATIENT2).await;
    let r = app
        .gql(Some(&t), READ_ALLERGIES, json!({ "id": own }))
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    assert_eq!(
        r["data"]["patient"]["allergies"][0]["substance"],
        "Demo peanut protein"
    );
    // Another patient's record: NOT_FOUND, exactly as for an id that does not exist.
    let r = app.gql(Some(&t), READ, json!({ "id": other })).await;
    let missing = app
        .gql(
            Some(&t),
            READ,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    assert_eq!(r["errors"][0]["message"], missing["errors"][0]["message"]);
    assert!(r["data"].is_null());
    // Patients cannot create, archive or assign.
    let r = app
        .gql(
            Some(&t),
            "mutation($id: ID!) { archivePatient(id: $id, reason: \"no reason\") { id } }",
            json!({ "id": own }),
        )
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"));
    assert!(app.audit_count("outcome = 'DENIED'").await >= 2);
}

async fn providers_see_their_care_team_only(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let doc2 = app.token(DOCTOR2).await;
    let p1 = app.patient_id(PATIENT).await;
    let p2 = app.patient_id(PATIENT2).await;
    let r = app
        .gql(Some(&doc), READ_ALLERGIES, json!({ "id": p1 }))
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    assert_eq!(r["data"]["patient"]["allergies"][0]["severity"], "MODERATE");
    let r = app.gql(Some(&doc), READ, json!({ "id": p2 })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    let r = app.gql(Some(&doc2), READ, json!({ "id": p1 })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    // Writing allergies of a patient outside the care team: NOT_FOUND too.
    let q = "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"Demo latex\", severity: MILD }) { id } }";
    let r = app.gql(Some(&doc2), q, json!({ "id": p1 })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    let r = app.gql(Some(&doc), q, json!({ "id": p1 })).await;
    assert!(r["data"]["recordAllergy"]["id"].is_string(), "{r}");
}

async fn admin_sees_everyone_and_is_audited(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(ADMIN).await;
    let admin_id = app.me(&t).await["id"].as_str().unwrap().to_owned();
    for email in [PATIENT, PATIENT2] {
        let pid = app.patient_id(email).await;
        let r = app
            .gql(Some(&t), READ_ALLERGIES, json!({ "id": pid }))
            .await;
        assert!(r["data"]["patient"]["givenName"].is_string(), "{r}");
    }
    let r = app
        .gql(Some(&t), "{ patients { totalCount } }", json!({}))
        .await;
    assert_eq!(r["data"]["patients"]["totalCount"], 2);
    let reads = app
        .audit_count(&format!("action = 'patient.read' AND outcome = 'SUCCESS' AND actor_role = 'ADMIN' AND detail LIKE '%givenName%' AND actor_id IS NOT NULL AND {}", actor(&app, &admin_id)))
        .await;
    assert_eq!(reads, 2);
}

fn actor(app: &TestApp, id: &str) -> String {
    // UUIDs are stored natively on PostgreSQL and as 16-byte blobs on SQLite.
    match app.backend {
        Backend::Postgres => format!("actor_id = '{id}'"),
        Backend::Sqlite => format!("hex(actor_id) = '{}'", id.replace('-', "").to_uppercase()),
    }
}

async fn researcher_gets_no_identified_data(b: Backend) {
    let app = spawn_app(b).await;
    let t = app.token(RESEARCHER).await;
    let pid = app.patient_id(PATIENT).await;
    for (q, v) in [
        (READ, json!({ "id": pid })),
        (
            "{ patients { totalCount edges { node { givenName } } } }",
            json!({}),
        ),
        (
            "query($id: ID!) { consents(patientId: $id) { id } }",
            json!({ "id": pid }),
        ),
        (
            "query($id: ID!) { accessHistory(patientId: $id) { edges { cursor } } }",
            json!({ "id": pid }),
        ),
    ] {
        let r = app.gql(Some(&t), q, v).await;
        assert_eq!(code(&r), Some("FORBIDDEN"), "{q}: {r}");
        assert!(!r.to_string().contains("Testy"));
    }
}

async fn consent_withdrawal_applies_on_the_next_request(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { consents(patientId: $id) { id status scopes } }",
            json!({ "id": pid }),
        )
        .await;
    let consent = r["data"]["consents"][0]["id"]
        .as_str()
        .expect("seeded consent")
        .to_owned();
    assert_eq!(r["data"]["consents"][0]["status"], "ACTIVE");
    // Another patient cannot withdraw it.
    let p2 = app.token(PATIENT2).await;
    let r = app
        .gql(
            Some(&p2),
            "mutation($id: ID!) { withdrawConsent(id: $id) { id } }",
            json!({ "id": consent }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    let r = app
        .gql(
            Some(&pat),
            "mutation($id: ID!) { withdrawConsent(id: $id) { status } }",
            json!({ "id": consent }),
        )
        .await;
    assert_eq!(r["data"]["withdrawConsent"]["status"], "WITHDRAWN", "{r}");
    // The very next request: demographics still there, allergies refused with the scope named.
    let r = app
        .gql(Some(&doc), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    assert!(r["data"]["patient"]["allergies"].is_null());
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"));
    assert_eq!(r["errors"][0]["extensions"]["scope"], "ALLERGIES");
    assert_eq!(r["errors"][0]["path"], json!(["patient", "allergies"]));
    let q = "mutation($id: ID!) { recordAllergy(patientId: $id, input: { substance: \"Demo dust\", severity: MILD }) { id } }";
    assert_eq!(
        code(&app.gql(Some(&doc), q, json!({ "id": pid })).await),
        Some("CONSENT_REQUIRED")
    );
    // History is kept, and a new grant restores access.
    let doc_pid = app.provider_id(DOCTOR).await;
    let q = "mutation($p: ID!, $g: ID!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: [ALLERGIES] }) { id status } }";
    let r = app
        .gql(Some(&pat), q, json!({ "p": pid, "g": doc_pid }))
        .await;
    assert_eq!(r["data"]["grantConsent"]["status"], "ACTIVE", "{r}");
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { consents(patientId: $id) { status } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(r["data"]["consents"].as_array().unwrap().len(), 2);
    let r = app
        .gql(Some(&doc), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    assert_eq!(
        r["data"]["patient"]["allergies"][0]["substance"], "Demo peanut protein",
        "{r}"
    );
    assert_eq!(
        app.audit_count("outcome = 'DENIED' AND action LIKE 'record.%'")
            .await,
        2
    );
}

async fn care_team_assignment_is_admin_only(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let doc = app.token(DOCTOR).await;
    let doc2 = app.token(DOCTOR2).await;
    let p2 = app.patient_id(PATIENT2).await;
    let doc2_id = app.provider_id(DOCTOR2).await;
    let q = "mutation($p: ID!, $d: ID!) { assignCareTeam(patientId: $p, providerId: $d) }";
    assert_eq!(
        code(
            &app.gql(Some(&doc), q, json!({ "p": p2, "d": doc2_id }))
                .await
        ),
        Some("FORBIDDEN")
    );
    assert_eq!(
        code(&app.gql(Some(&doc2), READ, json!({ "id": p2 })).await),
        Some("NOT_FOUND")
    );
    let r = app
        .gql(Some(&admin), q, json!({ "p": p2, "d": doc2_id }))
        .await;
    assert_eq!(r["data"]["assignCareTeam"], true, "{r}");
    let r = app.gql(Some(&doc2), READ, json!({ "id": p2 })).await;
    assert_eq!(r["data"]["patient"]["givenName"], "Sample", "{r}");
    // Demographics yes, allergies need consent.
    let r = app
        .gql(Some(&doc2), READ_ALLERGIES, json!({ "id": p2 }))
        .await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"));
    assert_eq!(
        code(
            &app.gql(Some(&admin), q, json!({ "p": p2, "d": doc2_id }))
                .await
        ),
        Some("CONFLICT")
    );
    let rm = "mutation($p: ID!, $d: ID!) { removeCareTeam(patientId: $p, providerId: $d) }";
    assert_eq!(
        app.gql(Some(&admin), rm, json!({ "p": p2, "d": doc2_id }))
            .await["data"]["removeCareTeam"],
        true
    );
    assert_eq!(
        code(&app.gql(Some(&doc2), READ, json!({ "id": p2 })).await),
        Some("NOT_FOUND")
    );
}

async fn break_glass_is_time_limited_audited_and_flagged(b: Backend) {
    let app = spawn_app(b).await;
    let doc2 = app.token(DOCTOR2).await;
    let pid = app.patient_id(PATIENT).await;
    assert_eq!(
        code(&app.gql(Some(&doc2), READ, json!({ "id": pid })).await),
        Some("NOT_FOUND")
    );
    let q = "mutation($id: ID!, $r: String!) { openEmergencyAccess(patientId: $id, reason: $r) { id expiresAt openedAt } }";
    let r = app.gql(Some(&doc2), q, json!({ "id": pid, "r": "" })).await;
    assert_eq!(code(&r), Some("VALIDATION"));
    let r = app
        .gql(
            Some(&doc2),
            q,
            json!({ "id": pid, "r": "Unconscious in the emergency department" }),
        )
        .await;
    let grant = &r["data"]["openEmergencyAccess"];
    let opened = chrono::DateTime::parse_from_rfc3339(grant["openedAt"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(grant["expiresAt"].as_str().expect("granted"))
            .unwrap();
    assert_eq!((expires - opened).num_minutes(), 60);
    let r = app
        .gql(Some(&doc2), READ_ALLERGIES, json!({ "id": pid }))
        .await;
    assert_eq!(
        r["data"]["patient"]["allergies"][0]["substance"], "Demo peanut protein",
        "{r}"
    );
    // Break-glass reads; it does not rewrite demographics.
    let upd = "mutation($id: ID!) { updatePatient(id: $id, expectedVersion: 1, input: { givenName: \"Changed\" }) { id } }";
    assert_eq!(
        code(&app.gql(Some(&doc2), upd, json!({ "id": pid })).await),
        Some("FORBIDDEN")
    );
    // A provider already on the care team does not need it.
    let doc = app.token(DOCTOR).await;
    assert_eq!(
        code(
            &app.gql(Some(&doc), q, json!({ "id": pid, "r": "just checking in" }))
                .await
        ),
        Some("CONFLICT")
    );
    // The patient sees it flagged in their access history.
    let pat = app.token(PATIENT).await;
    let h = app
        .gql(Some(&pat), "query($id: ID!) { accessHistory(patientId: $id, first: 50) { edges { node { action actorRole breakGlass outcome reason } } } }", json!({ "id": pid }))
        .await;
    let edges = h["data"]["accessHistory"]["edges"]
        .as_array()
        .expect("history");
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["action"] == "emergency_access.open"
                && e["node"]["breakGlass"] == true
                && e["node"]["reason"] == "Unconscious in the emergency department")
    );
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["action"] == "patient.read" && e["node"]["breakGlass"] == true)
    );
    assert!(
        edges
            .iter()
            .any(|e| e["node"]["action"] == "patient.read" && e["node"]["outcome"] == "DENIED")
    );
    // Another patient may not read this history.
    let p2 = app.token(PATIENT2).await;
    let r = app
        .gql(
            Some(&p2),
            "query($id: ID!) { accessHistory(patientId: $id) { edges { cursor } } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"));
    // Once the grant has expired, neither a read nor a list shows the patient.
    let total = "{ patients(first: 10) { totalCount } }";
    let r = app.gql(Some(&doc2), total, json!({})).await;
    assert_eq!(r["data"]["patients"]["totalCount"], 1, "{r}");
    app.expire_emergency_access().await;
    assert_eq!(
        code(&app.gql(Some(&doc2), READ, json!({ "id": pid })).await),
        Some("NOT_FOUND")
    );
    let r = app.gql(Some(&doc2), total, json!({})).await;
    assert_eq!(r["data"]["patients"]["totalCount"], 0, "{r}");
}

async fn lists_and_totals_only_count_what_the_viewer_may_see(b: Backend) {
    let app = spawn_app(b).await;
    let q = "query($f: PatientFilterInput) { patients(filter: $f, first: 10) { totalCount edges { cursor node { familyName } } pageInfo { hasNextPage } } }";
    for (email, total) in [
        (PATIENT, 1),
        (PATIENT2, 1),
        (DOCTOR, 1),
        (DOCTOR2, 0),
        (ADMIN, 2),
    ] {
        let t = app.token(email).await;
        let r = app.gql(Some(&t), q, json!({})).await;
        assert_eq!(r["data"]["patients"]["totalCount"], total, "{email}: {r}");
        assert_eq!(
            r["data"]["patients"]["edges"].as_array().unwrap().len(),
            total as usize
        );
        // A filter that matches only an invisible patient counts zero, not one.
        let r = app
            .gql(
                Some(&t),
                q,
                json!({ "f": { "familyName": "Examplepatient" } }),
            )
            .await;
        let expect = if email == ADMIN || email == PATIENT2 {
            1
        } else {
            0
        };
        assert_eq!(r["data"]["patients"]["totalCount"], expect, "{email}: {r}");
    }
    let admin = app.token(ADMIN).await;
    // Blind-index filters are exact and normalised.
    for f in [
        json!({ "familyName": "  demopatient " }),
        json!({ "email": "PATIENT@caregraph.dev" }),
        json!({ "phone": "+1 555 555 0100" }),
        json!({ "birthDate": "1980-01-01" }),
        json!({ "familyName": "Demopatient", "birthDate": "1980-01-01" }),
    ] {
        let r = app.gql(Some(&admin), q, json!({ "f": f })).await;
        assert_eq!(r["data"]["patients"]["totalCount"], 1, "{f}: {r}");
        assert_eq!(
            r["data"]["patients"]["edges"][0]["node"]["familyName"],
            "Demopatient"
        );
    }
    let r = app
        .gql(Some(&admin), q, json!({ "f": { "familyName": "Demo" } }))
        .await;
    assert_eq!(
        r["data"]["patients"]["totalCount"], 0,
        "partial names do not match"
    );
    // Paging with opaque cursors.
    let page = "query($a: String) { patients(first: 1, after: $a) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }";
    let r1 = app.gql(Some(&admin), page, json!({})).await;
    assert_eq!(r1["data"]["patients"]["pageInfo"]["hasNextPage"], true);
    let cursor = r1["data"]["patients"]["pageInfo"]["endCursor"].clone();
    let r2 = app.gql(Some(&admin), page, json!({ "a": cursor })).await;
    assert_eq!(r2["data"]["patients"]["pageInfo"]["hasNextPage"], false);
    assert_ne!(
        r1["data"]["patients"]["edges"][0]["node"]["id"],
        r2["data"]["patients"]["edges"][0]["node"]["id"]
    );
    assert_eq!(
        code(&app.gql(Some(&admin), page, json!({ "a": "garbage" })).await),
        Some("VALIDATION")
    );
}

async fn ssn_is_write_only(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let q = "query($id: ID!) { patient(id: $id) { ssnLast4 } }";
    for email in [PATIENT, ADMIN] {
        let t = app.token(email).await;
        let r = app.gql(Some(&t), q, json!({ "id": pid })).await;
        assert_eq!(r["data"]["patient"]["ssnLast4"], "0001", "{email}: {r}");
    }
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), q, json!({ "id": pid })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"));
    // There is no field that returns the full number.
    let r = app
        .gql(
            Some(&doc),
            "query($id: ID!) { patient(id: $id) { ssn } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"));
}

/// Many reads at once, by two providers with different care teams, may share batched
/// statements: each still gets exactly its own answer.
async fn concurrent_reads_by_different_providers_stay_apart(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let p1 = app.patient_id(PATIENT).await;
    let p2 = app.patient_id(PATIENT2).await;
    let d2 = app.provider_id(DOCTOR2).await;
    let r = app
        .gql(
            Some(&admin),
            "mutation($p: ID!, $d: ID!) { assignCareTeam(patientId: $p, providerId: $d) }",
            json!({ "p": p2, "d": d2 }),
        )
        .await;
    assert_eq!(r["data"]["assignCareTeam"], true, "{r}");
    let (doc1, doc2) = (app.token(DOCTOR).await, app.token(DOCTOR2).await);
    let cases: Vec<(&str, &str, Option<&str>)> = (0..40)
        .map(|i| match i % 4 {
            0 => (doc1.as_str(), p1.as_str(), Some("Testy")),
            1 => (doc1.as_str(), p2.as_str(), None),
            2 => (doc2.as_str(), p2.as_str(), Some("Sample")),
            _ => (doc2.as_str(), p1.as_str(), None),
        })
        .collect();
    let reads = cases.iter().map(|(t, id, _)| {
        app.gql(
            Some(t),
            "query($id: ID!) { patient(id: $id) { id givenName } }",
            json!({ "id": id }),
        )
    });
    let results = futures_util::future::join_all(reads).await;
    for ((_, id, want), r) in cases.iter().zip(results) {
        match want {
            Some(name) => {
                assert_eq!(r["data"]["patient"]["id"], *id, "{r}");
                assert_eq!(r["data"]["patient"]["givenName"], *name, "{r}");
            }
            None => assert_eq!(code(&r), Some("NOT_FOUND"), "{r}"),
        }
    }
}
