//! Medical records: every kind written and read over HTTP, consent per category inside
//! mixed lists, SENSITIVE records, amendments with history, idempotent writes, refusals by
//! role, audit rows and ciphertext at rest.
use base64::Engine;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    every_kind_is_written_and_read_back,
    consent_per_category_inside_mixed_lists,
    sensitive_records_need_the_sensitive_consent,
    amendments_keep_history_and_check_the_version,
    idempotent_writes_do_not_duplicate,
    writes_are_refused_to_whom_they_must_be,
    record_by_id_follows_the_same_decision,
    record_values_are_ciphertext_at_rest,
    list_reads_are_audited_with_the_records_shown,
    documents_up_to_a_mebibyte_for_signed_in_callers_only,
    record_access_history_names_the_basis,
    fhir_export_holds_what_the_viewer_may_see,
    a_share_opens_one_record_to_one_provider_until_revoked,
);

const LAB: &str = r#"mutation($p: ID!, $k: String) { recordLabResult(patientId: $p, idempotencyKey: $k, input: {
    code: "2345-7", display: "Glucose", value: "5.4", unit: "mmol/L", referenceRange: "3.9-5.5",
    observedAt: "2026-11-20T08:30:00Z" }) { id kind version recordStatus ... on LabResult { code value unit abnormal observedAt } } }"#;
const NOTE: &str = r#"mutation($p: ID!) { addVisitNote(patientId: $p, input: {
    encounterOn: "2026-11-21", text: "Demo note: feeling better." }) { id kind ... on VisitNote { text encounterOn authorId author { displayName } } } }"#;
const MED: &str = r#"mutation($p: ID!, $k: String, $drug: String!) { prescribeMedication(patientId: $p, idempotencyKey: $k, input: {
    drug: $drug, dose: "500 mg", route: "oral", frequency: "twice daily", startOn: "2026-11-01" }) { id kind ... on Medication { drug status startOn prescriberId } } }"#;
const IMM: &str = r#"mutation($p: ID!, $cvx: String!) { recordImmunization(patientId: $p, input: {
    cvxCode: $cvx, administeredOn: "2026-11-25", lot: "DEMO-LOT-1", site: "left deltoid", dose: "0.5", doseUnit: "mL" }) { id kind ... on Immunization { cvxCode vaccine administeredOn lot } } }"#;
const DOC: &str = r#"mutation($p: ID!, $c: String!, $s: Sensitivity! = NORMAL) { addDocument(patientId: $p, input: {
    title: "Demo discharge letter", documentType: "Discharge summary", contentType: "text/plain", content: $c, sensitivity: $s }) { id kind sensitivity ... on ClinicalDocument { title size contentType } } }"#;
const ALLERGY: &str = r#"mutation($p: ID!) { recordAllergy(patientId: $p, input: { substance: "Demo latex", severity: MODERATE }) { id substance status } }"#;

const RECORDS: &str = r#"query($p: ID!, $f: RecordFilter, $first: Int! = 20, $after: String) { patient(id: $p) { givenName
    records(filter: $f, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { id kind version recordStatus sensitivity } } } } }"#;

pub(crate) fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Replace every consent the patient gave the doctor with one covering `scopes`.
pub(crate) async fn consent_only(app: &TestApp, scopes: &[&str]) {
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { consents(patientId: $id) { id status } }",
            json!({ "id": pid }),
        )
        .await;
    for c in r["data"]["consents"].as_array().expect("consents") {
        if c["status"] == "ACTIVE" {
            let w = app
                .gql(
                    Some(&pat),
                    "mutation($id: ID!) { withdrawConsent(id: $id) { status } }",
                    json!({ "id": c["id"] }),
                )
                .await;
            assert_eq!(w["data"]["withdrawConsent"]["status"], "WITHDRAWN", "{w}");
        }
    }
    if scopes.is_empty() {
        return;
    }
    let doc = app.provider_id(DOCTOR).await;
    let r = app
        .gql(
            Some(&pat),
            "mutation($p: ID!, $g: ID!, $s: [ConsentScope!]!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: $s }) { status } }",
            json!({ "p": pid, "g": doc, "s": scopes }),
        )
        .await;
    assert_eq!(r["data"]["grantConsent"]["status"], "ACTIVE", "{r}");
}

