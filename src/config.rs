//! Typed settings, read once from the environment. The defaults are the embedded
//! development setup; `APP_ENV=production` refuses every unsafe one.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{KeyFile, KeySource};
use crate::identity::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug)]
pub struct HashParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// Half the cores, at least one: logins hash on the blocking pool, and a burst of them must
/// leave cores to the requests already in flight.
fn default_hash_lanes() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane); production refuses less.
pub const MIN_HASH_PARAMS: HashParams = HashParams {
    m_cost_kib: 19_456,
    t_cost: 2,
    p_cost: 1,
};

#[derive(Clone, Debug)]
pub struct Config {
    pub env: AppEnv,
    pub bind_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    /// `DATABASE_URL` was given (rather than the embedded SQLite default).
    pub database_explicit: bool,
    pub db_pool_size: u32,
    pub redis_url: Option<SecretString>,
    pub redis_prefix: String,
    pub keys: KeyFile,
    pub key_source: KeySource,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub session_idle: Duration,
    /// With Redis: how long this instance answers a checked session from memory (changes
    /// reach it at once by pub/sub; this bounds a lost message). Zero: ask Redis every time.
    pub session_cache: Duration,
    pub refresh_token_ttl: Duration,
    pub mfa_required_roles: Vec<Role>,
    pub hash_params: HashParams,
    /// Password hashes computed at once; the rest wait their turn.
    pub hash_lanes: usize,
    pub login_max_per_account: u64,
    pub login_max_per_ip: u64,
    pub login_window: Duration,
    pub break_glass_minutes: i64,
    pub graphiql: bool,
    /// The built patient portal (`web-examples/portal/dist`), served at `/portal/` when
    /// the folder exists.
    pub portal_dir: PathBuf,
    pub introspection: bool,
    pub seed_demo: bool,
    pub max_body_bytes: usize,
    /// The body bound for signed-in callers (clinical documents are up to 1 MiB decoded,
    /// about 1.4 MB as base64).
    pub max_authenticated_body_bytes: usize,
    pub query_depth_limit: usize,
    pub query_complexity_limit: usize,
    /// How long one operation (or one subscription event) may take to resolve.
    pub request_time_limit: Duration,
    pub audit_queue: usize,
    /// Deliveries one live subscription may have waiting before it is ended with RESYNC.
    pub live_queue: usize,
    pub log_json: bool,
    /// Browser origins allowed to call the API (CORS); none by default.
    /// Where clients reach Caregraph (`PUBLIC_URL`); `https://…` turns on HSTS.
    pub public_url: Option<String>,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    pub cors_origins: Vec<String>,
    /// Load balancers whose `X-Forwarded-For` is believed (client IP for audit and throttling).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Which documents run (`PERSISTED_QUERIES`): any text, APQ, or only a listed set.
    pub persisted: PersistedMode,
    /// The trusted documents' manifest (`PERSISTED_DOCUMENTS_FILE`).
    pub persisted_documents_file: Option<PathBuf>,
    /// Signed-in PROVIDER and ADMIN users may send freeform documents in trusted mode
    /// (`PERSISTED_QUERIES_CONSOLE`, refused in production).
    pub persisted_console: bool,
    /// Most documents APQ registers (`APQ_MAX_DOCUMENTS`).
    pub apq_max_documents: u64,
    /// Longest document APQ registers (`APQ_MAX_DOCUMENT_BYTES`).
    pub apq_max_document_bytes: usize,
}

/// `PERSISTED_QUERIES`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistedMode {
    /// Documents are sent as text; a persisted-query request is PERSISTED_QUERY_NOT_SUPPORTED.
    Off,
    /// Automatic persisted queries (Apollo's protocol): text, or a hash registered before.
    Apq,
    /// Only the documents of the manifest run.
    Trusted,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("refusing to start in production: {0}")]
    Unsafe(String),
    #[error(transparent)]
    Keys(#[from] crate::crypto::keys::KeyError),
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

struct Vars<'a>(&'a HashMap<String, String>);

