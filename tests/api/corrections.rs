//! The right to amend (45 CFR 164.526): a patient's correction request, its answer by the
//! record's author (accepted: the record amended in the same transaction; denied: with a
//! reason), the patient's statement of disagreement and where it shows (the patient's
//! list, the record, the FHIR export); refusals by role, care team and state; ciphertext at
//! rest and audit rows.
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::records::write_one_of_each;

on_both_backends!(
    a_denied_correction_is_disputed_and_travels_with_the_record,
    an_accepted_correction_amends_the_record_in_one_step,
    corrections_are_refused_to_whom_they_must_be,
);

const FIELDS: &str = "id recordId status text requestedAt respondedAt response amendedVersion disagreement disagreedAt";

fn request_op() -> String {
    format!(
        "mutation($r: ID!, $t: String!) {{ requestCorrection(recordId: $r, text: $t) {{ {FIELDS} }} }}"
    )
}

fn respond_op() -> String {
    format!(
        "mutation($id: ID!, $a: Boolean!, $why: String, $am: AmendRecordInput) {{ respondToCorrection(id: $id, accept: $a, reason: $why, amendment: $am) {{ {FIELDS} }} }}"
    )
}

fn disagree_op() -> String {
    format!(
        "mutation($id: ID!, $t: String!) {{ fileDisagreement(correctionRequestId: $id, text: $t) {{ {FIELDS} }} }}"
    )
}

const REQUEST_TEXT: &str = "Demo request: the glucose value belongs to another visit.";
const DENIAL: &str = "Demo denial: the value matches the laboratory's own report.";
const STATEMENT: &str = "Demo statement: I was not fasting; the value misleads.";

/// The amendment of the lab result `write_one_of_each` writes.
fn lab_amendment(value: &str) -> Value {
    json!({ "labResult": {
        "code": "2345-7", "value": value, "unit": "mmol/L", "observedAt": "2026-11-20T08:30:00Z",
    } })
}

/// The patient asks to correct `record`; returns the request's id.
async fn request(app: &TestApp, record: &str) -> String {
    let pat = app.token(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            &request_op(),
            json!({ "r": record, "t": REQUEST_TEXT }),
        )
        .await;
    let c = &r["data"]["requestCorrection"];
    assert_eq!(c["status"], "REQUESTED", "{r}");
    assert_eq!(c["recordId"], record);
    assert_eq!(c["text"], REQUEST_TEXT);
    assert!(c["respondedAt"].is_null() && c["disagreement"].is_null());
    c["id"].as_str().unwrap().to_owned()
}

