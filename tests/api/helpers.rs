//! Spawns the real server on a random port against a fresh database: SQLite + in-process
//! stores, or a UUID-named PostgreSQL database + a private Redis key prefix. Both are
//! removed when the TestApp is dropped (also when the test panics).
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use caregraph::config::Config;
use caregraph::crypto::KeyFile;
use caregraph::state::AppState;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub const PASSWORD: &str = "caregraph-demo";
pub const ADMIN: &str = "admin@caregraph.dev";
pub const DOCTOR: &str = "doctor@caregraph.dev";
pub const DOCTOR2: &str = "doctor2@caregraph.dev";
pub const PATIENT: &str = "patient@caregraph.dev";
pub const PATIENT2: &str = "patient2@caregraph.dev";
pub const RESEARCHER: &str = "researcher@caregraph.dev";

/// The sign-in every test uses (a trusted-documents test lists it in its manifest).
pub const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken expiresAt mfaRequired mfaToken } }";

pub struct TestApp {
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    pub vars: HashMap<String, String>,
    pub dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    resources: Resources,
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("TEST_DATABASE_URL is not set: run ./scripts/test.sh, which starts or finds PostgreSQL and Redis")
    })
}

pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("TEST_REDIS_URL is not set: run ./scripts/test.sh, which starts or finds PostgreSQL and Redis")
    })
}

fn replace_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let cut = base
        .rfind('/')
        .filter(|i| *i > "postgres://".len())
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..cut], db);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Environment for a test server. Cheap argon2 parameters keep the suite fast; production
/// refuses them.
pub fn base_vars(backend: Backend, dir: &std::path::Path) -> (HashMap<String, String>, Resources) {
    let mut v = HashMap::new();
    v.insert("DATA_DIR".into(), dir.display().to_string());
    v.insert(
        "CAREGRAPH_KEYS".into(),
        serde_json::to_string(&KeyFile::generate(true)).unwrap(),
    );
    v.insert("PASSWORD_HASH_M_COST_KIB".into(), "1024".into());
    v.insert("PASSWORD_HASH_T_COST".into(), "1".into());
    v.insert("BIND_ADDR".into(), "127.0.0.1:0".into());
    let mut pg = None;
    let mut redis = None;
    if backend == Backend::Postgres {
        let admin = test_database_url();
        let name = format!("cg_test_{}", Uuid::new_v4().simple());
        v.insert("DATABASE_URL".into(), replace_db(&admin, &name));
        v.insert("DATABASE_POOL_SIZE".into(), "5".into());
        pg = Some((admin, name));
        let prefix = format!("cgtest:{}:", Uuid::new_v4().simple());
        v.insert("REDIS_URL".into(), test_redis_url());
        v.insert("REDIS_KEY_PREFIX".into(), prefix.clone());
        redis = Some((test_redis_url(), prefix));
    } else {
        v.insert("DATABASE_POOL_SIZE".into(), "4".into());
    }
    (v, Resources { pg, redis })
}