impl Vars<'_> {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.trim()).filter(|s| !s.is_empty())
    }
    fn parse<T: std::str::FromStr>(&self, k: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| invalid(k, format!("cannot parse {v:?}"))),
        }
    }
    fn flag(&self, k: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(k).map(|s| s.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(_) => Err(invalid(k, "expected true or false")),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Config::from_vars(&vars)
    }

    /// Build from an explicit variable map (the tests use this; nothing global is read).
    pub fn from_vars(map: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let v = Vars(map);
        let env = match v.get("APP_ENV").map(|s| s.to_ascii_lowercase()) {
            None => AppEnv::Development,
            Some(s) if s == "production" || s == "prod" => AppEnv::Production,
            Some(s) if s == "development" || s == "dev" || s == "test" => AppEnv::Development,
            Some(_) => return Err(invalid("APP_ENV", "expected development or production")),
        };
        let prod = env == AppEnv::Production;
        let data_dir = PathBuf::from(v.get("DATA_DIR").unwrap_or("data"));
        let database_explicit = v.get("DATABASE_URL").is_some();
        let database_url = match v.get("DATABASE_URL") {
            Some(u) => u.to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("caregraph.db").display()
            ),
        };
        let (keys, key_source) = KeyFile::load(
            v.get("CAREGRAPH_KEYS"),
            v.get("CAREGRAPH_KEYS_FILE"),
            &data_dir,
        )?;
        let mfa_required_roles = match v.get("MFA_REQUIRED_ROLES") {
            None if prod => vec![Role::Provider, Role::Admin],
            None => vec![],
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    Role::parse(&s.trim().to_ascii_uppercase())
                        .ok_or_else(|| invalid("MFA_REQUIRED_ROLES", "unknown role"))
                })
                .collect::<Result<_, _>>()?,
        };
        let hash_params = HashParams {
            m_cost_kib: v.parse("PASSWORD_HASH_M_COST_KIB", MIN_HASH_PARAMS.m_cost_kib)?,
            t_cost: v.parse("PASSWORD_HASH_T_COST", MIN_HASH_PARAMS.t_cost)?,
            p_cost: v.parse("PASSWORD_HASH_P_COST", MIN_HASH_PARAMS.p_cost)?,
        };
        let hash_lanes = v.parse("PASSWORD_HASH_LANES", default_hash_lanes())?;
        if hash_lanes == 0 {
            return Err(invalid("PASSWORD_HASH_LANES", "must be at least 1"));
        }
        let mut cfg = Config {
            env,
            bind_addr: v
                .get("BIND_ADDR")
                .unwrap_or("127.0.0.1:8080")
                .parse()
                .map_err(|_| invalid("BIND_ADDR", "expected host:port, e.g. 127.0.0.1:8080"))?,
            data_dir,
            database_url: SecretString::from(database_url),
            database_explicit,
            db_pool_size: v.parse("DATABASE_POOL_SIZE", 16)?,
            redis_url: v.get("REDIS_URL").map(|s| SecretString::from(s.to_owned())),
            redis_prefix: v.get("REDIS_KEY_PREFIX").unwrap_or("caregraph:").to_owned(),
            keys,
            key_source,
            jwt_issuer: v.get("JWT_ISSUER").unwrap_or("caregraph").to_owned(),
            jwt_audience: v
                .get("JWT_AUDIENCE")
                .unwrap_or("caregraph-portal")
                .to_owned(),
            access_token_ttl: Duration::from_secs(v.parse("ACCESS_TOKEN_TTL_SECS", 900)?),
            session_idle: Duration::from_secs(v.parse("SESSION_IDLE_TIMEOUT_SECS", 900)?),
            session_cache: Duration::ZERO,
            refresh_token_ttl: Duration::from_secs(v.parse("REFRESH_TOKEN_TTL_SECS", 12 * 3600)?),
            mfa_required_roles,
            hash_params,
            hash_lanes,
            login_max_per_account: v.parse("LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", 5)?,
            login_max_per_ip: v.parse("LOGIN_MAX_ATTEMPTS_PER_IP", 50)?,
            login_window: Duration::from_secs(v.parse("LOGIN_WINDOW_SECS", 900)?),
            break_glass_minutes: v.parse("BREAK_GLASS_MINUTES", 60)?,
            graphiql: !prod && v.flag("GRAPHIQL", true)?,
            portal_dir: PathBuf::from(v.get("PORTAL_DIR").unwrap_or("web-examples/portal/dist")),
            introspection: !prod && v.flag("INTROSPECTION", true)?,
            seed_demo: !prod && v.flag("SEED_DEMO", true)?,
            max_body_bytes: v.parse("MAX_BODY_BYTES", 256 * 1024)?,
            max_authenticated_body_bytes: v
                .parse("MAX_AUTHENTICATED_BODY_BYTES", 2 * 1024 * 1024)?,
            query_depth_limit: v.parse("QUERY_DEPTH_LIMIT", 12)?,
            query_complexity_limit: v.parse("QUERY_COMPLEXITY_LIMIT", 1000)?,
            request_time_limit: Duration::from_millis(v.parse("REQUEST_TIME_LIMIT_MS", 10_000)?),
            audit_queue: v.parse("AUDIT_QUEUE", 16_384)?,
            live_queue: v.parse("LIVE_QUEUE", crate::stores::bus::QUEUE)?,
            log_json: v.get("LOG_FORMAT").map(|f| f == "json").unwrap_or(prod),
            public_url: v.get("PUBLIC_URL").map(str::to_owned),
            header_read_timeout: Duration::from_secs(v.parse("HEADER_READ_TIMEOUT_SECS", 10)?),
            cors_origins: v
                .get("CORS_ALLOWED_ORIGINS")
                .map(|s| {
                    s.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            trusted_proxies: match v.get("TRUSTED_PROXIES") {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|p| {
                        p.trim().parse().map_err(|_| {
                            invalid(
                                "TRUSTED_PROXIES",
                                "expected a comma-separated list of IP addresses",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            },
            persisted: PersistedMode::Apq,
            persisted_documents_file: None,
            persisted_console: false,
            apq_max_documents: 0,
            apq_max_document_bytes: 0,
        };
        cfg.persisted = match v.get("PERSISTED_QUERIES").map(|s| s.to_ascii_lowercase()) {
            None if prod => PersistedMode::Trusted,
            None => PersistedMode::Apq,
            Some(m) if m == "off" => PersistedMode::Off,
            Some(m) if m == "apq" => PersistedMode::Apq,
            Some(m) if m == "trusted" => PersistedMode::Trusted,
            Some(_) => {
                return Err(invalid("PERSISTED_QUERIES", "expected off, apq or trusted"));
            }
        };
        cfg.persisted_documents_file = v.get("PERSISTED_DOCUMENTS_FILE").map(PathBuf::from);
        cfg.persisted_console = v.flag("PERSISTED_QUERIES_CONSOLE", false)?;
        cfg.apq_max_documents = v.parse("APQ_MAX_DOCUMENTS", 10_000)?;
        cfg.apq_max_document_bytes = v.parse("APQ_MAX_DOCUMENT_BYTES", 64 * 1024)?;
        if cfg.header_read_timeout.is_zero() {
            return Err(invalid("HEADER_READ_TIMEOUT_SECS", "must be at least 1"));
        }
        if let Some(url) = &cfg.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid(
                "PUBLIC_URL",
                "expected an http:// or https:// URL, e.g. https://portal-api.example.org",
            ));
        }
        if cfg.live_queue == 0 {
            return Err(invalid("LIVE_QUEUE", "must be at least 1"));
        }
        if cfg.request_time_limit.is_zero() {
            return Err(invalid("REQUEST_TIME_LIMIT_MS", "must be at least 1"));
        }
        if cfg.access_token_ttl.is_zero() || cfg.session_idle.is_zero() {
            return Err(invalid(
                "SESSION_IDLE_TIMEOUT_SECS",
                "token and session lifetimes must be positive",
            ));
        }
        // Default: 5 s, or a quarter of a shorter idle timeout.
        let default_cache = (cfg.session_idle / 4).min(Duration::from_secs(5));
        cfg.session_cache =
            Duration::from_millis(v.parse("SESSION_CACHE_MS", default_cache.as_millis() as u64)?);
        if cfg.session_cache * 2 > cfg.session_idle || cfg.session_cache > Duration::from_secs(60) {
            return Err(invalid(
                "SESSION_CACHE_MS",
                "must be at most 60 s and at most half of SESSION_IDLE_TIMEOUT_SECS",
            ));
        }
        if prod {
            cfg.check_production()?;
        }
        if cfg.persisted == PersistedMode::Trusted && cfg.persisted_documents_file.is_none() {
            return Err(invalid(
                "PERSISTED_DOCUMENTS_FILE",
                "trusted documents (PERSISTED_QUERIES=trusted, the production default) need the manifest: point PERSISTED_DOCUMENTS_FILE at it, or set PERSISTED_QUERIES=apq",
            ));
        }
        Ok(cfg)
    }

    fn check_production(&self) -> Result<(), ConfigError> {
        if self.keys.dev || matches!(self.key_source, KeySource::GeneratedDev(_)) {
            return Err(ConfigError::Unsafe(
                "development keys; provide CAREGRAPH_KEYS or CAREGRAPH_KEYS_FILE from `caregraph keys generate`".into(),
            ));
        }
        if !self.database_explicit || !self.database_url.expose_secret().starts_with("postgres") {
            return Err(ConfigError::Unsafe(
                "DATABASE_URL must point at PostgreSQL".into(),
            ));
        }
        if self.redis_url.is_none() {
            return Err(ConfigError::Unsafe(
                "REDIS_URL is required; in-process session and rate-limit stores do not survive restarts or scale out".into(),
            ));
        }
        if self.persisted_console {
            return Err(ConfigError::Unsafe(
                "PERSISTED_QUERIES_CONSOLE lets signed-in staff run any document; it is for development".into(),
            ));
        }
        let p = self.hash_params;
        if p.m_cost_kib < MIN_HASH_PARAMS.m_cost_kib || p.t_cost < MIN_HASH_PARAMS.t_cost {
            return Err(ConfigError::Unsafe(
                "password hash parameters below the OWASP minimum".into(),
            ));
        }
        Ok(())
    }

    pub fn is_production(&self) -> bool {
        self.env == AppEnv::Production
    }

    /// Whether responses should carry `Strict-Transport-Security`.
    pub fn https(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::Config;

    #[test]
    fn password_hash_lanes_default_and_refuse_zero() {
        let mut vars = HashMap::new();
        let cfg = Config::from_vars(&vars).expect("defaults load");
        assert!(cfg.hash_lanes >= 1);
        vars.insert("PASSWORD_HASH_LANES".to_owned(), "3".to_owned());
        assert_eq!(Config::from_vars(&vars).unwrap().hash_lanes, 3);
        vars.insert("PASSWORD_HASH_LANES".to_owned(), "0".to_owned());
        let err = Config::from_vars(&vars).unwrap_err().to_string();
        assert!(err.contains("PASSWORD_HASH_LANES"), "{err}");
    }
}
