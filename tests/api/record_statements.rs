//! Statement counts of the medical-records reads: a page of records, and the per-patient
//! lists (medications, allergies) across a page of patients, cost a constant number of
//! data statements, whatever the number of rows.
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_page_of_records_costs_the_same_for_5_and_50,
    medications_and_allergies_of_a_page_of_patients_are_batched
);

/// At most this many data statements for one read, so that a regression to a query per row
/// (or per patient) fails even if it happened to cost the same at both sizes.
const SMALL: u64 = 12;

const LAB: &str = r#"mutation($p: ID!) { recordLabResult(patientId: $p, input: {
    code: "2345-7", display: "Glucose", value: "5.4", unit: "mmol/L", referenceRange: "3.9-5.5",
    observedAt: "2026-11-20T08:30:00Z" }) { id } }"#;
const NOTE: &str = r#"mutation($p: ID!) { addVisitNote(patientId: $p, input: {
    encounterOn: "2026-11-21", text: "Demo note: feeling better." }) { id } }"#;
const MED: &str = r#"mutation($p: ID!, $drug: String!) { prescribeMedication(patientId: $p, input: {
    drug: $drug, dose: "500 mg", route: "oral", frequency: "twice daily", startOn: "2026-11-01" }) { id } }"#;
const IMM: &str = r#"mutation($p: ID!) { recordImmunization(patientId: $p, input: {
    cvxCode: "208", administeredOn: "2026-11-25", lot: "DEMO-LOT-1", site: "left deltoid", dose: "0.5", doseUnit: "mL" }) { id } }"#;
const DOC: &str = r#"mutation($p: ID!) { addDocument(patientId: $p, input: {
    title: "Demo discharge letter", documentType: "Discharge summary", contentType: "text/plain",
    content: "RGVtbyBsZXR0ZXIgYm9keQ==" }) { id } }"#;
const ALLERGY: &str = r#"mutation($p: ID!, $s: String!) { recordAllergy(patientId: $p, input: { substance: $s, severity: MODERATE }) { id } }"#;

/// One page of every kind, with a field of each kind's own (few fields: the page must stay
/// under the complexity limit at 50).
const RECORDS: &str = r#"query($p: ID!, $first: Int!) { patient(id: $p) {
    records(first: $first) { totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { id kind recordStatus
        ... on LabResult { value }
        ... on VisitNote { text }
        ... on Medication { drug }
        ... on Allergy { substance }
        ... on Immunization { cvxCode }
        ... on ClinicalDocument { title } } } } } }"#;

const PATIENTS: &str = r#"query($n: Int!) { patients(first: $n) { edges { node { id
    medications { drug } allergies { substance } } } } }"#;

/// Statements (data, audit) that one request caused.
async fn statements(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: Value,
) -> (u64, u64, Value) {
    let (d0, a0) = app.state.sql.snapshot();
    let r = app.gql(Some(token), query, variables).await;
    let (d1, a1) = app.state.sql.snapshot();
    (d1 - d0, a1 - a0, r)
}

/// Write `n` records of a mix of kinds for the patient, as the token's user.
async fn write_mixed(app: &TestApp, token: &str, pid: &str, n: usize, from: usize) {
    for i in from..from + n {
        let (q, v, field) = match i % 6 {
            0 => (LAB, json!({ "p": pid }), "recordLabResult"),
            1 => (NOTE, json!({ "p": pid }), "addVisitNote"),
            2 => (
                MED,
                json!({ "p": pid, "drug": format!("Demo drug {i}") }),
                "prescribeMedication",
            ),
            3 => (IMM, json!({ "p": pid }), "recordImmunization"),
            4 => (DOC, json!({ "p": pid }), "addDocument"),
            _ => (
                ALLERGY,
                json!({ "p": pid, "s": format!("Demo substance {i}") }),
                "recordAllergy",
            ),
        };
        let r = app.gql(Some(token), q, v).await;
        assert!(r["errors"].is_null(), "{field}: {r}");
        assert!(r["data"][field]["id"].is_string(), "{field}: {r}");
    }
}