async fn a_denied_correction_is_disputed_and_travels_with_the_record(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let lab = &ids[0];
    let pid = app.patient_id(PATIENT).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let id = request(&app, lab).await;
    // The author denies, saying why; the record stays as it was.
    let r = app
        .gql(
            Some(&doc),
            &respond_op(),
            json!({ "id": id, "a": false, "why": DENIAL }),
        )
        .await;
    let c = &r["data"]["respondToCorrection"];
    assert_eq!(c["status"], "DENIED", "{r}");
    assert_eq!(c["response"], DENIAL);
    assert!(c["respondedAt"].is_string() && c["amendedVersion"].is_null());
    let by_id =
        "query($id: ID!) { record(id: $id) { version recordStatus ... on LabResult { value } } }";
    let r = app.gql(Some(&pat), by_id, json!({ "id": lab })).await;
    assert_eq!(r["data"]["record"]["version"], 1, "{r}");
    assert_eq!(r["data"]["record"]["value"], "5.4");
    // The patient disagrees, once.
    let r = app
        .gql(
            Some(&pat),
            &disagree_op(),
            json!({ "id": id, "t": STATEMENT }),
        )
        .await;
    let c = &r["data"]["fileDisagreement"];
    assert_eq!(c["disagreement"], STATEMENT, "{r}");
    assert!(c["disagreedAt"].is_string());
    assert_eq!(c["status"], "DENIED");
    let r = app
        .gql(
            Some(&pat),
            &disagree_op(),
            json!({ "id": id, "t": STATEMENT }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // It shows in the patient's list (also to ADMIN) ...
    let mine =
        format!("query($p: ID!) {{ patient(id: $p) {{ correctionRequests {{ {FIELDS} }} }} }}");
    for who in [PATIENT, ADMIN] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), &mine, json!({ "p": pid })).await;
        let list = &r["data"]["patient"]["correctionRequests"];
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{who}: {r}");
        assert_eq!(list[0]["id"], id.as_str());
        assert_eq!(list[0]["text"], REQUEST_TEXT);
        assert_eq!(list[0]["response"], DENIAL);
        assert_eq!(list[0]["disagreement"], STATEMENT);
    }
    // ... on the record, to whoever may read it (the care team included) ...
    let on_record =
        format!("query($id: ID!) {{ record(id: $id) {{ correctionRequests {{ {FIELDS} }} }} }}");
    for t in [&pat, &doc] {
        let r = app.gql(Some(t), &on_record, json!({ "id": lab })).await;
        let list = &r["data"]["record"]["correctionRequests"];
        assert_eq!(list[0]["disagreement"], STATEMENT, "{r}");
        assert_eq!(list[0]["status"], "DENIED");
    }
    // (and through the interface on every kind, empty where there is none)
    let r = app
        .gql(
            Some(&pat),
            "query($p: ID!) { patient(id: $p) { records(first: 50) { edges { node { id correctionRequests { id } } } } } }",
            json!({ "p": pid }),
        )
        .await;
    let edges = r["data"]["patient"]["records"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    for e in &edges {
        let n = e["node"]["correctionRequests"].as_array().unwrap().len();
        assert_eq!(n, usize::from(e["node"]["id"] == lab.as_str()), "{r}");
    }
    // ... and in the export, attached to the record's resource.
    let r = app
        .gql(
            Some(&pat),
            "query($p: ID!) { patient(id: $p) { fhirExport } }",
            json!({ "p": pid }),
        )
        .await;
    let entries = r["data"]["patient"]["fhirExport"]["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let disputed: Vec<&Value> = entries
        .iter()
        .filter(|e| e["resource"].get("extension").is_some())
        .collect();
    assert_eq!(disputed.len(), 1, "{r}");
    let res = &disputed[0]["resource"];
    assert_eq!(res["id"], lab.as_str());
    assert_eq!(res["resourceType"], "Observation");
    let ext = &res["extension"][0];
    assert_eq!(
        ext["url"],
        "https://caregraph.dev/fhir/StructureDefinition/amendment-disagreement"
    );
    let part = |name: &str| {
        ext["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["url"] == name)
            .map(|p| p["valueString"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(part("request"), REQUEST_TEXT);
    assert_eq!(part("denial"), DENIAL);
    assert_eq!(part("statement"), STATEMENT);
    assert_eq!(part("correctionRequest"), id.as_str());
    assert_eq!(
        app.audit_count(&format!(
            "action = 'patient.export' AND detail LIKE '%\"disagreements\":[\"{id}\"]%'"
        ))
        .await,
        1
    );
    // The three texts are ciphertext at rest.
    let db = &app.state.db;
    let rows = db
        .query_all(Statement::from_string(
            db.get_database_backend(),
            "SELECT text_enc, response_enc, disagreement_enc FROM correction_requests",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for column in ["text_enc", "response_enc", "disagreement_enc"] {
        let v: Vec<u8> = rows[0].try_get("", column).unwrap();
        let text = String::from_utf8_lossy(&v);
        for plain in ["Demo", "glucose", "laboratory", "fasting"] {
            assert!(!text.contains(plain), "{column} holds {plain}");
        }
    }
    // Every step is audited, naming the record and the request; no text in the log.
    for action in [
        "record.correction_request",
        "record.correction_respond",
        "record.correction_disagree",
    ] {
        let w = format!(
            "action = '{action}' AND outcome = 'SUCCESS' AND resource_id = '{lab}' AND detail LIKE '%{id}%'"
        );
        assert_eq!(app.audit_count(&w).await, 1, "{action}");
    }
    assert_eq!(
        app.audit_count("action = 'record.correction_respond' AND detail LIKE '%DENIED%'")
            .await,
        1
    );
    // Reads: two of the list, two of the record, one per record in the list read.
    assert_eq!(
        app.audit_count("action = 'record.correction_read' AND resource_type = 'patient'")
            .await,
        2
    );
    assert_eq!(
        app.audit_count(&format!(
            "action = 'record.correction_read' AND resource_id = '{lab}'"
        ))
        .await,
        3
    );
    assert_eq!(
        app.audit_count("action = 'record.correction_read' AND resource_type = 'medical_record'")
            .await,
        2 + edges.len() as i64
    );
    assert_eq!(
        app.audit_count("detail LIKE '%Demo%' AND action LIKE 'record.correction%'")
            .await,
        0
    );
    // The record's own access history names the steps.
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { record(id: $id) { accessHistory(first: 50) { edges { node { action basis } } } } }",
            json!({ "id": lab }),
        )
        .await;
    let history = r["data"]["record"]["accessHistory"].to_string();
    for action in [
        "record.correction_request",
        "record.correction_respond",
        "record.correction_disagree",
    ] {
        assert!(history.contains(action), "{action}: {r}");
    }
}

async fn an_accepted_correction_amends_the_record_in_one_step(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let lab = &ids[0];
    let doc = app.token(DOCTOR).await;
    let pat = app.token(PATIENT).await;
    let id = request(&app, lab).await;
    let note = "Demo note: re-run confirmed the patient's account.";
    let r = app
        .gql(
            Some(&doc),
            &respond_op(),
            json!({ "id": id, "a": true, "why": note, "am": lab_amendment("4.9") }),
        )
        .await;
    let c = &r["data"]["respondToCorrection"];
    assert_eq!(c["status"], "ACCEPTED", "{r}");
    assert_eq!(c["amendedVersion"], 2);
    assert_eq!(c["response"], note);
    // The record moved on by one version, the change recorded as CORRECTION.
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { record(id: $id) { version recordStatus ... on LabResult { value }
                history { version change changedBy reason record { ... on LabResult { value } } }
                correctionRequests { id status amendedVersion } } }",
            json!({ "id": lab }),
        )
        .await;
    let rec = &r["data"]["record"];
    assert_eq!(rec["version"], 2, "{r}");
    assert_eq!(rec["recordStatus"], "AMENDED");
    assert_eq!(rec["value"], "4.9");
    assert_eq!(rec["history"][0]["version"], 1);
    assert_eq!(rec["history"][0]["change"], "CORRECTION");
    assert_eq!(rec["history"][0]["reason"], note);
    assert_eq!(rec["history"][0]["record"]["value"], "5.4");
    assert_eq!(rec["history"][0]["changedBy"], app.me(&doc).await["id"]);
    assert_eq!(
        rec["correctionRequests"][0]["amendedVersion"],
        rec["version"]
    );
    assert_eq!(rec["correctionRequests"][0]["status"], "ACCEPTED");
    // Both writes committed together, each audited.
    assert_eq!(
        app.audit_count(&format!(
            "action = 'record.correct' AND resource_id = '{lab}' AND detail LIKE '%\"version\":2%'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.audit_count(&format!(
            "action = 'record.correction_respond' AND detail LIKE '%ACCEPTED%' AND detail LIKE '%{id}%'"
        ))
        .await,
        1
    );
    // Answered: it takes no second answer, nor a statement of disagreement.
    let r = app
        .gql(
            Some(&doc),
            &respond_op(),
            json!({ "id": id, "a": false, "why": DENIAL }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app
        .gql(
            Some(&pat),
            &disagree_op(),
            json!({ "id": id, "t": STATEMENT }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // An ADMIN answers too; an amendment of another kind is VALIDATION and changes nothing.
    let second = request(&app, lab).await;
    let admin = app.token(ADMIN).await;
    let r = app
        .gql(
            Some(&admin),
            &respond_op(),
            json!({ "id": second, "a": true, "am": { "allergy": { "substance": "Demo", "severity": "MILD" } } }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert_eq!(
        r["errors"][0]["extensions"]["fields"][0], "amendment",
        "{r}"
    );
    let r = app
        .gql(
            Some(&admin),
            &respond_op(),
            json!({ "id": second, "a": true, "am": lab_amendment("5.0") }),
        )
        .await;
    assert_eq!(r["data"]["respondToCorrection"]["amendedVersion"], 3, "{r}");
    assert!(r["data"]["respondToCorrection"]["response"].is_null());
}

async fn corrections_are_refused_to_whom_they_must_be(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let lab = &ids[0];
    let pid = app.patient_id(PATIENT).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let d2 = app.token(DOCTOR2).await;
    let p2 = app.token(PATIENT2).await;
    let admin = app.token(ADMIN).await;
    let ask = json!({ "r": lab, "t": REQUEST_TEXT });
    // Asking: not signed in, staff (the role rule), another patient (not there at all).
    let r = app.gql(None, &request_op(), ask.clone()).await;
    assert_eq!(code(&r), Some("UNAUTHENTICATED"), "{r}");
    for t in [&doc, &admin] {
        let r = app.gql(Some(t), &request_op(), ask.clone()).await;
        assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    }
    let r = app.gql(Some(&p2), &request_op(), ask.clone()).await;
    let missing = app
        .gql(
            Some(&p2),
            &request_op(),
            json!({ "r": uuid::Uuid::new_v4().to_string(), "t": REQUEST_TEXT }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    assert_eq!(r["errors"][0]["message"], missing["errors"][0]["message"]);
    // Text of 5 to 2000 characters, never echoed.
    for t in ["Zqx!", &"Zqx ".repeat(600)] {
        let r = app
            .gql(Some(&pat), &request_op(), json!({ "r": lab, "t": t }))
            .await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
        assert!(!r.to_string().contains("Zqx"), "input echoed: {r}");
    }
    let id = request(&app, lab).await;
    let deny = json!({ "id": id, "a": false, "why": DENIAL });
    // Answering: a provider outside the care team does not see the record: NOT_FOUND, as
    // for a request that does not exist.
    let r = app.gql(Some(&d2), &respond_op(), deny.clone()).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let unknown = app
        .gql(
            Some(&d2),
            &respond_op(),
            json!({ "id": uuid::Uuid::new_v4().to_string(), "a": false, "why": DENIAL }),
        )
        .await;
    assert_eq!(r["errors"][0]["message"], unknown["errors"][0]["message"]);
    // The patient may not answer their own request (the role rule).
    let r = app.gql(Some(&pat), &respond_op(), deny.clone()).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    // A care-team provider who reads the record but did not write it: FORBIDDEN.
    let d2_provider = app.provider_id(DOCTOR2).await;
    let r = app
        .gql(
            Some(&admin),
            "mutation($p: ID!, $d: ID!) { assignCareTeam(patientId: $p, providerId: $d) }",
            json!({ "p": pid, "d": d2_provider }),
        )
        .await;
    assert_eq!(r["data"]["assignCareTeam"], true, "{r}");
    let r = app
        .gql(
            Some(&pat),
            "mutation($p: ID!, $g: ID!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: [RECORDS] }) { status } }",
            json!({ "p": pid, "g": d2_provider }),
        )
        .await;
    assert_eq!(r["data"]["grantConsent"]["status"], "ACTIVE", "{r}");
    let r = app
        .gql(
            Some(&d2),
            "query($id: ID!) { record(id: $id) { id correctionRequests { id } } }",
            json!({ "id": lab }),
        )
        .await;
    assert_eq!(
        r["data"]["record"]["correctionRequests"][0]["id"],
        id.as_str(),
        "{r}"
    );
    let r = app.gql(Some(&d2), &respond_op(), deny.clone()).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(
        app.audit_count(
            "action = 'record.correction_respond' AND outcome = 'DENIED' AND patient_id IS NOT NULL"
        )
        .await,
        2,
        "the outsider's and the non-author's refusals"
    );
    // The author: accepting needs an amendment, denying a reason; neither is both.
    for (v, field) in [
        (json!({ "id": id, "a": true }), "amendment"),
        (json!({ "id": id, "a": false }), "reason"),
        (
            json!({ "id": id, "a": false, "why": DENIAL, "am": lab_amendment("4.9") }),
            "amendment",
        ),
        (json!({ "id": id, "a": false, "why": "no" }), "reason"),
    ] {
        let r = app.gql(Some(&doc), &respond_op(), v).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["fields"][0], field, "{r}");
    }
    // Disagreeing before an answer is VALIDATION.
    let r = app
        .gql(
            Some(&pat),
            &disagree_op(),
            json!({ "id": id, "t": STATEMENT }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Answered once; a second answer is CONFLICT.
    let r = app.gql(Some(&doc), &respond_op(), deny.clone()).await;
    assert_eq!(r["data"]["respondToCorrection"]["status"], "DENIED", "{r}");
    let r = app.gql(Some(&doc), &respond_op(), deny).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // Only the patient disagrees: not staff (the role rule), not another patient.
    let v = json!({ "id": id, "t": STATEMENT });
    let r = app.gql(Some(&doc), &disagree_op(), v.clone()).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app.gql(Some(&p2), &disagree_op(), v.clone()).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    // The patient's list is the patient's and ADMIN's only.
    let mine = "query($p: ID!) { patient(id: $p) { givenName correctionRequests { id } } }";
    let r = app.gql(Some(&doc), mine, json!({ "p": pid })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert_eq!(r["data"]["patient"]["givenName"], "Testy");
    assert!(r["data"]["patient"]["correctionRequests"].is_null());
    // Nothing was filed or answered by the refusals: one request, denied, undisputed.
    let r = app.gql(Some(&pat), mine, json!({ "p": pid })).await;
    assert_eq!(
        r["data"]["patient"]["correctionRequests"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{r}"
    );
    let by_id = "query($id: ID!) { record(id: $id) { version } }";
    let r = app.gql(Some(&pat), by_id, json!({ "id": lab })).await;
    assert_eq!(r["data"]["record"]["version"], 1, "{r}");
}
