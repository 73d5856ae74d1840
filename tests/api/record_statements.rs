//! Statement counts of the medical-records reads: a page of records, the per-patient
//! lists (medications, allergies, appointments) across a page of patients, and the portal's home screen
//! (benchmark workload (f)), cost a constant number of data statements, whatever the number
//! of rows.
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_page_of_records_costs_the_same_for_5_and_50,
    medications_and_allergies_of_a_page_of_patients_are_batched,
    appointments_of_a_page_of_patients_are_batched,
    the_home_screen_costs_the_same_for_3_and_30_appointments_and_records
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

const PATIENT_VISITS: &str = r#"query($n: Int!) { patients(first: $n) { edges { node { id
    appointments(first: 2) { edges { node { id startsAt provider { displayName } } } } } } } }"#;

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

/// Each patient of a page with their next visits (and the visits' provider): the pages are
/// one statement together, on SQLite as on PostgreSQL.
async fn appointments_of_a_page_of_patients_are_batched(b: Backend) {
    let app = spawn_app(b).await;
    let mut bulk: Vec<Uuid> = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 30, false, |_, ids, _| {
        bulk.extend_from_slice(ids)
    })
    .await
    .unwrap();
    let doc = app.token(DOCTOR).await;
    // Once unmeasured, as above.
    let r = app.gql(Some(&doc), PATIENT_VISITS, json!({ "n": 5 })).await;
    assert!(r["errors"].is_null(), "{r}");
    let mut counts = Vec::new();
    for n in [5usize, 30] {
        let (data, _, r) = statements(&app, &doc, PATIENT_VISITS, json!({ "n": n })).await;
        assert!(r["errors"].is_null(), "{r}");
        let edges = r["data"]["patients"]["edges"]
            .as_array()
            .expect("page")
            .clone();
        assert_eq!(edges.len(), n, "{r}");
        let mut seen = std::collections::HashSet::new();
        for e in &edges {
            let visits = e["node"]["appointments"]["edges"]
                .as_array()
                .expect("visits");
            // Every bulk patient has three visits with the demo doctor: two shown, each the
            // patient's own (no id turns up under two patients).
            if bulk.iter().any(|id| e["node"]["id"] == id.to_string()) {
                assert_eq!(visits.len(), 2, "{e}");
            }
            for v in visits {
                assert!(v["node"]["provider"]["displayName"].is_string(), "{v}");
                assert!(seen.insert(v["node"]["id"].to_string()), "{v} twice");
            }
        }
        counts.push(data);
    }
    println!(
        "{b:?}: patients(first: N) {{ appointments }}: N=5: {}, N=30: {} data statements",
        counts[0], counts[1]
    );
    assert!(counts[1] <= SMALL, "{b:?}: {} data statements", counts[1]);
    assert!(
        counts[1] <= counts[0] + 1,
        "{b:?}: data statements grow with the patients: {} for 5, {} for 30",
        counts[0],
        counts[1]
    );
}

async fn medications_and_allergies_of_a_page_of_patients_are_batched(b: Backend) {
    let app = spawn_app(b).await;
    let mut bulk: Vec<Uuid> = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 30, false, |_, ids, _| {
        bulk.extend_from_slice(ids)
    })
    .await
    .unwrap();
    assert_eq!(bulk.len(), 30);
    let doc = app.token(DOCTOR).await;
    // The bulk seed gives every patient two medications (one of them stopped) and an
    // allergy; one more of each, written here, tells the patients' rows apart.
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
                assert_eq!(meds.len(), 3, "{node}");
                assert_eq!(allergies.len(), 2, "{node}");
                let mine = |list: &[Value], field: &str, prefix: &str| -> Vec<String> {
                    list.iter()
                        .filter_map(|m| m[field].as_str())
                        .filter(|d| d.starts_with(prefix))
                        .map(str::to_owned)
                        .collect()
                };
                assert_eq!(
                    mine(meds, "drug", "Demo drug "),
                    [format!("Demo drug {i}")],
                    "{node}"
                );
                assert_eq!(
                    mine(allergies, "substance", "Demo substance "),
                    [format!("Demo substance {i}")],
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

/// Benchmark workload (f), the portal's home screen: the patient with their next three
/// appointments, active medications, allergies and last five lab results. The same text as
/// `HOME` in bench/run.mjs: change both together.
const HOME: &str = "query($id: ID!, $now: DateTime!) { patient(id: $id) { id givenName familyName birthDate appointments(status: SCHEDULED, from: $now, first: 3) { edges { node { id startsAt endsAt status reason provider { id displayName } } } } medications(activeOnly: true) { id drug dose route frequency startOn } allergies { id substance reaction severity status } labResults(first: 5) { edges { node { id code display value unit referenceRange abnormal observedAt } } } } }";

const BOOK: &str = r#"mutation($p: ID!, $d: ID!, $at: DateTime!) {
  scheduleAppointment(input: { patientId: $p, providerId: $d, startsAt: $at, durationMinutes: 30, reason: "Demo check-up" }) { id } }"#;