pub async fn create_database(admin_url: &str, name: &str) {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    db.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    db.close().await.ok();
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Spawn with extra settings, e.g. a short session timeout.
pub async fn spawn_app_with(
    backend: Backend,
    tweak: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    init_logs();
    let dir = std::env::temp_dir().join(format!("caregraph-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut vars, resources) = base_vars(backend, &dir);
    tweak(&mut vars);
    resources.create().await;
    let cfg = Config::from_vars(&vars).expect("test config");
    let state = caregraph::startup::build_state(cfg)
        .await
        .expect("build state");
    caregraph::seed::demo(&state).await.expect("seed demo data");
    let listener = caregraph::startup::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve_state = state.clone();
    tokio::spawn(async move {
        let _ = caregraph::startup::serve(serve_state, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        addr,
        url: format!("http://{addr}/graphql"),
        client: reqwest::Client::new(),
        state,
        backend,
        vars,
        dir,
        shutdown: Some(tx),
        resources,
    }
}

static LOGS: std::sync::Once = std::sync::Once::new();

fn init_logs() {
    LOGS.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            caregraph::telemetry::init(false);
        }
    });
}

impl TestApp {
    /// POST a GraphQL operation; returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        gql_at(&self.client, &self.url, token, query, variables).await
    }

    pub async fn login_raw(&self, email: &str, password: &str) -> Value {
        self.gql(None, LOGIN, json!({ "e": email, "p": password }))
            .await
    }

    /// Sign in as a demo user; returns the access token.
    pub async fn token(&self, email: &str) -> String {
        let r = self.login_raw(email, PASSWORD).await;
        r["data"]["login"]["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("login failed for {email}: {r}"))
            .to_owned()
    }

    pub async fn me(&self, token: &str) -> Value {
        let r = self
            .gql(
                Some(token),
                "{ me { id email role patientId providerId mfaEnrolled } }",
                json!({}),
            )
            .await;
        r["data"]["me"].clone()
    }

    /// Patient id of a demo patient account.
    pub async fn patient_id(&self, email: &str) -> String {
        let t = self.token(email).await;
        self.me(&t).await["patientId"].as_str().unwrap().to_owned()
    }

    pub async fn provider_id(&self, email: &str) -> String {
        let t = self.token(email).await;
        self.me(&t).await["providerId"].as_str().unwrap().to_owned()
    }

    /// Every break-glass grant ends a minute ago.
    pub async fn expire_emergency_access(&self) {
        use sea_orm::{ConnectionTrait, Statement};
        let db = &self.state.db;
        let past = chrono::Utc::now() - chrono::Duration::minutes(1);
        db.execute(Statement::from_sql_and_values(
            db.get_database_backend(),
            match self.backend {
                Backend::Postgres => "UPDATE emergency_access SET expires_at = $1",
                Backend::Sqlite => "UPDATE emergency_access SET expires_at = ?",
            },
            [past.into()],
        ))
        .await
        .unwrap();
    }

    /// Number of audit rows matching a WHERE clause.
    pub async fn audit_count(&self, where_clause: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let backend = self.state.db.get_database_backend();
        let row = self
            .state
            .db
            .query_one(Statement::from_string(
                backend,
                format!("SELECT COUNT(*) AS n FROM audit_log WHERE {where_clause}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}

/// The first error's `extensions.code`.
pub fn code(resp: &Value) -> Option<&str> {
    resp["errors"][0]["extensions"]["code"].as_str()
}

pub fn codes(resp: &Value) -> Vec<String> {
    resp["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["extensions"]["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Run one command on the test Redis and read its integer answer: a test's look at (or hand
/// on) what the servers keep there.
pub async fn redis_int(args: &[&str]) -> i64 {
    let client = redis::Client::open(test_redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c).await.unwrap()
}

/// What a test server owns outside its temporary directory.
#[derive(Default)]
pub struct Resources {
    /// (admin URL, database name)
    pub pg: Option<(String, String)>,
    /// (Redis URL, key prefix)
    pub redis: Option<(String, String)>,
}

impl Resources {
    pub async fn create(&self) {
        if let Some((admin, name)) = &self.pg {
            create_database(admin, name).await;
        }
    }

    /// Drop the database and delete the Redis keys.
    pub async fn cleanup(&self) {
        use sea_orm::ConnectionTrait;
        if let Some((admin, name)) = &self.pg
            && let Ok(db) = sea_orm::Database::connect(admin.as_str()).await
        {
            let _ = db
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
            let _ = db.close().await;
        }
        if let Some((url, prefix)) = &self.redis
            && let Ok(client) = redis::Client::open(url.as_str())
            && let Ok(mut c) = client.get_multiplexed_async_connection().await
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut c)
                .await
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut c).await;
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let resources = std::mem::take(&mut self.resources);
        let dir = self.dir.clone();
        // Drop cannot await: clean up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(resources.cleanup());
            let _ = std::fs::remove_dir_all(dir);
        })
        .join();
    }
}

/// Generate `sqlite` and `postgres` tests from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// Another Caregraph instance on the same database, Redis and keys as `app` (scale-out).
/// It owns nothing: dropping it only stops it.
pub struct Instance {
    pub url: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub async fn spawn_instance(app: &TestApp) -> Instance {
    spawn_instance_with(app, |_| {}).await
}

/// [`spawn_instance`] with some of `app`'s settings changed by `change`.
pub async fn spawn_instance_with(
    app: &TestApp,
    change: impl FnOnce(&mut HashMap<String, String>),
) -> Instance {
    let mut vars = app.vars.clone();
    change(&mut vars);
    let cfg = Config::from_vars(&vars).expect("test config");
    let state = caregraph::startup::build_state(cfg)
        .await
        .expect("build state");
    let listener = caregraph::startup::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = caregraph::startup::serve(state, listener, async {
            let _ = rx.await;
        })
        .await;
    });
    Instance {
        url: format!("http://{addr}/graphql"),
        _shutdown: tx,
    }
}

/// POST a GraphQL operation to any Caregraph URL; returns the whole response body.
pub async fn gql_at(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut req = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json body")
}

/// A websocket to the test server speaking `protocol`.
pub async fn ws_connect(
    app: &TestApp,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    ws_connect_at(&app.addr.to_string(), protocol).await
}

/// A websocket to the Caregraph at `addr` (`host:port`) speaking `protocol`.
pub async fn ws_connect_at(
    addr: &str,
    protocol: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket upgrade");
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

pub async fn next_message(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<Message> {
    tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .ok()
        .flatten()
        .and_then(Result::ok)
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws socket signed in with `token`, acknowledged.
pub async fn ws_signed_in(app: &TestApp, token: &str) -> Ws {
    ws_signed_in_at(&app.addr.to_string(), token).await
}

/// [`ws_signed_in`] to the Caregraph at `addr`.
pub async fn ws_signed_in_at(addr: &str, token: &str) -> Ws {
    let mut ws = ws_connect_at(addr, "graphql-transport-ws").await;
    ws.send(Message::Text(
        json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    match next_message(&mut ws).await {
        Some(Message::Text(t)) if t.contains("connection_ack") => ws,
        other => panic!("expected connection_ack, got {other:?}"),
    }
}

/// Run one operation on the socket; returns its result (`next` payload) or, for an
/// `error` message, `{ "errors": payload }`.
pub async fn ws_run(ws: &mut Ws, id: &str, query: &str, variables: Value) -> Value {
    ws.send(Message::Text(
        json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    while let Some(m) = next_message(ws).await {
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(t.as_str()).unwrap();
        if v["id"] != id {
            continue;
        }
        match v["type"].as_str() {
            Some("next") => return v["payload"].clone(),
            Some("error") => return json!({ "errors": v["payload"] }),
            _ => {}
        }
    }
    panic!("no answer on the websocket for {id}");
}
