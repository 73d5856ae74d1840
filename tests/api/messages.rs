//! Secure messaging over HTTP: threads between a patient and the care team, read state and
//! unread counts, who is refused what (other patients, providers off the care team,
//! break-glass read-only, researchers), MESSAGES consent, idempotent sends, retraction,
//! attachments withheld for want of DOCUMENTS consent, audit rows and ciphertext at rest.
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Statement};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    a_patient_and_the_care_team_write_to_each_other,
    outsiders_are_refused_and_break_glass_only_reads,
    messages_consent_governs_a_providers_access,
    sends_are_idempotent_and_retraction_leaves_a_stub,
    attachments_are_withheld_from_who_may_not_read_them,
    messages_are_audited_and_sealed_at_rest,
    a_send_that_commits_after_the_time_limit_is_answered,
    sends_queued_together_commit_together_and_fail_alone,
    a_message_write_holds_its_lane_not_the_audit_head,
);

pub const START: &str = r#"mutation($p: ID!, $s: String! = "Demo question", $b: String! = "Demo: is my dose right?", $to: [ID!], $att: [ID!], $k: String) {
  startThread(patientId: $p, subject: $s, body: $b, providerIds: $to, attachmentIds: $att, idempotencyKey: $k) {
    id subject patientId participants { id role displayName } unreadCount } }"#;
pub const SEND: &str = r#"mutation($t: ID!, $b: String!, $k: String, $att: [ID!]) {
  sendMessage(threadId: $t, body: $b, idempotencyKey: $k, attachmentIds: $att) {
    id threadId body sentAt cursor retracted sender { id role displayName } } }"#;
pub const THREAD: &str = r#"query($id: ID!, $first: Int! = 20, $after: String, $before: String) {
  thread(id: $id) { id subject unreadCount archived participants { role displayName }
    messages(first: $first, after: $after, before: $before) {
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { id body retracted cursor sender { role displayName } } } } } }"#;
pub const INBOX: &str = r#"query($f: InboxFilterInput) {
  inbox(filter: $f) { totalCount edges { node { id subject unreadCount } } } }"#;
const UNREAD: &str = "{ me { unreadCount } }";
const MARK_READ: &str =
    "mutation($t: ID!, $m: ID!) { markThreadRead(threadId: $t, upTo: $m) { id unreadCount } }";
const ARCHIVE: &str = "mutation($t: ID!) { archiveThread(threadId: $t) { id archived } }";
const RETRACT: &str = "mutation($id: ID!) { retractMessage(id: $id) { id body retracted } }";
const OPEN_BREAK_GLASS: &str = "mutation($p: ID!) { openEmergencyAccess(patientId: $p, reason: \"unconscious in the emergency room\") { expiresAt } }";

fn uuid(s: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(s).unwrap()
}

/// A thread the patient starts to the whole care team; returns its id.
/// The demo patient and doctor signed in, and a thread the patient started to the care
/// team.
pub struct Conversation {
    pub pat: String,
    pub doc: String,
    pub pid: String,
    pub thread: String,
}

pub async fn conversation(app: &TestApp) -> Conversation {
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let thread = patient_thread(app, &pat, &pid).await;
    Conversation {
        pat,
        doc,
        pid,
        thread,
    }
}

pub async fn patient_thread(app: &TestApp, pat: &str, pid: &str) -> String {
    let r = app.gql(Some(pat), START, json!({ "p": pid })).await;
    r["data"]["startThread"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("startThread: {r}"))
        .to_owned()
}

/// Take the audit head (as a write transaction's first statement does) and let it go after
/// `ms`: writes queue meanwhile. Await the handle to know it was let go.
async fn hold_audit_head(app: &TestApp, ms: u64) -> tokio::task::JoinHandle<()> {
    let held = caregraph::audit::WriteTxn::begin(&app.state.db)
        .await
        .unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        held.commit().await.unwrap();
    })
}

