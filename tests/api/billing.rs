//! Billing over HTTP: who sees and pays what (BILLING consent for providers), payments
//! approved, declined and timed out, idempotency, 20 parallel payments that never
//! overdraw, reconciliation without a second charge, ADMIN's issue, void and refund,
//! coverage and eligibility, audit rows and ciphertext at rest.
use std::collections::HashSet;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

use crate::audit::cli;
use crate::helpers::*;
use crate::messages::consent_only;
use crate::on_both_backends;

on_both_backends!(
    statements_are_seen_by_whom_they_belong_to,
    payments_approve_decline_and_never_overdraw,
    a_payment_key_charges_once,
    twenty_parallel_payments_never_overdraw,
    a_lost_gateway_answer_is_reconciled_without_charging_again,
    admins_issue_void_and_refund,
    coverage_and_eligibility,
    synthetic_portal_accounts_reach_their_own_thread_and_statement,
);

const STATEMENTS: &str = "query($p: ID!, $s: StatementStatus) { billingStatements(patientId: $p, status: $s) { edges { node { id status currency totalCents balanceCents lineItems { code description amountCents serviceDate } payments { id status amountCents } } } } }";
const STATEMENT: &str =
    "query($id: ID!) { statement(id: $id) { id status balanceCents totalCents } }";
const PAY: &str = "mutation($s: ID!, $a: Int!, $t: String! = \"tok_sandbox_approve\", $k: String!) { makePayment(statementId: $s, amountCents: $a, paymentMethodToken: $t, idempotencyKey: $k) { id status amountCents } }";

/// The demo patient's open statement: (id, balance).
async fn open_statement(app: &TestApp, token: &str, pid: &str) -> (String, i64) {
    let r = app
        .gql(Some(token), STATEMENTS, json!({ "p": pid, "s": "OPEN" }))
        .await;
    let node = &r["data"]["billingStatements"]["edges"][0]["node"];
    (
        node["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned(),
        node["balanceCents"].as_i64().unwrap(),
    )
}

async fn pay(app: &TestApp, token: &str, st: &str, amount: i64, tok: &str, key: &str) -> Value {
    app.gql(
        Some(token),
        PAY,
        json!({ "s": st, "a": amount, "t": tok, "k": key }),
    )
    .await
}

async fn balance(app: &TestApp, token: &str, st: &str) -> i64 {
    let r = app.gql(Some(token), STATEMENT, json!({ "id": st })).await;
    r["data"]["statement"]["balanceCents"]
        .as_i64()
        .unwrap_or_else(|| panic!("{r}"))
}

fn uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap()
}

