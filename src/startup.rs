//! Building the application from a Config: database, migrations, stores, keys, audit
//! writer, optional demo data; then serving it.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::auth::password::Passwords;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
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
    match &cfg.redis_url {
        Some(url) => Stores::redis(url.expose_secret(), &cfg.redis_prefix, cfg.session_cache)
            .await
            .map_err(StartupError::Redis),
        None => Ok(Stores::memory()),
    }
}

/// Everything but the listener: connected, migrated, ready to serve.
pub async fn build_state(cfg: Config) -> Result<AppState, StartupError> {
    let mut db = connect_db(&cfg).await?;
    migrate(&db).await?;
    let sql = Arc::new(crate::state::SqlStats::default());
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
    let audit = AuditLog::start(db.clone(), sql.clone(), cfg.audit_queue);
    let reads = crate::patients::reads::ProviderReads::start(
        db.clone(),
        sql.clone(),
        cfg.db_pool_size,
        cfg.audit_queue,
    );
    Ok(AppState {
        cfg: Arc::new(cfg),
        db,
        keys,
        tokens: Arc::new(tokens),
        passwords,
        stores,
        audit,
        reads,
        sql,
    })
}

/// Serve on `listener` until the future completes (ctrl-c / SIGTERM in `main`).
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    use axum::serve::ListenerExt;
    let app = crate::http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    // TCP_NODELAY: a response is written as soon as it is ready; with Nagle's algorithm a
    // small write can wait for the client's delayed acknowledgement (tens of ms).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(StartupError::Serve)
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}