pub async fn send(app: &TestApp, token: &str, thread: &str, body: &str) -> Value {
    let r = app
        .gql(Some(token), SEND, json!({ "t": thread, "b": body }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["sendMessage"].clone()
}

async fn unread(app: &TestApp, token: &str) -> i64 {
    let r = app.gql(Some(token), UNREAD, json!({})).await;
    r["data"]["me"]["unreadCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("unreadCount: {r}"))
}

/// Replace the patient's consent for the demo doctor by one covering only `scopes`
/// (withdraw every active one first).
pub async fn consent_only(app: &TestApp, pat: &str, pid: &str, doctor: &str, scopes: &[&str]) {
    let r = app
        .gql(
            Some(pat),
            "query($id: ID!) { consents(patientId: $id) { id status } }",
            json!({ "id": pid }),
        )
        .await;
    for c in r["data"]["consents"].as_array().expect("consents") {
        if c["status"] == "ACTIVE" {
            let w = app
                .gql(
                    Some(pat),
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
    let r = app
        .gql(
            Some(pat),
            "mutation($p: ID!, $g: ID!, $s: [ConsentScope!]!) { grantConsent(input: { patientId: $p, granteeProviderId: $g, scopes: $s }) { status } }",
            json!({ "p": pid, "g": doctor, "s": scopes }),
        )
        .await;
    assert_eq!(r["data"]["grantConsent"]["status"], "ACTIVE", "{r}");
}

async fn a_patient_and_the_care_team_write_to_each_other(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let admin = app.token(ADMIN).await;
    let pid = app.patient_id(PATIENT).await;
    let before_doc = unread(&app, &doc).await;
    // Without providerIds the thread goes to the care team (the demo doctor).
    let r = app.gql(Some(&pat), START, json!({ "p": pid })).await;
    let t = &r["data"]["startThread"];
    assert_eq!(t["subject"], "Demo question", "{r}");
    assert_eq!(t["unreadCount"], 0, "{r}");
    let roles: Vec<&str> = t["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["PATIENT", "PROVIDER"], "{r}");
    assert_eq!(
        t["participants"][1]["displayName"], "Dr. Demo Doctor",
        "{r}"
    );
    let thread = t["id"].as_str().unwrap().to_owned();
    // The doctor sees it in the inbox, unread, and in the total unread count.
    let r = app.gql(Some(&doc), INBOX, json!({})).await;
    let node = r["data"]["inbox"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["id"] == thread.as_str())
        .unwrap_or_else(|| panic!("not in the doctor's inbox: {r}"))["node"]
        .clone();
    assert_eq!(node["unreadCount"], 1);
    assert_eq!(unread(&app, &doc).await, before_doc + 1);
    // The doctor replies three times; the patient has three unread.
    let mut sent = Vec::new();
    for i in 1..=3 {
        sent.push(send(&app, &doc, &thread, &format!("Demo answer {i}")).await);
    }
    assert_eq!(sent[0]["sender"]["role"], "PROVIDER");
    assert_eq!(unread(&app, &pat).await, 3);
    let r = app
        .gql(Some(&pat), INBOX, json!({ "f": { "unreadOnly": true } }))
        .await;
    assert_eq!(r["data"]["inbox"]["totalCount"], 1, "{r}");
    // Pages: the latest two, then the one before them; forward from a cursor.
    let r = app
        .gql(Some(&pat), THREAD, json!({ "id": thread, "first": 2 }))
        .await;
    let page = &r["data"]["thread"]["messages"];
    let bodies: Vec<&str> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["Demo answer 2", "Demo answer 3"], "{r}");
    assert_eq!(page["pageInfo"]["hasPreviousPage"], true);
    let r = app
        .gql(
            Some(&pat),
            THREAD,
            json!({ "id": thread, "first": 2, "before": page["pageInfo"]["startCursor"] }),
        )
        .await;
    let older = &r["data"]["thread"]["messages"];
    assert_eq!(older["edges"][0]["node"]["body"], "Demo: is my dose right?");
    assert_eq!(older["edges"][1]["node"]["body"], "Demo answer 1");
    assert_eq!(older["pageInfo"]["hasPreviousPage"], false);
    let r = app
        .gql(
            Some(&pat),
            THREAD,
            json!({ "id": thread, "after": sent[0]["cursor"] }),
        )
        .await;
    assert_eq!(
        r["data"]["thread"]["messages"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Reading up to the second answer leaves one unread; marks never move back.
    let r = app
        .gql(
            Some(&pat),
            MARK_READ,
            json!({ "t": thread, "m": sent[1]["id"] }),
        )
        .await;
    assert_eq!(r["data"]["markThreadRead"]["unreadCount"], 1, "{r}");
    let r = app
        .gql(
            Some(&pat),
            MARK_READ,
            json!({ "t": thread, "m": sent[0]["id"] }),
        )
        .await;
    assert_eq!(r["data"]["markThreadRead"]["unreadCount"], 1, "{r}");
    assert_eq!(unread(&app, &pat).await, 1);
    // A message id of another thread is VALIDATION.
    let other = patient_thread(&app, &pat, &pid).await;
    let r = app
        .gql(
            Some(&doc),
            MARK_READ,
            json!({ "t": other, "m": sent[2]["id"] }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Archived threads leave the inbox until a new message arrives.
    let r = app.gql(Some(&pat), ARCHIVE, json!({ "t": thread })).await;
    assert_eq!(r["data"]["archiveThread"]["archived"], true, "{r}");
    let ids = |r: &Value| -> Vec<String> {
        r["data"]["inbox"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = app.gql(Some(&pat), INBOX, json!({})).await;
    assert!(!ids(&r).contains(&thread), "{r}");
    send(&app, &doc, &thread, "Demo follow-up").await;
    let r = app.gql(Some(&pat), INBOX, json!({})).await;
    assert_eq!(ids(&r)[0], thread, "latest activity first: {r}");
    // An ADMIN reads any thread of the patient and joins one by writing.
    let r = app
        .gql(Some(&admin), INBOX, json!({ "f": { "patientId": pid } }))
        .await;
    assert!(ids(&r).contains(&thread), "{r}");
    let m = send(&app, &admin, &thread, "Demo: the clinic moved").await;
    assert_eq!(m["sender"]["displayName"], "Administrator");
    let r = app.gql(Some(&admin), INBOX, json!({})).await;
    assert!(ids(&r).contains(&thread), "{r}");
}

async fn outsiders_are_refused_and_break_glass_only_reads(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let p2 = app.token(PATIENT2).await;
    let doc2 = app.token(DOCTOR2).await;
    let researcher = app.token(RESEARCHER).await;
    let pid = app.patient_id(PATIENT).await;
    let thread = patient_thread(&app, &pat, &pid).await;
    let m = send(&app, &pat, &thread, "Demo second message").await;
    // Another patient and a provider off the care team: as if it did not exist.
    for token in [&p2, &doc2] {
        let r = app.gql(Some(token), THREAD, json!({ "id": thread })).await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        assert!(!r.to_string().contains("Demo"), "{r}");
        let r = app
            .gql(
                Some(token),
                SEND,
                json!({ "t": thread, "b": "Demo intrusion" }),
            )
            .await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        let r = app
            .gql(Some(token), MARK_READ, json!({ "t": thread, "m": m["id"] }))
            .await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        let r = app
            .gql(Some(token), RETRACT, json!({ "id": m["id"] }))
            .await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        let r = app.gql(Some(token), START, json!({ "p": pid })).await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        let r = app
            .gql(Some(token), INBOX, json!({ "f": { "patientId": pid } }))
            .await;
        assert_eq!(code(&r), Some("NOT_FOUND"), "{r}");
        let r = app.gql(Some(token), INBOX, json!({})).await;
        assert_eq!(r["data"]["inbox"]["totalCount"], 0, "{r}");
        assert_eq!(unread(&app, token).await, 0);
    }
    // Researchers read no identified messages.
    let r = app
        .gql(Some(&researcher), THREAD, json!({ "id": thread }))
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app.gql(Some(&researcher), INBOX, json!({})).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    // A patient writes only to their own care team.
    let doctor2 = app.provider_id(DOCTOR2).await;
    let r = app
        .gql(Some(&pat), START, json!({ "p": pid, "to": [doctor2] }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    // Break-glass reads every thread of the patient, and writes nothing.
    let r = app
        .gql(Some(&doc2), OPEN_BREAK_GLASS, json!({ "p": pid }))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app.gql(Some(&doc2), THREAD, json!({ "id": thread })).await;
    assert_eq!(r["data"]["thread"]["subject"], "Demo question", "{r}");
    let r = app
        .gql(Some(&doc2), INBOX, json!({ "f": { "patientId": pid } }))
        .await;
    // This thread and the demo one.
    assert_eq!(r["data"]["inbox"]["totalCount"], 2, "{r}");
    let r = app
        .gql(
            Some(&doc2),
            SEND,
            json!({ "t": thread, "b": "Demo intrusion" }),
        )
        .await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app.gql(Some(&doc2), START, json!({ "p": pid })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    // Reads under break-glass are flagged in the audit log.
    assert!(
        app.audit_count("action = 'thread.read' AND break_glass = TRUE")
            .await
            >= 1
    );
    // Nothing was written by any refused call.
    let n = entity::messages::Entity::find()
        .filter(entity::messages::Column::ThreadId.eq(uuid(&thread)))
        .count(&app.state.db)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

async fn messages_consent_governs_a_providers_access(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let doctor = app.provider_id(DOCTOR).await;
    let thread = patient_thread(&app, &pat, &pid).await;
    assert_eq!(unread(&app, &doc).await, 1);
    // Every clinical category but MESSAGES.
    consent_only(
        &app,
        &pat,
        &pid,
        &doctor,
        &[
            "RECORDS",
            "MEDICATIONS",
            "ALLERGIES",
            "IMMUNIZATIONS",
            "DOCUMENTS",
        ],
    )
    .await;
    let r = app.gql(Some(&doc), THREAD, json!({ "id": thread })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    assert_eq!(r["errors"][0]["extensions"]["scope"], "MESSAGES");
    assert!(!r.to_string().contains("Demo"), "{r}");
    let r = app
        .gql(Some(&doc), SEND, json!({ "t": thread, "b": "Demo answer" }))
        .await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    let r = app.gql(Some(&doc), INBOX, json!({})).await;
    assert_eq!(r["data"]["inbox"]["totalCount"], 0, "{r}");
    assert_eq!(unread(&app, &doc).await, 0);
    // The patient cannot write to a provider without the consent either.
    let r = app
        .gql(Some(&pat), START, json!({ "p": pid, "to": [doctor] }))
        .await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    let r = app.gql(Some(&pat), START, json!({ "p": pid })).await;
    assert_eq!(code(&r), Some("CONSENT_REQUIRED"), "{r}");
    // The patient still reads and writes their own thread.
    send(&app, &pat, &thread, "Demo: anyone there?").await;
    // Consent back: the thread, with both messages, is the doctor's again.
    consent_only(&app, &pat, &pid, &doctor, &["MESSAGES"]).await;
    let r = app.gql(Some(&doc), THREAD, json!({ "id": thread })).await;
    assert_eq!(r["data"]["thread"]["unreadCount"], 2, "{r}");
    assert_eq!(unread(&app, &doc).await, 2);
}

async fn sends_are_idempotent_and_retraction_leaves_a_stub(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    // startThread with a key: the retry returns the same thread and writes nothing new.
    let vars = json!({ "p": pid, "k": "demo-start-1" });
    let a = app.gql(Some(&pat), START, vars.clone()).await;
    let again = app.gql(Some(&pat), START, vars).await;
    assert_eq!(
        a["data"]["startThread"]["id"],
        again["data"]["startThread"]["id"]
    );
    let thread = a["data"]["startThread"]["id"].as_str().unwrap().to_owned();
    let send_k = |body: &str, key: &str| {
        app.gql(
            Some(&doc),
            SEND,
            json!({ "t": thread, "b": body, "k": key }),
        )
    };
    let first = send_k("Demo answer", "demo-send-1").await;
    let retry = send_k("Demo answer", "demo-send-1").await;
    assert_eq!(
        first["data"]["sendMessage"]["id"], retry["data"]["sendMessage"]["id"],
        "{retry}"
    );
    let r = send_k("Demo another answer", "demo-send-1").await;
    assert_eq!(code(&r), Some("CONFLICT"), "{r}");
    assert!(!r.to_string().contains("another answer"), "{r}");
    // Five parallel retries of one send make one message.
    let sends = (0..5).map(|_| send_k("Demo parallel", "demo-send-2"));
    let results = futures_util::future::join_all(sends).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .filter_map(|r| r["data"]["sendMessage"]["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    let r = app.gql(Some(&pat), THREAD, json!({ "id": thread })).await;
    let edges = r["data"]["thread"]["messages"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3, "{r}");
    // Only the sender retracts; the stub stays, without its body, for everyone.
    let id = first["data"]["sendMessage"]["id"].clone();
    let r = app.gql(Some(&pat), RETRACT, json!({ "id": id })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
    let r = app.gql(Some(&doc), RETRACT, json!({ "id": id })).await;
    assert_eq!(r["data"]["retractMessage"]["retracted"], true, "{r}");
    assert!(r["data"]["retractMessage"]["body"].is_null(), "{r}");
    let r = app.gql(Some(&pat), THREAD, json!({ "id": thread })).await;
    let stub = &r["data"]["thread"]["messages"]["edges"][1]["node"];
    assert_eq!(stub["retracted"], true, "{r}");
    assert!(stub["body"].is_null(), "{r}");
    assert_eq!(app.audit_count("action = 'message.retract'").await, 1);
    // Past five minutes it is too late.
    let late = ids.iter().next().unwrap();
    entity::messages::Entity::update_many()
        .col_expr(
            entity::messages::Column::SentAt,
            Expr::value(chrono::Utc::now() - chrono::TimeDelta::minutes(6)),
        )
        .filter(entity::messages::Column::Id.eq(uuid(late)))
        .exec(&app.state.db)
        .await
        .unwrap();
    let r = app.gql(Some(&doc), RETRACT, json!({ "id": late })).await;
    assert_eq!(code(&r), Some("FORBIDDEN"), "{r}");
}

async fn attachments_are_withheld_from_who_may_not_read_them(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let p2 = app.token(PATIENT2).await;
    let pid = app.patient_id(PATIENT).await;
    let doctor = app.provider_id(DOCTOR).await;
    let r = app
        .gql(
            Some(&pat),
            "query($p: ID!) { patient(id: $p) { documents { edges { node { id } } } labResults { edges { node { id } } } } }",
            json!({ "p": pid }),
        )
        .await;
    let document = r["data"]["patient"]["documents"]["edges"][0]["node"]["id"].clone();
    let lab = r["data"]["patient"]["labResults"]["edges"][0]["node"]["id"].clone();
    assert!(document.is_string() && lab.is_string(), "{r}");
    // Only documents, only the patient's own, only ones the sender may read.
    let r = app
        .gql(Some(&pat), START, json!({ "p": pid, "att": [lab] }))
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
    let p2id = app.patient_id(PATIENT2).await;
    let r = app
        .gql(Some(&p2), START, json!({ "p": p2id, "att": [document] }))
        .await;
    assert!(
        matches!(code(&r), Some("VALIDATION") | Some("CONSENT_REQUIRED")),
        "{r}"
    );
    let r = app
        .gql(Some(&pat), START, json!({ "p": pid, "att": [document] }))
        .await;
    let thread = r["data"]["startThread"]["id"].clone();
    assert!(thread.is_string(), "{r}");
    const ATTACHMENTS: &str = "query($id: ID!) { thread(id: $id) { messages { edges { node { attachments { recordId withheld document { title } } } } } } }";
    let r = app
        .gql(Some(&doc), ATTACHMENTS, json!({ "id": thread }))
        .await;
    let att = &r["data"]["thread"]["messages"]["edges"][0]["node"]["attachments"][0];
    assert_eq!(att["recordId"], document, "{r}");
    assert_eq!(att["withheld"], false, "{r}");
    assert!(att["document"]["title"].is_string(), "{r}");
    // Without DOCUMENTS consent the doctor still reads the message, not the document.
    consent_only(&app, &pat, &pid, &doctor, &["MESSAGES"]).await;
    let r = app
        .gql(Some(&doc), ATTACHMENTS, json!({ "id": thread }))
        .await;
    let att = &r["data"]["thread"]["messages"]["edges"][0]["node"]["attachments"][0];
    assert_eq!(att["withheld"], true, "{r}");
    assert!(att["document"].is_null(), "{r}");
    assert!(r["errors"].is_null(), "{r}");
    // Nor may the doctor attach it now.
    let r = app
        .gql(
            Some(&doc),
            SEND,
            json!({ "t": thread, "b": "Demo see attached", "att": [document] }),
        )
        .await;
    assert_eq!(code(&r), Some("VALIDATION"), "{r}");
}

async fn messages_are_audited_and_sealed_at_rest(b: Backend) {
    let app = spawn_app(b).await;
    let pat = app.token(PATIENT).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let r = app
        .gql(
            Some(&pat),
            START,
            json!({ "p": pid, "s": "Demo secret subject", "b": "Demo secret body" }),
        )
        .await;
    let thread = r["data"]["startThread"]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.audit_count("action = 'thread.create'").await, 1);
    assert_eq!(app.audit_count("action = 'message.send'").await, 1);
    let before = app.audit_count("action = 'message.read'").await;
    let r = app.gql(Some(&doc), THREAD, json!({ "id": thread })).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(app.audit_count("action = 'message.read'").await, before + 1);
    // The row names the messages shown, never their words.
    assert_eq!(
        app.audit_count("action = 'message.read' AND detail LIKE '%secret%'")
            .await,
        0
    );
    assert_eq!(
        app.audit_count(&format!(
            "action = 'thread.read' AND resource_id = '{thread}'"
        ))
        .await,
        1
    );
    // Subject and body are ciphertext in the database.
    let db = &app.state.db;
    let backend = db.get_database_backend();
    for sql in [
        "SELECT subject_enc AS v FROM message_threads",
        "SELECT body_enc AS v FROM messages",
    ] {
        let rows = db
            .query_all(Statement::from_string(backend, sql))
            .await
            .unwrap();
        assert!(!rows.is_empty());
        for row in rows {
            let v: Vec<u8> = row.try_get("", "v").unwrap();
            assert!(
                !String::from_utf8_lossy(&v).contains("secret"),
                "plaintext at rest: {sql}"
            );
        }
    }
}

/// A mutation held up past the time limit (here by another writer holding the audit head)
/// still answers with what it committed: the limit is checked before a mutation starts,
/// never inside it. It once answered VALIDATION "took too long" for a message it had sent,
/// and a client retrying without a key sent it twice.
async fn a_send_that_commits_after_the_time_limit_is_answered(b: Backend) {
    let app = spawn_app_with(b, |v| {
        v.insert("REQUEST_TIME_LIMIT_MS".into(), "500".into());
    })
    .await;
    let Conversation {
        pat, doc, thread, ..
    } = conversation(&app).await;
    let release = hold_audit_head(&app, 1200).await;
    let r = app
        .gql(
            Some(&doc),
            SEND,
            json!({ "t": thread, "b": "Demo: sent while the log was busy" }),
        )
        .await;
    release.await.unwrap();
    assert!(r["errors"].is_null(), "{b:?}: {r}");
    let id = r["data"]["sendMessage"]["id"].as_str().unwrap_or_default();
    let t = app.gql(Some(&pat), THREAD, json!({ "id": thread })).await;
    let ids: Vec<_> = t["data"]["thread"]["messages"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{t}"))
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(ids.iter().any(|m| m == id), "{b:?}: {t}");
}

/// Sends that queue while another writer holds the audit head go out as one transaction
/// (they share its `sentAt`), in order, each with its own audit row; two with one key make
/// one message. A batch that fails because of one of its sends wrote nothing, and the
/// others are then sent one by one: only that one fails.
async fn sends_queued_together_commit_together_and_fail_alone(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        pat,
        doc,
        pid,
        thread,
    } = conversation(&app).await;
    let other = patient_thread(&app, &pat, &pid).await;
    let db = &app.state.db;
    let burst = |sends: Vec<(String, String, String, Option<&'static str>)>| {
        let app = &app;
        async move {
            let release = hold_audit_head(app, 600).await;
            let answers = futures_util::future::join_all(sends.iter().map(|(who, t, body, k)| {
                app.gql(Some(who), SEND, json!({ "t": t, "b": body, "k": k }))
            }))
            .await;
            release.await.unwrap();
            answers
        }
    };
    let sends_before = app.audit_count("action = 'message.send'").await;
    let mut sends: Vec<(String, String, String, Option<&'static str>)> = (0..10)
        .map(|i| {
            let who = if i % 2 == 0 { &doc } else { &pat };
            (who.clone(), thread.clone(), format!("Demo burst {i}"), None)
        })
        .collect();
    for _ in 0..2 {
        sends.push((
            doc.clone(),
            thread.clone(),
            "Demo keyed".into(),
            Some("demo-burst"),
        ));
    }
    let answers = burst(sends).await;
    for r in &answers {
        assert!(r["errors"].is_null(), "{b:?}: {r}");
    }
    let sent: Vec<&Value> = answers.iter().map(|r| &r["data"]["sendMessage"]).collect();
    assert_eq!(
        sent[10]["id"], sent[11]["id"],
        "{b:?}: one key, one message"
    );
    let ids: std::collections::HashSet<&str> =
        sent.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids.len(), 11, "{b:?}");
    let at: std::collections::HashSet<&str> =
        sent.iter().filter_map(|m| m["sentAt"].as_str()).collect();
    assert!(
        at.len() < 11,
        "{b:?}: no two sends shared a transaction: {at:?}"
    );
    assert_eq!(
        app.audit_count("action = 'message.send'").await,
        sends_before + 11
    );
    // The thread lists each once, in cursor order, oldest first after the first message.
    let t = app
        .gql(Some(&pat), THREAD, json!({ "id": thread, "first": 50 }))
        .await;
    let listed: Vec<&str> = t["data"]["thread"]["messages"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{t}"))
        .iter()
        .filter_map(|e| e["node"]["id"].as_str())
        .collect();
    assert_eq!(listed.len(), 12, "{b:?}: {t}");
    assert!(ids.iter().all(|id| listed.contains(id)), "{b:?}: {t}");
    // The sender has read what they sent: the doctor's last message is no unread of theirs.
    let r = app.gql(Some(&doc), INBOX, json!({})).await;
    assert!(r["errors"].is_null(), "{r}");

    // The database now refuses any change to the other thread: a send there fails its
    // batch, and the rest go through one by one.
    let other_id = uuid(&other);
    match b {
        Backend::Sqlite => db
            .execute_unprepared(&format!(
                "CREATE TRIGGER refuse_other BEFORE UPDATE ON message_threads \
                 WHEN NEW.id = X'{}' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                other_id.simple()
            ))
            .await
            .unwrap(),
        Backend::Postgres => db
            .execute_unprepared(&format!(
                "CREATE FUNCTION refuse_other() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
                 CREATE TRIGGER refuse_other BEFORE UPDATE ON message_threads FOR EACH ROW \
                 WHEN (NEW.id = '{other_id}') EXECUTE FUNCTION refuse_other();"
            ))
            .await
            .unwrap(),
    };
    let sends_before = app.audit_count("action = 'message.send'").await;
    let mut sends: Vec<(String, String, String, Option<&'static str>)> = (0..5)
        .map(|i| {
            (
                doc.clone(),
                thread.clone(),
                format!("Demo second burst {i}"),
                None,
            )
        })
        .collect();
    sends.insert(2, (pat.clone(), other.clone(), "Demo refused".into(), None));
    let answers = burst(sends).await;
    for (i, r) in answers.iter().enumerate() {
        if i == 2 {
            assert_eq!(code(r), Some("INTERNAL"), "{b:?}: {r}");
            assert!(!r.to_string().contains("Demo refused"), "{r}");
        } else {
            assert!(r["errors"].is_null(), "{b:?}: {r}");
        }
    }
    assert_eq!(
        app.audit_count("action = 'message.send'").await,
        sends_before + 5
    );
    let t = app.gql(Some(&pat), THREAD, json!({ "id": other })).await;
    let edges = t["data"]["thread"]["messages"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{t}"));
    assert_eq!(
        edges.len(),
        1,
        "{b:?}: only the thread's first message: {t}"
    );
}

/// On PostgreSQL a message write holds the messages lane, not the audit head, until it
/// commits: reads and their audit rows go on meanwhile, while another message write waits
/// its turn. (SQLite lets one writer in at a time: there the lane is the head.)
async fn a_message_write_holds_its_lane_not_the_audit_head(b: Backend) {
    let app = spawn_app(b).await;
    let Conversation {
        doc, pid, thread, ..
    } = conversation(&app).await;
    if b == Backend::Sqlite {
        return;
    }
    let held =
        caregraph::audit::WriteTxn::begin_in(&app.state.db, caregraph::messages::service::LANE)
            .await
            .unwrap();
    let reads = app.audit_count("action = 'patient.read'").await;
    let read = "query($id: ID!) { patient(id: $id) { givenName } }";
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        app.gql(Some(&doc), read, json!({ "id": pid })),
    )
    .await
    .expect("a read waited for a message write");
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(app.audit_count("action = 'patient.read'").await, reads + 1);
    let send = app.gql(
        Some(&doc),
        SEND,
        json!({ "t": thread, "b": "Demo: after the lane" }),
    );
    tokio::pin!(send);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), &mut send)
            .await
            .is_err(),
        "a send did not wait for the lane"
    );
    held.commit().await.unwrap();
    let r = send.await;
    assert!(r["errors"].is_null(), "{r}");
}