async fn statements_are_seen_by_whom_they_belong_to(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app.gql(Some(&pat), STATEMENTS, json!({ "p": pid })).await;
    let st = &r["data"]["billingStatements"]["edges"][0]["node"];
    assert_eq!(st["status"], "OPEN", "{r}");
    assert_eq!(st["totalCents"], 16750);
    assert_eq!(st["balanceCents"], 16750);
    assert_eq!(st["currency"], "USD");
    assert_eq!(st["lineItems"][0]["code"], "99213");
    let id = st["id"].as_str().unwrap().to_owned();
    // Other patients and providers off the care team: as if it did not exist.
    for who in [PATIENT2, DOCTOR2] {
        let t = app.token(who).await;
        let r = app.gql(Some(&t), STATEMENT, json!({ "id": id })).await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{who}: {r}");
        let r = app.gql(Some(&t), STATEMENTS, json!({ "p": pid })).await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{who}: {r}");
        assert!(!r.to_string().contains("99213"));
    }
    let t = app.token(PATIENT2).await;
    let r = pay(&app, &t, &id, 100, "tok_sandbox_approve", "k-p2").await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    // Researchers: refused; providers never pay.
    let t = app.token(RESEARCHER).await;
    let r = app.gql(Some(&t), STATEMENT, json!({ "id": id })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let doc = app.token(DOCTOR).await;
    let r = pay(&app, &doc, &id, 100, "tok_sandbox_approve", "k-doc").await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    // The care-team doctor reads billing only under BILLING consent.
    let r = app.gql(Some(&doc), STATEMENT, json!({ "id": id })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "BILLING");
    let doctor = app.provider_id(DOCTOR).await;
    consent_only(&app, &pat, &pid, &doctor, &["BILLING"]).await;
    let r = app.gql(Some(&doc), STATEMENT, json!({ "id": id })).await;
    assert_eq!(r["data"]["statement"]["balanceCents"], 16750, "{r}");
    // Every read is audited.
    assert!(app.audit_count("action = 'billing.read'").await >= 2);
}

async fn payments_approve_decline_and_never_overdraw(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let (st, bal) = open_statement(&app, &pat, &pid).await;
    let r = pay(&app, &pat, &st, 5000, "tok_sandbox_approve", "k1").await;
    assert_eq!(r["data"]["makePayment"]["status"], "SUCCEEDED", "{r}");
    assert_eq!(balance(&app, &pat, &st).await, bal - 5000);
    // A decline is a payment with that status, not an error; nothing is taken.
    let r = pay(&app, &pat, &st, 5000, "tok_sandbox_decline", "k2").await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["makePayment"]["status"], "DECLINED", "{r}");
    assert_eq!(balance(&app, &pat, &st).await, bal - 5000);
    for (amount, key) in [(0, "k3"), (-5, "k4"), (bal, "k5")] {
        let r = pay(&app, &pat, &st, amount, "tok_sandbox_approve", key).await;
        assert_eq!(code(&r), Some("VALIDATION"), "{amount}: {r}");
    }
    let r = pay(&app, &pat, &st, bal - 5000, "tok_sandbox_approve", "k6").await;
    assert_eq!(r["data"]["makePayment"]["status"], "SUCCEEDED", "{r}");
    let r = app.gql(Some(&pat), STATEMENT, json!({ "id": st })).await;
    assert_eq!(r["data"]["statement"]["status"], "PAID", "{r}");
    assert_eq!(r["data"]["statement"]["balanceCents"], 0);
    let r = pay(&app, &pat, &st, 1, "tok_sandbox_approve", "k7").await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    assert_eq!(app.audit_count("action = 'payment.create'").await, 3);
    assert_eq!(app.audit_count("action = 'payment.settle'").await, 3);
}

