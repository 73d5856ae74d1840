//! Statement counts: reads cost a constant number of queries, whatever the page size.
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_patient_read_is_one_query_plus_the_audit_batch,
    listing_patients_costs_a_constant_number_of_queries,
    known_operations_answer_bad_variables_as_on_first_sight
);

/// Statements (data, audit) that one request caused.
async fn statements(
    app: &TestApp,
    token: &str,
    query: &str,
    variables: serde_json::Value,
) -> (u64, u64, serde_json::Value) {
    let (d0, a0) = app.state.sql.snapshot();
    let r = app.gql(Some(token), query, variables).await;
    let (d1, a1) = app.state.sql.snapshot();
    (d1 - d0, a1 - a0, r)
}

async fn a_patient_read_is_one_query_plus_the_audit_batch(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let q = "query($id: ID!) { patient(id: $id) { id givenName familyName birthDate } }";
    for email in [DOCTOR, PATIENT, ADMIN] {
        let t = app.token(email).await;
        let (data, audit, r) = statements(&app, &t, q, json!({ "id": pid })).await;
        assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
        assert_eq!(
            data, 1,
            "{email}: {data} data statements for one patient read"
        );
        // The audit batch: lock the chain head, insert the rows, move the head.
        assert!(audit <= 3, "{email}: {audit} audit statements");
    }
}

async fn listing_patients_costs_a_constant_number_of_queries(b: Backend) {
    let app = spawn_app(b).await;
    caregraph::seed::bulk_patients(&app.state, 60, false, |_, _, _| {})
        .await
        .unwrap();
    let t = app.token(DOCTOR).await;
    // Demographics of every row, decrypted and audited per patient.
    let q = "query($n: Int!) { patients(first: $n) { totalCount edges { node { id mrn givenName familyName birthDate email phone address { city } } } } }";
    let (small, _, r) = statements(&app, &t, q, json!({ "n": 2 })).await;
    assert_eq!(
        r["data"]["patients"]["edges"].as_array().unwrap().len(),
        2,
        "{r}"
    );
    let (large, _, r) = statements(&app, &t, q, json!({ "n": 50 })).await;
    assert_eq!(
        r["data"]["patients"]["edges"].as_array().unwrap().len(),
        50,
        "{r}"
    );
    assert_eq!(r["data"]["patients"]["totalCount"], 61);
    assert_eq!(
        small, large,
        "statements grow with the page size: {small} for 2, {large} for 50"
    );
    assert!(large <= 6, "{large} statements for a page");
}

/// Operations seen before skip parsing and, for the same shape of variables, validation
/// (graphql::operation_cache). Every bad value must still be answered exactly as the first
/// time the operation is seen: the cold text differs only by a trailing comment, so error
/// positions match.
async fn known_operations_answer_bad_variables_as_on_first_sight(b: Backend) {
    let app = spawn_app(b).await;
    let pid = app.patient_id(PATIENT).await;
    let t = app.token(DOCTOR).await;
    let read = "query($id: ID!) { patient(id: $id) { id givenName } }";
    let list = "query($n: Int) { patients(first: $n) { edges { node { givenName } } } }";
    // A custom scalar whose validity the value's shape decides (its text is parsed when the
    // resolver reads it).
    let dated = "query($id: ID!, $from: DateTime) { patient(id: $id) { appointments(from: $from, first: 2) { edges { node { id } } } } }";
    // Warm all three: the documents and their validation for good values.
    for _ in 0..2 {
        let r = app.gql(Some(&t), read, json!({ "id": pid })).await;
        assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
        let r = app.gql(Some(&t), list, json!({ "n": 5 })).await;
        assert!(r["errors"].is_null(), "{r}");
        let r = app
            .gql(
                Some(&t),
                dated,
                json!({ "id": pid, "from": "2026-01-01T00:00:00Z" }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let cases = [
        (read, json!({ "id": 1.5 })),
        (read, json!({ "id": true })),
        (read, json!({ "id": null })),
        (read, json!({ "id": { "a": 1 } })),
        (read, json!({ "id": [pid.clone()] })),
        (read, json!({})),
        (read, json!({ "id": 7 })),
        (list, json!({ "n": 2.5 })),
        (list, json!({ "n": "5" })),
        (list, json!({ "n": 18446744073709551615u64 })),
        (list, json!({ "n": null })),
        (dated, json!({ "id": pid, "from": "not a time" })),
        (dated, json!({ "id": pid, "from": 5 })),
        (dated, json!({ "id": pid, "from": null })),
        (dated, json!({ "id": pid, "from": { "a": 1 } })),
        (
            dated,
            json!({ "id": pid, "from": ["2026-01-01T00:00:00Z"] }),
        ),
        (dated, json!({ "id": pid })),
    ];
    for (i, (q, vars)) in cases.into_iter().enumerate() {
        let cold = app.gql(Some(&t), &format!("{q} # {i}"), vars.clone()).await;
        let warm = app.gql(Some(&t), q, vars.clone()).await;
        assert_eq!(warm, cold, "{q} with {vars}");
        let again = app.gql(Some(&t), q, vars.clone()).await;
        assert_eq!(again, cold, "{q} with {vars}, twice");
    }
    // Refused values really were refused before anything ran.
    let r = app.gql(Some(&t), read, json!({ "id": 1.5 })).await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert!(r["data"].is_null(), "{r}");
}
