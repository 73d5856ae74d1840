//! The audit log: one durable row per PHI read, chain verification, tamper detection.
use std::process::Command;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::*;
use crate::on_both_backends;

on_both_backends!(
    reads_writes_and_denials_are_audited_and_the_chain_verifies,
    tampering_is_detected,
    audit_rows_are_append_only,
    nothing_is_shown_whose_read_was_not_audited
);

/// Two instances reading and writing at once append to one chain: every read gets its row
/// exactly once, however the instances' batches and write transactions interleave.
#[tokio::test]
async fn concurrent_instances_keep_one_chain() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_instance(&a).await;
    let doc = a.token(DOCTOR).await;
    let pid = a.patient_id(PATIENT).await;
    let before = a.audit_count("action = 'patient.read'").await;
    let read = "query($id: ID!) { patient(id: $id) { givenName } }";
    let update = "mutation($id: ID!, $v: Int!, $i: UpdatePatientInput!) { updatePatient(id: $id, expectedVersion: $v, input: $i) { version } }";
    let reads = (0..60).map(|i| {
        let url = if i % 2 == 0 {
            a.url.clone()
        } else {
            b.url.clone()
        };
        let (client, doc, pid) = (a.client.clone(), doc.clone(), pid.clone());
        async move { gql_at(&client, &url, Some(&doc), read, json!({ "id": pid })).await }
    });
    let writes = async {
        for v in 1..=5 {
            let url = if v % 2 == 0 { &a.url } else { &b.url };
            let r = gql_at(
                &a.client,
                url,
                Some(&doc),
                update,
                json!({ "id": pid, "v": v, "i": { "preferredLanguage": if v % 2 == 0 { "en" } else { "fr" } } }),
            )
            .await;
            assert_eq!(r["data"]["updatePatient"]["version"], v + 1, "{r}");
        }
    };
    let (results, ()) = tokio::join!(futures_util::future::join_all(reads), writes);
    for r in &results {
        assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    }
    assert_eq!(a.audit_count("action = 'patient.read'").await - before, 60);
    assert_eq!(a.audit_count("action = 'patient.update'").await, 5);
    let out = cli(&a, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

pub fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_caregraph"))
        .args(args)
        .envs(&app.vars)
        .env_remove("REDIS_URL")
        .output()
        .expect("run caregraph")
}

async fn reads_writes_and_denials_are_audited_and_the_chain_verifies(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let other = app.patient_id(PATIENT2).await;
    let before = app.audit_count("action = 'patient.read'").await;
    // Ten reads in parallel share group-committed batches, yet each gets its own row.
    let reads = (0..10).map(|_| {
        app.gql(
            Some(&doc),
            "query($id: ID!) { patient(id: $id) { givenName birthDate } }",
            json!({ "id": pid }),
        )
    });
    for r in futures_util::future::join_all(reads).await {
        assert_eq!(r["data"]["patient"]["givenName"], "Testy");
    }
    assert_eq!(
        app.audit_count("action = 'patient.read' AND outcome = 'SUCCESS'")
            .await
            - before,
        10
    );
    let denied = app
        .gql(
            Some(&doc),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": other }),
        )
        .await;
    assert_eq!(code(&denied), Some("NOT_FOUND"));
    assert_eq!(
        app.audit_count("action = 'patient.read' AND outcome = 'DENIED'")
            .await,
        1
    );
    let row = app
        .state
        .db
        .query_one(Statement::from_string(
            app.state.db.get_database_backend(),
            "SELECT actor_role, resource_type, ip, request_id, detail FROM audit_log WHERE action = 'patient.read' AND outcome = 'SUCCESS' ORDER BY seq DESC LIMIT 1",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "actor_role").unwrap(), "PROVIDER");
    assert_eq!(row.try_get::<String>("", "ip").unwrap(), "127.0.0.1");
    assert!(row.try_get::<String>("", "request_id").unwrap().len() >= 32);
    let detail = row.try_get::<String>("", "detail").unwrap();
    assert!(
        detail.contains("givenName") && detail.contains("birthDate") && !detail.contains("Testy"),
        "{detail}"
    );
    let out = cli(&app, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));
}

async fn tamper(app: &TestApp, sql: &str) {
    let db = &app.state.db;
    let backend = db.get_database_backend();
    match app.backend {
        Backend::Sqlite => {
            db.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_no_update")
                .await
                .unwrap();
            db.execute_unprepared("DROP TRIGGER IF EXISTS audit_log_no_delete")
                .await
                .unwrap();
            db.execute(Statement::from_string(backend, sql))
                .await
                .unwrap();
        }
        Backend::Postgres => {
            db.execute_unprepared(
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
            )
            .await
            .unwrap();
            db.execute(Statement::from_string(backend, sql))
                .await
                .unwrap();
            db.execute_unprepared(
                "ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete",
            )
            .await
            .unwrap();
        }
    }
}

