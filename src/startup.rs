//! Building the application from a Config: database, migrations, stores, keys, audit
//! writer, optional demo data; then serving it.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::access::reads::ProviderReads;
use crate::appointments::reads::AppointmentReads;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::credentials::password::Passwords;
use crate::credentials::tokens::TokenKeys;
use crate::db::stats::SqlStats;
use crate::records::reads::RecordReads;
use crate::state::AppState;
use crate::stores::Stores;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database ({0}); check DATABASE_URL and that the server is running")]
    Database(sea_orm::DbErr),
    #[error("database migrations failed: {0}")]
    Migrate(sea_orm::DbErr),
    #[error("cannot reach Redis ({0}); check REDIS_URL and that the server is running")]
    Redis(crate::stores::StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot listen on {addr}: {source}; set BIND_ADDR to a free address")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

pub async fn connect_db(cfg: &Config) -> Result<DatabaseConnection, StartupError> {
    let url = cfg.database_url.expose_secret().to_owned();
    if cfg.is_sqlite() {
        prepare_sqlite_file(cfg)?;
    }
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(cfg.db_pool_size)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // No ping round trip on every acquire: a broken connection fails its query and is
        // replaced; the ping cost one extra round trip per statement.
        .test_before_acquire(false)
        // Caregraph's statements are short lookups by key or blind index, whose best plan
        // does not depend on the bound values: plan each once per connection, not on every
        // execution (PostgreSQL's default re-plans the first five runs and any it deems
        // costlier generically, which was a visible share of its CPU under load).
        .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_generic_plan")]))
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL for concurrent readers; FULL so a committed audit batch survives power loss.
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(opts)
        .await
        .map_err(StartupError::Database)
}

/// Create the data directory and the database file readable by the owner only, before
/// SQLite opens it (its -wal and -shm files take the same mode).
fn prepare_sqlite_file(cfg: &Config) -> Result<(), StartupError> {
    let setup = |e: std::io::Error| {
        StartupError::Setup(format!("cannot prepare {}: {e}", cfg.data_dir.display()))
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(setup)?;
    let url = cfg.database_url.expose_secret();
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" || std::path::Path::new(path).exists() {
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path).map(drop).map_err(setup)
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), StartupError> {
    Migrator::up(db, None).await.map_err(StartupError::Migrate)
}

pub async fn connect_stores(cfg: &Config) -> Result<Stores, StartupError> {
    let mut stores = match &cfg.redis_url {
        Some(url) => Stores::redis(url.expose_secret(), &cfg.redis_prefix, cfg.session_cache)
            .await
            .map_err(StartupError::Redis)?,
        None => Stores::memory(),
    };
    stores.bus = stores.bus.with_queue(cfg.live_queue);
    Ok(stores)
}

/// Everything but the listener: connected, migrated, ready to serve.
pub async fn build_state(cfg: Config) -> Result<AppState, StartupError> {
    let mut db = connect_db(&cfg).await?;
    migrate(&db).await?;
    let sql = Arc::new(SqlStats::default());
    let observed = sql.clone();
    db.set_metric_callback(move |info| observed.observe(&info.statement.sql));
    let stores = connect_stores(&cfg).await?;
    let keys = cfg
        .keys
        .key_ring()
        .map_err(|e| StartupError::Setup(e.to_string()))?;
    let tokens = TokenKeys::from_config(&cfg)
        .map_err(|_| StartupError::Setup("invalid token signing key".into()))?;
    let passwords = Passwords::new(cfg.hash_params, cfg.hash_lanes)
        .map_err(|_| StartupError::Setup("invalid password hash parameters".into()))?;
    let moved = crate::records::family::fold_legacy_allergies(&db, &keys)
        .await
        .map_err(|e| StartupError::Setup(format!("moving allergies into medical records: {e}")))?;
    if moved > 0 {
        tracing::info!(moved, "allergies moved into medical_records");
    }
    let sealed = crate::patients::service::seal_legacy_sex_and_gender(&db, &keys)
        .await
        .map_err(|e| StartupError::Setup(format!("sealing sex and gender identity: {e}")))?;
    if sealed > 0 {
        tracing::info!(sealed, "patients' sex and gender identity sealed");
    }
    let audit = AuditLog::start(db.clone(), sql.clone(), cfg.audit_queue);
    // The domains' services, which they fetch with `AppState::service`.
    let mut services = axum::http::Extensions::new();
    services.insert(ProviderReads::start(
        db.clone(),
        sql.clone(),
        cfg.db_pool_size,
        cfg.audit_queue,
    ));
    services.insert(RecordReads::start(db.clone(), sql.clone(), cfg.audit_queue));
    services.insert(crate::messages::writer::Sends::start(
        db.clone(),
        keys.clone(),
        stores.bus.clone(),
        cfg.audit_queue,
    ));
    services.insert(AppointmentReads::start(
        db.clone(),
        sql.clone(),
        cfg.db_pool_size,
        cfg.audit_queue,
    ));
    services.insert(crate::billing::graphql::Gateways {
        payments: Arc::new(crate::billing::gateway::Sandbox::new(db.clone())),
        payer: Arc::new(crate::billing::gateway::SandboxPayer),
    });
    Ok(AppState {
        cfg: Arc::new(cfg),
        db,
        keys,
        tokens: Arc::new(tokens),
        passwords,
        stores,
        audit,
        services: Arc::new(services),
        sql,
    })
}

/// How long in-flight requests get to finish once shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);

/// Serve on `listener` until the future completes (ctrl-c / SIGTERM in `main`).
///
/// hyper's HTTP/1 connection directly rather than `axum::serve`, which has no bound on how
/// long a client may take to send its headers: a client that never finishes them would
/// hold its connection (and a task) forever. Here the headers must arrive within
/// `HEADER_READ_TIMEOUT_SECS`; the body's read is bounded by the request timeout.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let header_read_timeout = state.cfg.header_read_timeout;
    let persisted =
        crate::http::persisted::Persisted::load(&state.cfg, state.stores.documents.clone())
            .map_err(StartupError::Setup)?;
    let app = crate::http::router(state, persisted);
    // Every connection holds a receiver; shutdown sends once, then waits for all to drop.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself is fine.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // TCP_NODELAY: a response is written as soon as it is ready; with Nagle's algorithm
        // a small write can wait for the client's delayed acknowledgement (tens of ms).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let app = app.clone();
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = async { stopping.wait_for(|s| *s).await.map(drop) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop((listener, stopping));
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN, stop.closed()).await.is_err() {
        tracing::warn!("connections still open after the drain period; stopping anyway");
    }
    Ok(())
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}