async fn a_payment_key_charges_once(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let (st, bal) = open_statement(&app, &pat, &pid).await;
    let first = pay(&app, &pat, &st, 1000, "tok_sandbox_approve", "same").await;
    let again = pay(&app, &pat, &st, 1000, "tok_sandbox_approve", "same").await;
    assert_eq!(
        first["data"]["makePayment"]["id"], again["data"]["makePayment"]["id"],
        "{again}"
    );
    assert_eq!(again["data"]["makePayment"]["status"], "SUCCEEDED");
    let other = pay(&app, &pat, &st, 2000, "tok_sandbox_approve", "same").await;
    assert_eq!(code(&other), Some("CONFLICT"), "{other}");
    assert_eq!(balance(&app, &pat, &st).await, bal - 1000);
    // Twenty at once with one key: one payment, one charge.
    let all = (0..20).map(|_| pay(&app, &pat, &st, 500, "tok_sandbox_approve", "burst"));
    let results = futures_util::future::join_all(all).await;
    let ids: HashSet<String> = results
        .iter()
        .filter_map(|r| r["data"]["makePayment"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    for r in &results {
        assert!(
            r["data"]["makePayment"]["id"].is_string() || code(r) == Some("CONFLICT"),
            "{r}"
        );
    }
    assert_eq!(balance(&app, &pat, &st).await, bal - 1500);
}

async fn twenty_parallel_payments_never_overdraw(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let (st, bal) = open_statement(&app, &pat, &pid).await;
    assert_eq!(bal, 16750);
    let all = (0..20).map(|i| {
        let key = format!("parallel-{i}");
        let (app, pat, st) = (&app, &pat, &st);
        async move { pay(app, pat, st, 1000, "tok_sandbox_approve", &key).await }
    });
    let results = futures_util::future::join_all(all).await;
    let ok = results
        .iter()
        .filter(|r| r["data"]["makePayment"]["status"] == "SUCCEEDED")
        .count();
    let refused = results
        .iter()
        .filter(|r| code(r) == Some("VALIDATION"))
        .count();
    assert_eq!((ok, refused), (16, 4), "{results:?}");
    assert_eq!(balance(&app, &pat, &st).await, 750);
    // The ledger agrees: one charge, sixteen payments.
    let entries = entity::ledger_entries::Entity::find()
        .filter(entity::ledger_entries::Column::StatementId.eq(uuid(&st)))
        .all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(entries.len(), 17);
    assert_eq!(entries.iter().map(|e| e.amount_cents).sum::<i64>(), 750);
}

async fn a_lost_gateway_answer_is_reconciled_without_charging_again(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let (st, bal) = open_statement(&app, &pat, &pid).await;
    let r = pay(&app, &pat, &st, 2500, "tok_sandbox_timeout", "slow").await;
    assert_eq!(r["data"]["makePayment"]["status"], "PENDING", "{r}");
    let id = r["data"]["makePayment"]["id"].as_str().unwrap().to_owned();
    // In flight: the same key is CONFLICT, and the amount stays reserved.
    let again = pay(&app, &pat, &st, 2500, "tok_sandbox_timeout", "slow").await;
    assert_eq!(code(&again), Some("CONFLICT"), "{again}");
    let r = pay(&app, &pat, &st, bal - 2000, "tok_sandbox_approve", "more").await;
    assert_eq!(code(&r), Some("VALIDATION"), "reservation ignored: {r}");
    assert_eq!(balance(&app, &pat, &st).await, bal);
    // Reconciliation asks the gateway, which had charged: SUCCEEDED, once.
    let out = cli(&app, &["billing", "reconcile"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 succeeded"), "{text}");
    assert_eq!(balance(&app, &pat, &st).await, bal - 2500);
    let r = pay(&app, &pat, &st, 2500, "tok_sandbox_timeout", "slow").await;
    assert_eq!(r["data"]["makePayment"]["id"], id.as_str(), "{r}");
    assert_eq!(r["data"]["makePayment"]["status"], "SUCCEEDED", "{r}");
    let charges = entity::sandbox_charges::Entity::find()
        .filter(entity::sandbox_charges::Column::Key.eq(id.clone()))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(charges, 1);
    // Run again: nothing left to do, nothing charged.
    let out = cli(&app, &["billing", "reconcile"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 succeeded"));
    assert_eq!(balance(&app, &pat, &st).await, bal - 2500);
}

async fn admins_issue_void_and_refund(b: Backend) {
    let app = spawn_app(b).await;
    let admin = app.token(ADMIN).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let issue = "mutation($p: ID!, $i: IssueStatementInput!) { issueStatement(patientId: $p, input: $i) { id status totalCents balanceCents } }";
    let input = |amount: i64| {
        json!({ "dueOn": "2030-01-31", "lineItems": [
            { "serviceDate": "2026-11-20", "description": "Demo x-ray", "code": "71046", "amountCents": amount },
        ] })
    };
    let r = app
        .gql(Some(&pat), issue, json!({ "p": pid, "i": input(100) }))
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app
        .gql(Some(&admin), issue, json!({ "p": pid, "i": input(0) }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let r = app
        .gql(Some(&admin), issue, json!({ "p": pid, "i": input(9000) }))
        .await;
    let st = r["data"]["issueStatement"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    assert_eq!(r["data"]["issueStatement"]["balanceCents"], 9000);
    // Paid, then refunded in part: the statement owes again.
    let p = pay(&app, &pat, &st, 9000, "tok_sandbox_approve", "full").await;
    let payment = p["data"]["makePayment"]["id"].clone();
    let r = app.gql(Some(&pat), STATEMENT, json!({ "id": st })).await;
    assert_eq!(r["data"]["statement"]["status"], "PAID", "{r}");
    let refund = "mutation($p: ID!, $a: Int!) { refundPayment(paymentId: $p, amountCents: $a, reason: \"Demo: billed twice\") { id refundedCents } }";
    let r = app
        .gql(Some(&admin), refund, json!({ "p": payment, "a": 9001 }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let r = app
        .gql(Some(&admin), refund, json!({ "p": payment, "a": 4000 }))
        .await;
    assert_eq!(r["data"]["refundPayment"]["refundedCents"], 4000, "{r}");
    let r = app.gql(Some(&pat), STATEMENT, json!({ "id": st })).await;
    assert_eq!(r["data"]["statement"]["status"], "OPEN", "{r}");
    assert_eq!(r["data"]["statement"]["balanceCents"], 4000);
    // A statement with payments is not voided; one without is, to a zero balance.
    let void = "mutation($id: ID!) { voidStatement(id: $id, reason: \"Demo: issued in error\") { status balanceCents } }";
    let r = app.gql(Some(&admin), void, json!({ "id": st })).await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    let r = app
        .gql(Some(&admin), issue, json!({ "p": pid, "i": input(500) }))
        .await;
    let other = r["data"]["issueStatement"]["id"].clone();
    let r = app.gql(Some(&admin), void, json!({ "id": other })).await;
    assert_eq!(r["data"]["voidStatement"]["status"], "VOID", "{r}");
    assert_eq!(r["data"]["voidStatement"]["balanceCents"], 0);
    let r = pay(
        &app,
        &pat,
        other.as_str().unwrap(),
        100,
        "tok_sandbox_approve",
        "void",
    )
    .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    for action in ["statement.issue", "statement.void", "payment.refund"] {
        assert!(
            app.audit_count(&format!("action = '{action}'")).await >= 1,
            "{action}"
        );
    }
    // The refund's reason is kept with its ledger entry, sealed to that row.
    use sea_orm::{ColumnTrait, QueryFilter};
    let refund_entry = entity::ledger_entries::Entity::find()
        .filter(entity::ledger_entries::Column::Kind.eq("REFUND"))
        .one(&app.state.db)
        .await
        .unwrap()
        .expect("a REFUND entry");
    let sealed = refund_entry
        .reason_enc
        .expect("the refund's reason is stored");
    assert!(!String::from_utf8_lossy(&sealed).contains("billed twice"));
    let slot = caregraph::crypto::Slot {
        table: "ledger_entries",
        column: "reason",
        row: &refund_entry.id,
    };
    assert_eq!(
        app.state.keys.open_str(slot, &sealed).unwrap(),
        "Demo: billed twice"
    );
    // The ledger refuses to be rewritten.
    use sea_orm::ConnectionTrait;
    assert!(
        app.state
            .db
            .execute_unprepared("UPDATE ledger_entries SET amount_cents = 0")
            .await
            .is_err()
    );
}

async fn coverage_and_eligibility(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            "query($p: ID!) { patient(id: $p) { coverages { id payer planName memberId subscriberRelationship } } }",
            json!({ "p": pid }),
        )
        .await;
    let seeded = &r["data"]["patient"]["coverages"][0];
    assert_eq!(seeded["memberId"], "DEMO123456", "{r}");
    let add = "mutation($p: ID!, $m: String!) { addCoverage(patientId: $p, input: { payer: \"Demo Payer\", planName: \"Demo HMO\", memberId: $m, subscriberRelationship: SELF, effectiveFrom: \"2025-01-01\" }) { id memberId } }";
    let verify = "mutation($c: ID!) { verifyCoverage(coverageId: $c) { status planName copayCents checkedAt } }";
    let r = app
        .gql(Some(&pat), verify, json!({ "c": seeded["id"] }))
        .await;
    assert_eq!(r["data"]["verifyCoverage"]["status"], "ACTIVE", "{r}");
    assert!(r["data"]["verifyCoverage"]["copayCents"].is_i64());
    let r = app
        .gql(Some(&pat), add, json!({ "p": pid, "m": "INACTIVE-77" }))
        .await;
    let inactive = r["data"]["addCoverage"]["id"].clone();
    let r = app.gql(Some(&pat), verify, json!({ "c": inactive })).await;
    assert_eq!(r["data"]["verifyCoverage"]["status"], "INACTIVE", "{r}");
    // Others: NOT_FOUND; the care-team doctor without BILLING consent: CONSENT_REQUIRED.
    let p2 = app.token(PATIENT2).await;
    let r = app.gql(Some(&p2), verify, json!({ "c": inactive })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let r = app.gql(Some(&p2), add, json!({ "p": pid, "m": "X" })).await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let doc = app.token(DOCTOR).await;
    let r = app
        .gql(
            Some(&doc),
            "query($p: ID!) { patient(id: $p) { givenName coverages { id } } }",
            json!({ "p": pid }),
        )
        .await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy");
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    // Member ids and line items are ciphertext at rest.
    let rows = entity::coverages::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap();
    for row in rows {
        assert!(!String::from_utf8_lossy(&row.member_id_enc).contains("DEMO123456"));
        assert!(!String::from_utf8_lossy(&row.member_id_enc).contains("INACTIVE"));
    }
    for row in entity::billing_statements::Entity::find()
        .all(&app.state.db)
        .await
        .unwrap()
    {
        assert!(!String::from_utf8_lossy(&row.lines_enc).contains("99213"));
    }
}

/// `seed-demo --portal-accounts` (the benchmarks' patients): a synthetic patient signs in
/// with the demo password, finds their one thread with the demo doctor and their open
/// statement, and pays it; the doctor writes to the thread; another synthetic patient gets
/// NOT_FOUND for both.
async fn synthetic_portal_accounts_reach_their_own_thread_and_statement(b: Backend) {
    let app = spawn_app(b).await;
    let mut accounts = Vec::new();
    caregraph::seed::bulk_patients(&app.state, 2, true, |_, _, a| accounts.extend_from_slice(a))
        .await
        .unwrap();
    assert_eq!(accounts.len(), 2);
    let (mine, other) = (&accounts[0], &accounts[1]);
    let tok = app.token(&mine.email).await;
    let r = app.gql(Some(&tok), crate::messages::INBOX, json!({})).await;
    let threads = r["data"]["inbox"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(threads.len(), 1, "{r}");
    assert_eq!(threads[0]["node"]["id"], mine.thread.to_string(), "{r}");
    let (st, bal) = open_statement(&app, &tok, &mine.patient.to_string()).await;
    assert_eq!(
        (st.as_str(), bal),
        (mine.statement.to_string().as_str(), 12_500)
    );
    let r = pay(&app, &tok, &st, 100, "tok_sandbox_approve", "synthetic-1").await;
    assert_eq!(r["data"]["makePayment"]["status"], "SUCCEEDED", "{r}");
    assert_eq!(balance(&app, &tok, &st).await, 12_400);

    let doc = app.token(DOCTOR).await;
    let r = app
        .gql(
            Some(&doc),
            crate::messages::SEND,
            json!({ "t": mine.thread.to_string(), "b": "Synthetic reply" }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");

    let stranger = app.token(&other.email).await;
    let r = app
        .gql(Some(&stranger), STATEMENT, json!({ "id": st }))
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
    let r = app
        .gql(
            Some(&stranger),
            crate::messages::THREAD,
            json!({ "id": mine.thread.to_string() }),
        )
        .await;
    assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
}