async fn tampering_is_detected(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    for _ in 0..3 {
        app.gql(
            Some(&doc),
            "query($id: ID!) { patient(id: $id) { givenName } }",
            json!({ "id": pid }),
        )
        .await;
    }
    assert!(cli(&app, &["audit", "verify"]).status.success());
    // Rewrite history: make row 3 look like a different action.
    tamper(
        &app,
        "UPDATE audit_log SET action = 'auth.logout' WHERE seq = 3",
    )
    .await;
    let out = cli(&app, &["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("row 3"), "{text}");
    // Deleting a row is caught too (on a fresh app, so the first break is the deletion).
    let app2 = spawn_app(b).await;
    let doc = app2.token(DOCTOR).await;
    app2.gql(
        Some(&doc),
        "query($id: ID!) { patient(id: $id) { givenName } }",
        json!({ "id": app2.patient_id(PATIENT).await }),
    )
    .await;
    tamper(&app2, "DELETE FROM audit_log WHERE seq = 2").await;
    let out = cli(&app2, &["audit", "verify"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("row 2"));
}

async fn audit_rows_are_append_only(b: Backend) {
    let app = spawn_app(b).await;
    let db = &app.state.db;
    assert!(
        db.execute_unprepared("UPDATE audit_log SET outcome = 'SUCCESS'")
            .await
            .is_err()
    );
    assert!(
        db.execute_unprepared("DELETE FROM audit_log")
            .await
            .is_err()
    );
    assert!(app.audit_count("1 = 1").await > 0);
}

/// A request's reads are written together before its response leaves: when their rows
/// cannot be made durable, the response is an INTERNAL error and shows nothing, and the
/// chain stays whole. Over HTTP and over the websocket alike.
async fn nothing_is_shown_whose_read_was_not_audited(b: Backend) {
    let app = spawn_app(b).await;
    let doc = app.token(DOCTOR).await;
    let pid = app.patient_id(PATIENT).await;
    let query = "query($id: ID!) { patient(id: $id) { givenName medications { drug } allergies { substance } } }";
    let db = &app.state.db;
    // The database refuses list-read rows (and only those) for a while.
    match b {
        Backend::Sqlite => db
            .execute_unprepared(
                "CREATE TRIGGER refuse_record_reads BEFORE INSERT ON audit_log \
                 WHEN NEW.action = 'record.read' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .await
            .unwrap(),
        Backend::Postgres => db
            .execute_unprepared(
                "CREATE FUNCTION refuse_record_reads() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'refused'; END $$; \
                 CREATE TRIGGER refuse_record_reads BEFORE INSERT ON audit_log FOR EACH ROW \
                 WHEN (NEW.action = 'record.read') EXECUTE FUNCTION refuse_record_reads();",
            )
            .await
            .unwrap(),
    };
    let before = app.audit_count("action = 'patient.read'").await;
    let r = app.gql(Some(&doc), query, json!({ "id": pid })).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "INTERNAL", "{r}");
    assert!(r["data"].is_null(), "{r}");
    let text = r.to_string();
    assert!(!text.contains("Testy") && !text.contains("Demo"), "{r}");
    // Written together: the demographics row that went with them was not written either.
    assert_eq!(app.audit_count("action = 'patient.read'").await, before);
    // The same over the websocket.
    let mut ws = ws_signed_in(&app, &doc).await;
    let r = ws_run(&mut ws, "1", query, json!({ "id": pid })).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "INTERNAL", "{r}");
    assert!(!r.to_string().contains("Testy"), "{r}");
    match b {
        Backend::Sqlite => db.execute_unprepared("DROP TRIGGER refuse_record_reads"),
        Backend::Postgres => db.execute_unprepared(
            "DROP TRIGGER refuse_record_reads ON audit_log; DROP FUNCTION refuse_record_reads();",
        ),
    }
    .await
    .unwrap();
    // Once the rows can be written, the same request is answered, and audited.
    let r = app.gql(Some(&doc), query, json!({ "id": pid })).await;
    assert_eq!(r["data"]["patient"]["givenName"], "Testy", "{r}");
    assert_eq!(app.audit_count("action = 'patient.read'").await, before + 1);
    let out = cli(&app, &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