/// One record of every kind for the demo patient, written by the demo doctor.
pub(crate) async fn write_one_of_each(app: &TestApp) -> Vec<String> {
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let mut ids = Vec::new();
    for (q, v, field) in [
        (LAB, json!({ "p": pid }), "recordLabResult"),
        (NOTE, json!({ "p": pid }), "addVisitNote"),
        (
            MED,
            json!({ "p": pid, "drug": "Demo metformin" }),
            "prescribeMedication",
        ),
        (IMM, json!({ "p": pid, "cvx": "208" }), "recordImmunization"),
        (
            DOC,
            json!({ "p": pid, "c": b64("Demo letter body") }),
            "addDocument",
        ),
        (ALLERGY, json!({ "p": pid }), "recordAllergy"),
    ] {
        let r = app.gql(Some(&doc), q, v).await;
        assert!(r["errors"].is_null(), "{field}: {r}");
        ids.push(r["data"][field]["id"].as_str().unwrap().to_owned());
    }
    ids
}

fn kinds(r: &Value) -> Vec<String> {
    r["data"]["patient"]["records"]["edges"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["node"]["kind"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn every_kind_is_written_and_read_back(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let doc_provider = app.provider_id(DOCTOR).await;
    let r = app.gql(Some(&doc), LAB, json!({ "p": pid })).await;
    let lab = &r["data"]["recordLabResult"];
    assert_eq!(lab["kind"], "LAB_RESULT", "{r}");
    assert_eq!(lab["version"], 1);
    assert_eq!(lab["recordStatus"], "CURRENT");
    assert_eq!(lab["unit"], "mmol/L");
    assert_eq!(lab["observedAt"], "2026-11-20T08:30:00+00:00");
    let r = app.gql(Some(&doc), NOTE, json!({ "p": pid })).await;
    assert_eq!(r["data"]["addVisitNote"]["authorId"], doc_provider, "{r}");
    assert_eq!(
        r["data"]["addVisitNote"]["author"]["displayName"], "Dr. Demo Doctor",
        "{r}"
    );
    let r = app
        .gql(
            Some(&doc),
            MED,
            json!({ "p": pid, "drug": "Demo metformin" }),
        )
        .await;
    assert_eq!(r["data"]["prescribeMedication"]["status"], "ACTIVE", "{r}");
    let r = app
        .gql(Some(&doc), IMM, json!({ "p": pid, "cvx": "08" }))
        .await;
    let imm = &r["data"]["recordImmunization"];
    assert_eq!(imm["cvxCode"], "08", "{r}");
    assert!(imm["vaccine"].as_str().unwrap().contains("Hep B"), "{r}");
    // An unknown CVX code is VALIDATION, naming the field only.
    let r = app
        .gql(Some(&doc), IMM, json!({ "p": pid, "cvx": "9999" }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert!(!r.to_string().contains("9999"), "input echoed: {r}");
    let r = app
        .gql(
            Some(&doc),
            DOC,
            json!({ "p": pid, "c": b64("Demo letter body") }),
        )
        .await;
    let d = &r["data"]["addDocument"];
    assert_eq!(d["size"], 16, "{r}");
    let id = d["id"].as_str().unwrap();
    // The patient reads it all, the document's content included.
    let pat = app.token(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { record(id: $id) { kind ... on ClinicalDocument { title content } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        r["data"]["record"]["content"],
        b64("Demo letter body"),
        "{r}"
    );
    let r = app
        .gql(
            Some(&pat),
            r#"query($p: ID!) { patient(id: $p) {
                medications(activeOnly: true) { drug status }
                allergies { substance status }
                labResults(first: 5) { totalCount edges { node { code value } } }
                visitNotes(first: 5) { edges { node { text } } }
                immunizations(first: 5) { edges { node { cvxCode } } }
                documents(first: 5) { edges { node { title } } } } }"#,
            json!({ "p": pid }),
        )
        .await;
    let p = &r["data"]["patient"];
    assert!(r["errors"].is_null(), "{r}");
    assert!(
        p["medications"].to_string().contains("Demo metformin"),
        "{r}"
    );
    assert_eq!(p["allergies"][0]["substance"], "Demo peanut protein", "{r}");
    // One seeded by the demo data, one written here.
    assert_eq!(p["labResults"]["totalCount"], 2);
    assert_eq!(p["labResults"]["edges"][0]["node"]["code"], "2345-7");
    assert_eq!(
        p["visitNotes"]["edges"][0]["node"]["text"],
        "Demo note: feeling better."
    );
    assert_eq!(p["immunizations"]["edges"][0]["node"]["cvxCode"], "08");
    assert_eq!(
        p["documents"]["edges"][0]["node"]["title"],
        "Demo discharge letter"
    );
    // The mixed list, newest first, paged with opaque cursors.
    let r = app
        .gql(Some(&pat), RECORDS, json!({ "p": pid, "first": 2 }))
        .await;
    let conn = &r["data"]["patient"]["records"];
    // Six seeded (one of each kind), five written here.
    assert_eq!(conn["totalCount"], 11, "{r}");
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let mut seen = kinds(&r);
    let mut after = conn["pageInfo"]["endCursor"].clone();
    loop {
        let r = app
            .gql(
                Some(&pat),
                RECORDS,
                json!({ "p": pid, "first": 2, "after": after }),
            )
            .await;
        seen.extend(kinds(&r));
        let info = &r["data"]["patient"]["records"]["pageInfo"];
        if info["hasNextPage"] != true {
            break;
        }
        after = info["endCursor"].clone();
    }
    assert_eq!(seen.len(), 11);
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [
            "ALLERGY",
            "DOCUMENT",
            "IMMUNIZATION",
            "LAB_RESULT",
            "MEDICATION",
            "VISIT_NOTE"
        ]
    );
    // A code filter goes through the blind index.
    let r = app
        .gql(
            Some(&pat),
            RECORDS,
            json!({ "p": pid, "f": { "code": "2345-7" } }),
        )
        .await;
    assert_eq!(kinds(&r), ["LAB_RESULT"], "{r}");
    let r = app
        .gql(
            Some(&pat),
            RECORDS,
            json!({ "p": pid, "f": { "code": "8" } }),
        )
        .await;
    assert_eq!(kinds(&r), ["IMMUNIZATION"], "{r}");
    // A cursor of another connection is refused.
    let r = app
        .gql(
            Some(&pat),
            RECORDS,
            json!({ "p": pid, "after": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("p1:x") }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
}

async fn consent_per_category_inside_mixed_lists(b: Backend) {
    let app = spawn_app(b).await;
    write_one_of_each(&app).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    // Six seeded, six written.
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 12, "{r}");
    consent_only(&app, &["MEDICATIONS"]).await;
    // Only medications, and the total counts only those.
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(kinds(&r), ["MEDICATION", "MEDICATION"]);
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 2);
    // Asking for labs by kind: CONSENT_REQUIRED naming RECORDS, demographics still there.
    let r = app
        .gql(
            Some(&doc),
            RECORDS,
            json!({ "p": pid, "f": { "kinds": ["LAB_RESULT", "MEDICATION"] } }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    assert!(r["data"]["patient"]["records"].is_null());
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"));
    assert_eq!(r["errors"][0]["extensions"]["scope"], "RECORDS");
    for (field, scope) in [
        ("labResults(first: 5) { totalCount }", "RECORDS"),
        ("visitNotes(first: 5) { totalCount }", "RECORDS"),
        ("immunizations(first: 5) { totalCount }", "IMMUNIZATIONS"),
        ("documents(first: 5) { totalCount }", "DOCUMENTS"),
        ("allergies { id }", "ALLERGIES"),
    ] {
        let q = format!("query($p: ID!) {{ patient(id: $p) {{ givenName {field} }} }}");
        let r = app.gql(Some(&doc), &q, json!({ "p": pid })).await;
        assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{field}: {r}");
        assert_eq!(r["errors"][0]["extensions"]["scope"], scope, "{field}");
        assert_eq!(r["data"]["patient"]["givenName"], "Testy");
    }
    let r = app
        .gql(
            Some(&doc),
            "query($p: ID!) { patient(id: $p) { medications { drug } } }",
            json!({ "p": pid }),
        )
        .await;
    assert!(
        r["data"]["patient"]["medications"]
            .to_string()
            .contains("Demo metformin"),
        "{r}"
    );
    // No clinical consent at all: the list is refused, naming the first category.
    consent_only(&app, &[]).await;
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["data"]["patient"]["givenName"], "Testy");
    // The patient always sees their own.
    let pat = app.token(PATIENT).await;
    let r = app.gql(Some(&pat), RECORDS, json!({ "p": pid })).await;
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 12, "{r}");
}

async fn sensitive_records_need_the_sensitive_consent(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    consent_only(&app, &["DOCUMENTS"]).await;
    // Without SENSITIVE, a provider cannot write a sensitive record either.
    let sensitive = json!({ "p": pid, "c": b64("Demo sensitive letter"), "s": "SENSITIVE" });
    let r = app.gql(Some(&doc), DOC, sensitive.clone()).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "SENSITIVE");
    consent_only(&app, &["DOCUMENTS", "SENSITIVE"]).await;
    let r = app.gql(Some(&doc), DOC, sensitive).await;
    assert_eq!(r["data"]["addDocument"]["sensitivity"], "SENSITIVE", "{r}");
    let secret = r["data"]["addDocument"]["id"].as_str().unwrap().to_owned();
    let r = app
        .gql(
            Some(&doc),
            DOC,
            json!({ "p": pid, "c": b64("Demo ordinary letter") }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    // The seeded letter and the two written here.
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 3, "{r}");
    // SENSITIVE withdrawn: the record is gone from lists, totals and by id, as if it never was.
    consent_only(&app, &["DOCUMENTS"]).await;
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 2, "{r}");
    assert!(!r.to_string().contains(&secret));
    let by_id = "query($id: ID!) { record(id: $id) { id } }";
    let r = app.gql(Some(&doc), by_id, json!({ "id": secret })).await;
    let missing = app
        .gql(
            Some(&doc),
            by_id,
            json!({ "id": uuid::Uuid::new_v4().to_string() }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    assert_eq!(r["errors"][0]["message"], missing["errors"][0]["message"]);
    // Nor can it be changed (and so found) through a write.
    let r = app
        .gql(
            Some(&doc),
            "mutation($id: ID!) { markEnteredInError(id: $id, reason: \"testing the boundary\") { id } }",
            json!({ "id": secret }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    // The patient sees both.
    let pat = app.token(PATIENT).await;
    let r = app.gql(Some(&pat), RECORDS, json!({ "p": pid })).await;
    assert_eq!(r["data"]["patient"]["records"]["totalCount"], 8, "{r}");
}

async fn amendments_keep_history_and_check_the_version(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app.gql(Some(&doc), LAB, json!({ "p": pid })).await;
    let id = r["data"]["recordLabResult"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let amend = r#"mutation($id: ID!, $v: Int!, $value: String!) { amendRecord(id: $id, expectedVersion: $v, reason: "corrected transcription",
        input: { labResult: { code: "2345-7", value: $value, unit: "mmol/L", observedAt: "2026-11-20T08:30:00Z" } }) {
        id version recordStatus ... on LabResult { value }
        history { version change changedBy reason record { ... on LabResult { value } } } } }"#;
    let r = app
        .gql(
            Some(&doc),
            amend,
            json!({ "id": id, "v": 1, "value": "5.9" }),
        )
        .await;
    let a = &r["data"]["amendRecord"];
    assert_eq!(a["version"], 2, "{r}");
    assert_eq!(a["recordStatus"], "AMENDED");
    assert_eq!(a["value"], "5.9");
    assert_eq!(a["history"][0]["version"], 1);
    assert_eq!(a["history"][0]["change"], "AMEND");
    assert_eq!(a["history"][0]["reason"], "corrected transcription");
    assert_eq!(a["history"][0]["record"]["value"], "5.4");
    // A stale version is CONFLICT, and nothing changes.
    let r = app
        .gql(
            Some(&doc),
            amend,
            json!({ "id": id, "v": 1, "value": "6.1" }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // Another kind's input is VALIDATION.
    let r = app
        .gql(
            Some(&doc),
            r#"mutation($id: ID!) { amendRecord(id: $id, expectedVersion: 2, input: { allergy: { substance: "x", severity: MILD } }) { id } }"#,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Entered in error: kept, out of lists, frozen.
    let r = app
        .gql(
            Some(&doc),
            "mutation($id: ID!) { markEnteredInError(id: $id, reason: \"wrong patient chart\") { recordStatus version } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        r["data"]["markEnteredInError"]["recordStatus"], "ENTERED_IN_ERROR",
        "{r}"
    );
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert!(!r.to_string().contains(&id), "{r}");
    let r = app
        .gql(
            Some(&doc),
            RECORDS,
            json!({ "p": pid, "f": { "includeEnteredInError": true } }),
        )
        .await;
    assert!(r.to_string().contains(&id), "{r}");
    let r = app
        .gql(
            Some(&doc),
            amend,
            json!({ "id": id, "v": 3, "value": "6.1" }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Stop a medication; stopping again is CONFLICT.
    let r = app
        .gql(Some(&doc), MED, json!({ "p": pid, "drug": "Demo statin" }))
        .await;
    let med = r["data"]["prescribeMedication"]["id"].clone();
    let stop = "mutation($id: ID!) { stopMedication(id: $id, reason: \"side effects reported\") { ... on Medication { status stopReason stopOn } } }";
    let r = app.gql(Some(&doc), stop, json!({ "id": med })).await;
    assert_eq!(r["data"]["stopMedication"]["status"], "STOPPED", "{r}");
    assert_eq!(
        r["data"]["stopMedication"]["stopReason"],
        "side effects reported"
    );
    let r = app.gql(Some(&doc), stop, json!({ "id": med })).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // The database refuses deleting records and rewriting versions.
    let db = &app.state.db;
    let be = db.get_database_backend();
    assert!(
        db.execute(Statement::from_string(be, "DELETE FROM medical_records"))
            .await
            .is_err()
    );
    assert!(
        db.execute(Statement::from_string(
            be,
            "UPDATE medical_record_versions SET version = 9"
        ))
        .await
        .is_err()
    );
}

async fn idempotent_writes_do_not_duplicate(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let v = json!({ "p": pid, "k": "rx-2026-12-01-1", "drug": "Demo amoxicillin" });
    let first = app.gql(Some(&doc), MED, v.clone()).await;
    let again = app.gql(Some(&doc), MED, v).await;
    assert!(first["errors"].is_null(), "{first}");
    assert_eq!(
        first["data"]["prescribeMedication"]["id"], again["data"]["prescribeMedication"]["id"],
        "{again}"
    );
    let r = app
        .gql(
            Some(&doc),
            "query($p: ID!) { patient(id: $p) { medications { id } } }",
            json!({ "p": pid }),
        )
        .await;
    assert_eq!(
        r["data"]["patient"]["medications"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{r}"
    );
    // The same key with another input is CONFLICT.
    let r = app
        .gql(
            Some(&doc),
            MED,
            json!({ "p": pid, "k": "rx-2026-12-01-1", "drug": "Demo ibuprofen" }),
        )
        .await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // Another user's identical key is theirs alone.
    let admin = app.token(ADMIN).await;
    let r = app
        .gql(
            Some(&admin),
            MED,
            json!({ "p": pid, "k": "rx-2026-12-01-1", "drug": "Demo amoxicillin" }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_ne!(
        r["data"]["prescribeMedication"]["id"],
        first["data"]["prescribeMedication"]["id"]
    );
}

async fn writes_are_refused_to_whom_they_must_be(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let v = json!({ "p": pid, "drug": "Demo warfarin" });
    for (who, want) in [
        (PATIENT, "FORBIDDEN"),
        (RESEARCHER, "FORBIDDEN"),
        // Not on the care team: the patient is not there at all.
        (DOCTOR2, "NOT_FOUND"),
    ] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), MED, v.clone()).await;
        assert_eq!(code(&r), Some(want), "{who}: {r}");
    }
    // Break-glass reads, but never writes.
    let t = app.token(DOCTOR2).await;
    let r = app
        .gql(
            Some(&t),
            "mutation($p: ID!) { openEmergencyAccess(patientId: $p, reason: \"unconscious in the emergency room\") { expiresAt } }",
            json!({ "p": pid }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app.gql(Some(&t), MED, v.clone()).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app.gql(Some(&t), RECORDS, json!({ "p": pid })).await;
    assert!(r["errors"].is_null(), "{r}");
    // A field's own audit row carries the grant the record was read under: break-glass.
    let r = app
        .gql(
            Some(&t),
            "query($p: ID!) { patient(id: $p) { documents(first: 1) { edges { node { content correctionRequests { id } } } } } }",
            json!({ "p": pid }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    for action in ["record.read_content", "record.correction_read"] {
        assert_eq!(
            app.audit_count(&format!(
                "action = '{action}' AND break_glass = {}",
                if b == Backend::Postgres { "true" } else { "1" }
            ))
            .await,
            1,
            "{action}"
        );
    }
    // The care-team doctor without MEDICATIONS consent: CONSENT_REQUIRED naming it.
    consent_only(&app, &["RECORDS"]).await;
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), MED, v).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "MEDICATIONS");
    // Every refusal above is an audited denial: the role guard's two, and three by access.
    assert_eq!(
        app.audit_count("outcome = 'DENIED' AND action = 'record.create'")
            .await,
        3
    );
    assert!(
        app.audit_count("outcome = 'DENIED' AND action = 'guard.denied'")
            .await
            >= 2
    );
}

async fn record_by_id_follows_the_same_decision(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let q = "query($id: ID!) { record(id: $id) { id kind } }";
    let lab = &ids[0];
    let med = &ids[2];
    for (who, id, want) in [
        (PATIENT2, lab, Some("NOT_FOUND")),
        (DOCTOR2, lab, Some("NOT_FOUND")),
        (RESEARCHER, lab, Some("FORBIDDEN")),
        (PATIENT, lab, None),
        (ADMIN, lab, None),
        (DOCTOR, med, None),
    ] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), q, json!({ "id": id })).await;
        assert_eq!(code(&r), want, "{who}: {r}");
    }
    consent_only(&app, &["MEDICATIONS"]).await;
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), q, json!({ "id": lab })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "RECORDS");
    let r = app.gql(Some(&doc), q, json!({ "id": med })).await;
    assert_eq!(r["data"]["record"]["kind"], "MEDICATION", "{r}");
}

async fn record_values_are_ciphertext_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    write_one_of_each(&app).await;
    let db = &app.state.db;
    let be = db.get_database_backend();
    for (table, column) in [
        ("medical_records", "content_enc"),
        ("record_blobs", "content_enc"),
    ] {
        let rows = db
            .query_all(Statement::from_string(
                be,
                format!("SELECT {column} AS v FROM {table}"),
            ))
            .await
            .unwrap();
        assert!(!rows.is_empty(), "{table}");
        for row in rows {
            let v: Vec<u8> = row.try_get("", "v").unwrap();
            let text = String::from_utf8_lossy(&v);
            for plain in [
                "Demo",
                "2345-7",
                "mmol",
                "metformin",
                "letter body",
                "latex",
            ] {
                assert!(!text.contains(plain), "{table}.{column} holds {plain}");
            }
        }
    }
}

async fn list_reads_are_audited_with_the_records_shown(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let before = app.audit_count("action = 'record.read'").await;
    let r = app.gql(Some(&doc), RECORDS, json!({ "p": pid })).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(app.audit_count("action = 'record.read'").await, before + 1);
    // The row names every record shown (ids only: no values).
    let where_ids = format!("action = 'record.read' AND detail LIKE '%{}%'", ids[3]);
    assert_eq!(app.audit_count(&where_ids).await, 1);
    assert_eq!(
        app.audit_count("action = 'record.read' AND detail LIKE '%Demo%'")
            .await,
        0
    );
}

async fn documents_up_to_a_mebibyte_for_signed_in_callers_only(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let body = vec![b'x'; 1024 * 1024];
    let content = base64::engine::general_purpose::STANDARD.encode(&body);
    let post = |token: Option<String>, v: Value| {
        let mut req = app
            .client
            .post(&app.url)
            .json(&json!({ "query": DOC, "variables": v }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // 1 MiB decoded (1.4 MB of JSON): accepted from a signed-in provider, and read back whole.
    let r: Value = post(Some(doc.clone()), json!({ "p": pid, "c": content }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["data"]["addDocument"]["size"],
        1024 * 1024,
        "{}",
        &r.to_string()[..200.min(r.to_string().len())]
    );
    // One byte more is VALIDATION, naming the field.
    let over = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 1024 * 1024 + 1]);
    let r: Value = post(Some(doc.clone()), json!({ "p": pid, "c": over }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(code(&r), Some("VALIDATION"));
    // Without a token the same body is refused before it is read: 413.
    let resp = post(None, json!({ "p": pid, "c": content })).await.unwrap();
    assert_eq!(resp.status(), 413);
    let r: Value = resp.json().await.unwrap();
    assert_eq!(code(&r), Some("VALIDATION"));
    // And a signed-in caller is bounded too.
    let huge = "A".repeat(3 * 1024 * 1024);
    let resp = post(Some(doc), json!({ "p": pid, "c": huge }))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

async fn record_access_history_names_the_basis(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let lab = &ids[0];
    let pid = app.patient_id(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pat = app.token(PATIENT).await;
    let by_id = "query($id: ID!) { record(id: $id) { id } }";
    app.gql(Some(&doc), by_id, json!({ "id": lab })).await;
    app.gql(Some(&pat), RECORDS, json!({ "p": pid })).await;
    // Break-glass by the second doctor, then a read under it.
    let d2 = app.token(DOCTOR2).await;
    let r = app
        .gql(
            Some(&d2),
            "mutation($p: ID!) { openEmergencyAccess(patientId: $p, reason: \"unresponsive on arrival\") { id } }",
            json!({ "p": pid }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    app.gql(Some(&d2), by_id, json!({ "id": lab })).await;
    let q = "query($id: ID!) { record(id: $id) { accessHistory(first: 50) { edges { node { action actorRole basis breakGlass } } } } }";
    let r = app.gql(Some(&pat), q, json!({ "id": lab })).await;
    let edges = r["data"]["record"]["accessHistory"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let has = |action: &str, basis: &str| {
        edges
            .iter()
            .any(|e| e["node"]["action"] == action && e["node"]["basis"] == basis)
    };
    assert!(has("record.create", "CARE_TEAM_CONSENT"), "{r}");
    assert!(has("record.read", "CARE_TEAM_CONSENT"), "{r}");
    assert!(has("record.read", "OWNER"), "the list read naming it: {r}");
    assert!(has("record.read", "BREAK_GLASS"), "{r}");
    // Only rows about this record: none about the other kinds' writes.
    assert!(
        edges.iter().all(|e| e["node"]["action"] != "patient.read"),
        "{r}"
    );
    // A provider may not read the history (the field nulls, the rest stays).
    let r = app.gql(Some(&doc), q, json!({ "id": lab })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    assert!(r["data"]["record"]["accessHistory"].is_null(), "{r}");
}

async fn fhir_export_holds_what_the_viewer_may_see(b: Backend) {
    let app = spawn_app(b).await;
    write_one_of_each(&app).await;
    let pid = app.patient_id(PATIENT).await;
    let pat = app.token(PATIENT).await;
    // The seeded appointments, as the patient sees them.
    let r = app
        .gql(
            Some(&pat),
            "query($p: ID!) { patient(id: $p) { appointments(first: 50) { edges { node { id status startsAt endsAt reason provider { id } } } } } }",
            json!({ "p": pid }),
        )
        .await;
    let visits: Vec<Value> = r["data"]["patient"]["appointments"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    assert!(!visits.is_empty(), "the demo data books appointments: {r}");
    let n = visits.len();
    let q = "query($p: ID!) { patient(id: $p) { fhirExport } }";
    let r = app.gql(Some(&pat), q, json!({ "p": pid })).await;
    let bundle = &r["data"]["patient"]["fhirExport"];
    assert_eq!(bundle["resourceType"], "Bundle", "{r}");
    assert_eq!(bundle["type"], "searchset");
    let entries = bundle["entry"].as_array().expect("entries");
    // The patient, six seeded records, six written here, and the appointments.
    assert_eq!(entries.len(), 13 + n, "{r}");
    assert_eq!(bundle["total"], 13 + n);
    // Each appointment as a FHIR Appointment: status mapped, times, participants, reason.
    for v in &visits {
        let id = v["id"].as_str().unwrap();
        let e = entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Appointment" && e["resource"]["id"] == id)
            .unwrap_or_else(|| panic!("appointment {id} missing: {r}"));
        let a = &e["resource"];
        let want = match v["status"].as_str().unwrap() {
            "SCHEDULED" => "booked",
            "COMPLETED" => "fulfilled",
            "CANCELLED" => "cancelled",
            "NO_SHOW" => "noshow",
            other => panic!("{other}"),
        };
        assert_eq!(a["status"], want, "{a}");
        assert_eq!(a["reasonCode"][0]["text"], v["reason"], "{a}");
        let at = |s: &Value| chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap()).unwrap();
        assert_eq!(at(&a["start"]), at(&v["startsAt"]));
        assert_eq!(at(&a["end"]), at(&v["endsAt"]));
        let actors: Vec<&str> = a["participant"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["actor"]["reference"].as_str().unwrap())
            .collect();
        assert_eq!(
            actors,
            [
                format!("Patient/{}", pid.as_str()),
                format!("Practitioner/{}", v["provider"]["id"].as_str().unwrap()),
            ]
        );
        assert!(
            e["fullUrl"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/Appointment/{id}"))
        );
    }
    let types: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    for t in [
        "Patient",
        "Observation",
        "MedicationRequest",
        "AllergyIntolerance",
        "Immunization",
        "DocumentReference",
    ] {
        assert!(types.contains(t), "{t} missing: {types:?}");
    }
    for e in entries {
        let url = e["fullUrl"].as_str().unwrap();
        assert!(
            url.ends_with(e["resource"]["id"].as_str().unwrap()),
            "{url}"
        );
    }
    let imm = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Immunization")
        .unwrap();
    assert_eq!(
        imm["resource"]["vaccineCode"]["coding"][0]["system"],
        "http://hl7.org/fhir/sid/cvx"
    );
    // Documents travel with their content.
    assert!(
        entries
            .iter()
            .any(|e| e["resource"]["content"][0]["attachment"]["data"] == b64("Demo letter body")),
        "{r}"
    );
    // One audit row lists what it held, the appointments included.
    assert_eq!(app.audit_count("action = 'patient.export'").await, 1);
    assert_eq!(
        app.audit_count(&format!(
            "action = 'patient.export' AND detail LIKE '%\"count\":{}%'",
            13 + n
        ))
        .await,
        1
    );
    for v in &visits {
        let w = format!(
            "action = 'patient.export' AND detail LIKE '%\"Appointment/{}\"%'",
            v["id"].as_str().unwrap()
        );
        assert_eq!(app.audit_count(&w).await, 1, "{w}");
    }
    // A provider with MEDICATIONS consent only: the patient, medications and appointments
    // (which need no consent), nothing else.
    consent_only(&app, &["MEDICATIONS"]).await;
    let doc = app.token(DOCTOR).await;
    let r = app.gql(Some(&doc), q, json!({ "p": pid })).await;
    let entries = r["data"]["patient"]["fhirExport"]["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "Patient").count(), 1);
    assert!(
        types
            .iter()
            .all(|t| ["Patient", "MedicationRequest", "Appointment"].contains(t)),
        "{types:?}"
    );
    assert_eq!(types.iter().filter(|t| **t == "Appointment").count(), n);
    assert_eq!(types.len(), 3 + n, "{types:?}");
}

async fn a_share_opens_one_record_to_one_provider_until_revoked(b: Backend) {
    let app = spawn_app(b).await;
    let ids = write_one_of_each(&app).await;
    let (lab, note) = (&ids[0], &ids[1]);
    let pid = app.patient_id(PATIENT).await;
    let pat = app.token(PATIENT).await;
    let d2 = app.token(DOCTOR2).await;
    let d2_provider = app.provider_id(DOCTOR2).await;
    let by_id = "query($id: ID!) { record(id: $id) { id kind ... on LabResult { value } } }";
    // Before: doctor2, outside the care team, sees nothing.
    let r = app.gql(Some(&d2), by_id, json!({ "id": lab })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let share = "mutation($r: ID!, $p: ID!, $e: DateTime!) { shareRecord(recordId: $r, providerId: $p, expiresAt: $e) { id expiresAt revokedAt } }";
    let until = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    // Only the patient shares: not the care team, not another patient.
    let doc = app.token(DOCTOR).await;
    let v = json!({ "r": lab, "p": d2_provider, "e": until });
    assert_eq!(
        code(&app.gql(Some(&doc), share, v.clone()).await),
        Some("FORBIDDEN")
    );
    let p2 = app.token(PATIENT2).await;
    assert_eq!(
        code(&app.gql(Some(&p2), share, v.clone()).await),
        Some("NOT_FOUND"),
        "another patient's record is not there"
    );
    let past = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let r = app
        .gql(
            Some(&pat),
            share,
            json!({ "r": lab, "p": d2_provider, "e": past }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let r = app.gql(Some(&pat), share, v).await;
    let share_id = r["data"]["shareRecord"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    // Now doctor2 reads that record, and only that one.
    let r = app.gql(Some(&d2), by_id, json!({ "id": lab })).await;
    assert_eq!(r["data"]["record"]["value"], "5.4", "{r}");
    let r = app.gql(Some(&d2), by_id, json!({ "id": note })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let r = app
        .gql(
            Some(&d2),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let mine = "{ sharedWithMe { totalCount edges { node { shareId expiresAt patient { givenName familyName birthDate } record { id kind } } } } }";
    let r = app.gql(Some(&d2), mine, json!({})).await;
    let node = &r["data"]["sharedWithMe"]["edges"][0]["node"];
    assert_eq!(node["record"]["id"], lab.as_str(), "{r}");
    assert_eq!(node["patient"]["givenName"], "Testy");
    assert!(node["patient"]["birthDate"].is_string());
    // The patient's access history says the read rested on the share.
    let q = "query($id: ID!) { accessHistory(patientId: $id, first: 100) { edges { node { action actorRole basis } } } }";
    let r = app.gql(Some(&pat), q, json!({ "id": pid })).await;
    assert!(
        r["data"]["accessHistory"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"]["action"] == "record.read" && e["node"]["basis"] == "SHARE"),
        "{r}"
    );
    let r = app
        .gql(
            Some(&pat),
            "query($id: ID!) { patient(id: $id) { recordShares { id revokedAt } } }",
            json!({ "id": pid }),
        )
        .await;
    assert_eq!(
        r["data"]["patient"]["recordShares"][0]["id"],
        share_id.as_str(),
        "{r}"
    );
    // Revoked: the very next read is NOT_FOUND, and the list is empty.
    let revoke = "mutation($id: ID!) { revokeShare(id: $id) { revokedAt } }";
    let r = app.gql(Some(&pat), revoke, json!({ "id": share_id })).await;
    assert!(r["data"]["revokeShare"]["revokedAt"].is_string(), "{r}");
    let r = app.gql(Some(&d2), by_id, json!({ "id": lab })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let r = app.gql(Some(&d2), mine, json!({})).await;
    assert_eq!(r["data"]["sharedWithMe"]["totalCount"], 0, "{r}");
    let r = app.gql(Some(&pat), revoke, json!({ "id": share_id })).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    // An expired share gives nothing either.
    let v = json!({ "r": note, "p": d2_provider, "e": until });
    let r = app.gql(Some(&pat), share, v).await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app.gql(Some(&d2), by_id, json!({ "id": note })).await;
    assert_eq!(r["data"]["record"]["kind"], "VISIT_NOTE", "{r}");
    {
        use sea_orm::{ConnectionTrait, Statement};
        let db = &app.state.db;
        let sql = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "UPDATE record_shares SET expires_at = now() - interval '1 minute'"
            }
            _ => "UPDATE record_shares SET expires_at = '2000-01-01T00:00:00+00:00'",
        };
        db.execute(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap();
    }
    let r = app.gql(Some(&d2), by_id, json!({ "id": note })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    assert!(
        app.audit_count("action = 'record.share' AND outcome = 'SUCCESS'")
            .await
            == 2
    );
}