async fn a_page_of_records_costs_the_same_for_5_and_50(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let vars = json!({ "p": pid, "first": 50 });
    // The demo data seeds one record of each of the six kinds.
    write_mixed(&app, &doc, &pid, 5, 0).await;
    // Once unmeasured: the first sight of an operation may cost what later ones do not.
    let r = app.gql(Some(&doc), RECORDS, vars.clone()).await;
    assert!(r["errors"].is_null(), "{r}");
    let (few, few_audit, r) = statements(&app, &doc, RECORDS, vars.clone()).await;
    assert!(r["errors"].is_null(), "{r}");
    let conn = &r["data"]["patient"]["records"];
    assert_eq!(conn["totalCount"], 11, "{r}");
    assert_eq!(conn["edges"].as_array().unwrap().len(), 11, "{r}");
    assert_eq!(conn["pageInfo"]["hasNextPage"], false, "{r}");

    write_mixed(&app, &doc, &pid, 45, 5).await;
    let (many, many_audit, r) = statements(&app, &doc, RECORDS, vars).await;
    assert!(r["errors"].is_null(), "{r}");
    let conn = &r["data"]["patient"]["records"];
    assert_eq!(conn["totalCount"], 56, "{r}");
    let edges = conn["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 50, "{r}");
    assert_eq!(conn["pageInfo"]["hasNextPage"], true, "{r}");
    let mut kinds: Vec<&str> = edges
        .iter()
        .map(|e| e["node"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds.len(), 6, "every kind on the page: {kinds:?}");

    println!(
        "{b:?}: records(first: 50) with 5 records written (11 shown): {few} data, {few_audit} audit statements; \
         with 50 written (50 shown): {many} data, {many_audit} audit statements"
    );
    assert_eq!(
        few, many,
        "{b:?}: data statements grow with the records: {few} for 11 shown, {many} for 50"
    );
    assert!(many <= SMALL, "{b:?}: {many} data statements for a page");
}

async fn medications_and_allergies_of_a_page_of_patients_are_batched(b: Backend) {
    let app = spawn_app(b).await;
    let mut bulk: Vec<Uuid> = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 30, |_, ids| bulk.extend_from_slice(ids))
        .await
        .unwrap();
    assert_eq!(bulk.len(), 30);
    let doc = app.token(DOCTOR).await;
    // Rows to find for every patient, not only empty lists: one medication and one allergy.
    for (i, id) in bulk.iter().enumerate() {
        let p = id.to_string();
        let r = app
            .gql(
                Some(&doc),
                MED,
                json!({ "p": p, "drug": format!("Demo drug {i}") }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
        let r = app
            .gql(
                Some(&doc),
                ALLERGY,
                json!({ "p": p, "s": format!("Demo substance {i}") }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let page = |r: &Value| -> Vec<Value> {
        r["data"]["patients"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("no page: {r}"))
            .clone()
    };
    // Once unmeasured, as above.
    let r = app.gql(Some(&doc), PATIENTS, json!({ "n": 5 })).await;
    assert!(r["errors"].is_null(), "{r}");

    let mut counts = Vec::new();
    for n in [5usize, 30] {
        let (data, audit, r) = statements(&app, &doc, PATIENTS, json!({ "n": n })).await;
        assert!(r["errors"].is_null(), "{r}");
        let edges = page(&r);
        assert_eq!(edges.len(), n, "{r}");
        for e in &edges {
            let node = &e["node"];
            let meds = node["medications"].as_array().expect("medications");
            let allergies = node["allergies"].as_array().expect("allergies");
            // Each bulk patient gets their own rows, and only theirs.
            if let Some(i) = bulk.iter().position(|id| node["id"] == id.to_string()) {
                assert_eq!(meds.len(), 1, "{node}");
                assert_eq!(allergies.len(), 1, "{node}");
                assert_eq!(meds[0]["drug"], format!("Demo drug {i}"), "{node}");
                assert_eq!(
                    allergies[0]["substance"],
                    format!("Demo substance {i}"),
                    "{node}"
                );
            }
        }
        counts.push((n, data, audit));
    }
    let (_, few, few_audit) = counts[0];
    let (_, many, many_audit) = counts[1];
    println!(
        "{b:?}: patients(first: N) {{ medications allergies }}: N=5: {few} data, {few_audit} audit statements; \
         N=30: {many} data, {many_audit} audit statements"
    );
    assert_eq!(
        few, many,
        "{b:?}: data statements grow with the patients: {few} for 5, {many} for 30"
    );
    assert!(many <= SMALL, "{b:?}: {many} data statements for a page");
}