const SLOTS: &str = "query($d: ID!, $from: DateTime!, $to: DateTime!) { providerAvailability(providerId: $d, from: $from, to: $to) { startsAt } }";

/// The home screen's lists in a response: (appointments, medications, allergies, labs).
fn home_sizes(r: &Value) -> (usize, usize, usize, usize) {
    let p = &r["data"]["patient"];
    let len = |v: &Value| v.as_array().map_or(usize::MAX, Vec::len);
    (
        len(&p["appointments"]["edges"]),
        len(&p["medications"]),
        len(&p["allergies"]),
        len(&p["labResults"]["edges"]),
    )
}

/// What one home-screen request cost: data and audit statements, how many of the data
/// statements were consent-scope lookups (`None` when they could not be told apart), and
/// the response.
async fn home_statements(
    app: &TestApp,
    token: &str,
    vars: &Value,
) -> (u64, u64, Option<u64>, Value) {
    let request_id = format!("home-{}", Uuid::new_v4().simple());
    let (d0, a0) = app.state.sql.snapshot();
    let r: Value = app
        .client
        .post(&app.url)
        .bearer_auth(token)
        .header("x-request-id", &request_id)
        .json(&json!({ "query": HOME, "variables": vars }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (d1, a1) = app.state.sql.snapshot();
    let lookups = consent_lookups::installed().then(|| consent_lookups::of(&request_id));
    (d1 - d0, a1 - a0, lookups, r)
}

/// Consent-scope lookups (`… FROM "consents" …`) per request, counted from the server's
/// `caregraph::sql` trace events inside the request's `http` span, keyed by the
/// `x-request-id` the test sends (so tests running beside it in one process do not count).
///
/// Why: the home screen has three lists under consent (medications, allergies, lab
/// results). The per-request cache of the viewer's standing in `access` is checked, then
/// filled; the three lists resolve concurrently, so each may find the scopes not loaded yet
/// and load them itself: 1 to 3 identical lookups per request, by scheduling, whatever the
/// number of rows (measured 6–8 data statements on both backends at both sizes). Until that
/// load is made single-flight, the test compares the statements besides those lookups, and
/// bounds the lookups.
mod consent_lookups {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    static COUNTS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    static INSTALLED: OnceLock<bool> = OnceLock::new();

    struct RequestId(String);

    /// One field's value, as text.
    struct FieldText(&'static str, Option<String>);

    impl Visit for FieldText {
        fn record_str(&mut self, f: &Field, v: &str) {
            if f.name() == self.0 {
                self.1 = Some(v.to_owned());
            }
        }
        fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
            if f.name() == self.0 {
                self.1 = Some(format!("{v:?}"));
            }
        }
    }

    struct Counter;

    impl<S> Layer<S> for Counter
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            if attrs.metadata().name() != "http" {
                return;
            }
            let mut v = FieldText("request_id", None);
            attrs.record(&mut v);
            if let (Some(r), Some(span)) = (v.1, ctx.span(id)) {
                span.extensions_mut().insert(RequestId(r));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut v = FieldText("sql", None);
            event.record(&mut v);
            if !v.1.is_some_and(|sql| sql.contains(r#"FROM "consents""#)) {
                return;
            }
            let Some(scope) = ctx.event_scope(event) else {
                return;
            };
            for span in scope {
                if let Some(RequestId(r)) = span.extensions().get::<RequestId>() {
                    let mut counts = COUNTS.lock().unwrap();
                    *counts
                        .get_or_insert_with(HashMap::new)
                        .entry(r.clone())
                        .or_default() += 1;
                    return;
                }
            }
        }
    }

    /// Make the counter the process's subscriber, once (before the first server starts,
    /// so `TEST_LOG=1` shows no logs for this test). False when another subscriber was
    /// there first.
    pub fn install() -> bool {
        *INSTALLED.get_or_init(|| {
            let only = Targets::new()
                .with_target("caregraph::sql", LevelFilter::TRACE)
                .with_target("caregraph::http", LevelFilter::INFO);
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(Counter.with_filter(only)),
            )
            .is_ok()
        })
    }

    pub fn installed() -> bool {
        INSTALLED.get().copied().unwrap_or(false)
    }

    pub fn of(request_id: &str) -> u64 {
        COUNTS
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|c| c.get(request_id).copied())
            .unwrap_or(0)
    }
}

async fn the_home_screen_costs_the_same_for_3_and_30_appointments_and_records(b: Backend) {
    let counted = consent_lookups::install();
    let app = spawn_app(b).await;
    let mut bulk: Vec<Uuid> = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 1, false, |_, ids, _| {
        bulk.extend_from_slice(ids)
    })
    .await
    .unwrap();
    let pid = bulk[0].to_string();
    let doc = app.token(DOCTOR).await;
    let vars = json!({ "id": pid, "now": Utc::now().to_rfc3339() });
    // Once unmeasured: the first sight of an operation may cost what later ones do not.
    let r = app.gql(Some(&doc), HOME, vars.clone()).await;
    assert!(r["errors"].is_null(), "{r}");

    // As seeded: 3 appointments (one completed, two to come) and 8 records (2 lab
    // results, a note, an active and a stopped medication, an allergy, an immunization, a
    // document).
    let (few, few_audit, few_lookups, r) = home_statements(&app, &doc, &vars).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(home_sizes(&r), (2, 1, 1, 2), "{r}");
    let next = &r["data"]["patient"]["appointments"]["edges"];
    assert_eq!(next[0]["node"]["status"], "SCHEDULED", "{r}");
    assert_eq!(next[0]["node"]["reason"], "Demo follow-up", "{r}");
    assert!(
        next[0]["node"]["provider"]["displayName"].is_string(),
        "{r}"
    );

    // 27 more appointments (30 in all) and 22 more records (30 in all).
    let doctor = app.provider_id(DOCTOR).await;
    let now = Utc::now();
    let r = app
        .gql(
            Some(&doc),
            SLOTS,
            json!({ "d": doctor, "from": (now + TimeDelta::days(1)).to_rfc3339(),
                    "to": (now + TimeDelta::days(29)).to_rfc3339() }),
        )
        .await;
    let slots = r["data"]["providerAvailability"]
        .as_array()
        .unwrap_or_else(|| panic!("no slots: {r}"))
        .clone();
    assert!(slots.len() >= 27, "{r}");
    for slot in slots.iter().take(27) {
        let r = app
            .gql(
                Some(&doc),
                BOOK,
                json!({ "p": pid, "d": doctor, "at": slot["startsAt"] }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    for i in 0..22 {
        let (q, v) = match i % 4 {
            0 | 1 => (LAB, json!({ "p": pid })),
            2 => (MED, json!({ "p": pid, "drug": format!("Demo drug {i}") })),
            _ => (
                ALLERGY,
                json!({ "p": pid, "s": format!("Demo substance {i}") }),
            ),
        };
        let r = app.gql(Some(&doc), q, v).await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let (many, many_audit, many_lookups, r) = home_statements(&app, &doc, &vars).await;
    assert!(r["errors"].is_null(), "{r}");
    // 12 lab results, 5 prescriptions and 5 allergies written: the lists show 3 of the 29
    // coming appointments, the 6 active medications, the 6 allergies and 5 of the 14 lab
    // results.
    assert_eq!(home_sizes(&r), (3, 6, 6, 5), "{r}");

    println!(
        "{b:?}: the home screen (workload (f)) with 3 appointments and 8 records: {few} data \
         ({few_lookups:?} of them consent lookups), {few_audit} audit statements; with 30 and \
         30: {many} data ({many_lookups:?} consent lookups), {many_audit} audit statements"
    );
    assert!(
        many <= SMALL,
        "{b:?}: {many} data statements for the home screen"
    );
    // The consent scopes come with the patient read (`access::reads`), not per list.
    if let (Some(fl), Some(ml)) = (few_lookups, many_lookups) {
        assert_eq!((fl, ml), (0, 0), "{b:?}: consent lookups of their own");
    } else {
        // Another subscriber was installed first (TEST_LOG=1 under `cargo test`): the
        // lookups cannot be counted.
        assert!(!counted);
    }
    // The patient, the appointments and the three lists: the lists of one request (and of
    // every other in flight) share statements, so at most one each, however many rows.
    for (n, rows) in [(few, "3 appointments and 8 records"), (many, "30 and 30")] {
        assert!(
            n <= 5,
            "{b:?}: {n} data statements for the home screen with {rows}"
        );
    }
}
