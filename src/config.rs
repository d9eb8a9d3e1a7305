//! Settings: the ONLY place that reads the environment (and `.env`). Every variable of
//! SPEC's table is parsed and validated here; a bad value is a [`ConfigError`] naming it.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// The development JWT secret. `APP_ENV=production` refuses to start with it.
pub const DEFAULT_JWT_SECRET: &str = "amber-dev-secret-change-me";

/// A bad configuration value: which variable, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn bad(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `APP_ENV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `CORS_ALLOWED_ORIGINS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// Rate-limiting settings (SPEC "Rate limiting").
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub requests_per_minute: u32,
    pub burst_size: u32,
    pub window_seconds: u32,
    pub user_requests_per_minute: u32,
    pub user_burst_size: u32,
    pub trusted_proxies: Vec<IpNet>,
}

/// X ingestion settings (SPEC "Ingestion").
#[derive(Debug, Clone, PartialEq)]
pub struct XSettings {
    pub ingest_enabled: bool,
    pub bearer_token: Option<Secret>,
    pub api_base_url: String,
    pub ingest_limit: u32,
    pub backfill_count: u32,
    pub interval_minutes: u32,
    /// The 5-field crontab expression as written (already checked to parse).
    pub cron: Option<String>,
    pub circuit_fail_max: u32,
    pub circuit_reset_seconds: u64,
    pub refresh_cooldown_seconds: u64,
    pub monthly_read_budget: Option<u64>,
    /// `AMBER_TEST_CLOCK` (tests only): the UTC instant the ingestion books' clock reads at
    /// start (it runs on from there). Never set in production: it moves the UTC day X's
    /// billing is kept by.
    pub test_clock: Option<chrono::DateTime<chrono::Utc>>,
    /// `X_ACTIVITY_STREAM`: hold X's Activity API stream (`post.create`, `post.delete`
    /// for every leader with an X handle) beside the polling schedule.
    pub activity_stream: bool,
    /// `X_ACTIVITY_STALL_SECONDS`: a stream silent this long (no event, no keep-alive;
    /// X sends one every 20 s) is given up and reopened.
    pub activity_stall_seconds: u64,
}

/// JWT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub jwt_secret: Secret,
    pub jwt_ttl_seconds: u64,
    pub bootstrap_secret: Secret,
    /// True when `ADMIN_JWT_SECRET` was not set and the development default is in use.
    pub using_default_secret: bool,
}

/// Connection limits and deadlines (`http::conn`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnSettings {
    /// `REQUEST_TIMEOUT_SECONDS`: a whole request (head and body) must arrive within it.
    pub request_timeout_seconds: u64,
    /// `MAX_CONNECTIONS`: caps the derived connection limit (never above the file limit).
    pub max_connections: Option<usize>,
    /// `MAX_CONNECTIONS_PER_IP`: connections one client address may hold.
    pub max_connections_per_ip: usize,
}

/// Server-Sent Events of the feed (`GET /api/feed/events`).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveSettings {
    /// `SSE_MAX_CONNECTIONS`: event streams open at once; one more is answered 503.
    pub max_streams: usize,
    /// `SSE_KEEPALIVE_SECONDS`: a comment line is sent after this long without an event.
    pub keepalive_seconds: u64,
    /// `SSE_MAX_STREAM_SECONDS`: a stream is ended after this long (the browser
    /// reconnects with `Last-Event-ID` and misses nothing).
    pub max_stream_seconds: u64,
}

/// What the health endpoint reports about this build.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildInfo {
    pub version: String,
    pub commit: String,
    pub build_time: String,
}

/// Every setting of the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub seed_file: PathBuf,
    pub seed_leaders: bool,
    pub app_env: AppEnv,
    pub log_format: LogFormat,
    pub rust_log: String,
    pub redis_url: Option<String>,
    pub rate_limit: RateLimitSettings,
    pub x: XSettings,
    pub auth: AuthSettings,
    pub cors_allowed_origins: CorsOrigins,
    pub sled_cache_mb: u64,
    /// `DISK_RESERVE_MB`: free space (MiB) every write must leave under `DATA_DIR`; below
    /// it writes are refused with 507 before sled is touched (0 turns the check off).
    pub disk_reserve_mb: u64,
    pub metrics_allowed_networks: Vec<IpNet>,
    pub conn: ConnSettings,
    pub build: BuildInfo,
    /// `NOTIFY_*`: the default notification target and how deliveries are tried.
    pub notify: NotifySettings,
    /// `AMBER_BENCH_ROUTES=true` adds the `/bench/*` baseline routes used by the load
    /// scripts (never needed in production).
    pub bench_routes: bool,
    /// `SSE_*`: the feed's event streams.
    pub live: LiveSettings,
    /// `REPLICATION=redis`: the cluster name (`REPLICATION_CLUSTER`) whose stream every
    /// write goes through (`crate::replication`); `None`: off.
    pub replication: Option<String>,
    /// `REPLICATION_SNAPSHOT`: the snapshot file or URL a bootstrap loads (else the
    /// snapshots other instances advertise), see `replication::bootstrap`.
    pub replication_snapshot: Option<String>,
    /// `REPLICATION_ADVERTISE_URL`: this instance's base URL, advertised to the others
    /// so they can fetch its snapshot.
    pub replication_advertise_url: Option<String>,
    /// `AMBER_TEST_BOOTSTRAP_PAUSE_MS` (tests only): a pause every 10 records a bootstrap
    /// loads, so a test can kill it mid-load.
    pub test_bootstrap_pause_ms: u64,
}

/// Notifications (`NOTIFY_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    /// `NOTIFY_URL` with `NOTIFY_FORMAT` (default `json`): a target kept in step with
    /// these variables at every start (its queue survives a change of format or URL).
    pub default_target: Option<(String, crate::notify::target::Format)>,
    pub delivery: crate::notify::delivery::DeliverySettings,
}

/// Reads raw variables by name.
struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| bad(name, format!("{v:?} is not {what}"))),
        }
    }

    fn positive(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        let v: u32 = self.parse(name, default, "a whole number")?;
        if v == 0 {
            return Err(bad(name, "must be greater than zero"));
        }
        Ok(v)
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(bad(name, format!("{v:?} is not true or false"))),
            },
        }
    }

    fn networks(&self, name: &'static str, default: &str) -> Result<Vec<IpNet>, ConfigError> {
        let raw = self.get(name).unwrap_or_else(|| default.to_string());
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| bad(name, format!("{s:?} is not a CIDR or IP address")))
            })
            .collect()
    }
}

fn notify_settings(v: &Vars) -> Result<NotifySettings, ConfigError> {
    use crate::notify::target::{check_url, Format};
    let default_target = match v.get("NOTIFY_URL") {
        None => None,
        Some(raw) => {
            let url = check_url(&raw).map_err(|e| bad("NOTIFY_URL", e))?;
            let f = v.string("NOTIFY_FORMAT", "json");
            let format = Format::parse(&f).ok_or_else(|| {
                bad(
                    "NOTIFY_FORMAT",
                    format!("{f:?} is not json, ntfy, discord or slack"),
                )
            })?;
            Some((url, format))
        }
    };
    let base = v.positive("NOTIFY_RETRY_BASE_MS", 2000)?;
    let max = v.positive("NOTIFY_RETRY_MAX_MS", 300_000)?;
    if max < base {
        return Err(bad(
            "NOTIFY_RETRY_MAX_MS",
            "must be at least NOTIFY_RETRY_BASE_MS",
        ));
    }
    let ms = |n: u32| std::time::Duration::from_millis(u64::from(n));
    Ok(NotifySettings {
        default_target,
        delivery: crate::notify::delivery::DeliverySettings {
            retry_base: ms(base),
            retry_max: ms(max),
            pause_after: v.positive("NOTIFY_PAUSE_AFTER", 10)?,
            timeout: std::time::Duration::from_secs(u64::from(
                v.positive("NOTIFY_TIMEOUT_SECONDS", 10)?,
            )),
            concurrency: v.positive("NOTIFY_CONCURRENCY", 4)? as usize,
        },
    })
}

impl Settings {
    /// Reads settings from the process environment, after loading `.env` if present
    /// (variables already set win over `.env`).
    pub fn from_env() -> Result<Settings, ConfigError> {
        let _ = dotenvy::dotenv();
        Settings::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings from a map (tests).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(&|name| map.get(name).cloned())
    }

    /// Reads settings through any lookup function.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let v = Vars { lookup };
        let app_env = match v
            .string("APP_ENV", "development")
            .to_ascii_lowercase()
            .as_str()
        {
            "development" | "dev" | "test" => AppEnv::Development,
            "production" | "prod" => AppEnv::Production,
            other => {
                return Err(bad(
                    "APP_ENV",
                    format!("{other:?} is not development or production"),
                ))
            }
        };
        let log_format = match v
            .string("LOG_FORMAT", "pretty")
            .to_ascii_lowercase()
            .as_str()
        {
            "pretty" | "text" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "LOG_FORMAT",
                    format!("{other:?} is not json or pretty"),
                ))
            }
        };
        let rust_log = v.string("RUST_LOG", "info");
        if tracing_subscriber::EnvFilter::try_new(&rust_log).is_err() {
            return Err(bad("RUST_LOG", format!("{rust_log:?} is not a log filter")));
        }

        let redis_url = v.get("REDIS_URL");
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://")
                || url.starts_with("unix://"))
            {
                return Err(bad(
                    "REDIS_URL",
                    "must start with redis://, rediss:// or unix://",
                ));
            }
            if redis::Client::open(url.as_str()).is_err() {
                return Err(bad("REDIS_URL", "is not a valid Redis URL"));
            }
        }

        let replication = match v.string("REPLICATION", "off").as_str() {
            "off" => None,
            "redis" if redis_url.is_none() => {
                return Err(bad("REPLICATION", "redis needs REDIS_URL"));
            }
            "redis" => {
                let cluster = v.string("REPLICATION_CLUSTER", "default");
                if cluster.len() > 64
                    || !cluster
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
                {
                    return Err(bad(
                        "REPLICATION_CLUSTER",
                        "must be 1 to 64 letters, digits or - _ . :",
                    ));
                }
                Some(cluster)
            }
            other => return Err(bad("REPLICATION", format!("{other:?} is not off or redis"))),
        };

        let replication_advertise_url = match v.get("REPLICATION_ADVERTISE_URL") {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(bad(
                    "REPLICATION_ADVERTISE_URL",
                    "must be this instance's base URL, starting with http:// or https://",
                ))
            }
            other => other.map(|u| u.trim_end_matches('/').to_string()),
        };

        let requests_per_minute = v.positive("REQUESTS_PER_MINUTE", 60)?;
        let burst_size = v.positive("BURST_SIZE", requests_per_minute)?;
        let rate_limit = RateLimitSettings {
            enabled: v.boolean("RATE_LIMITING_ENABLED", true)?,
            requests_per_minute,
            burst_size,
            window_seconds: v.positive("WINDOW_SECONDS", 60)?,
            user_requests_per_minute: v.positive(
                "USER_REQUESTS_PER_MINUTE",
                requests_per_minute.saturating_mul(2),
            )?,
            user_burst_size: v.positive("USER_BURST_SIZE", burst_size.saturating_mul(2))?,
            trusted_proxies: v.networks("TRUSTED_PROXIES", "")?,
        };

        let api_base_url = v
            .string("X_API_BASE_URL", "https://api.twitter.com/2")
            .trim_end_matches('/')
            .to_string();
        match reqwest::Url::parse(&api_base_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(bad(
                    "X_API_BASE_URL",
                    format!("{api_base_url:?} is not an http(s) URL"),
                ))
            }
        }
        let cron = v.get("X_INGEST_CRON");
        if let Some(expr) = &cron {
            crate::domain::crontab::parse(expr)
                .map_err(|e| bad("X_INGEST_CRON", format!("{expr:?}: {e}")))?;
        }
        let ingest_limit = v.positive("X_INGEST_LIMIT", 10)?;
        if ingest_limit > 100 {
            return Err(bad(
                "X_INGEST_LIMIT",
                "must be at most 100 (X returns at most 100 posts a page)",
            ));
        }
        let monthly_read_budget = match v.get("X_MONTHLY_READ_BUDGET") {
            None => None,
            Some(s) => Some(s.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                bad(
                    "X_MONTHLY_READ_BUDGET",
                    format!("{s:?} is not a whole number above zero"),
                )
            })?),
        };
        let test_clock = match v.get("AMBER_TEST_CLOCK") {
            None => None,
            Some(s) => Some(
                chrono::DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        bad(
                            "AMBER_TEST_CLOCK",
                            format!("{s:?} is not an RFC 3339 time (tests only)"),
                        )
                    })?,
            ),
        };
        let x = XSettings {
            ingest_enabled: v.boolean("X_INGEST_ENABLED", false)?,
            bearer_token: v.get("TWITTER_BEARER_TOKEN").map(Secret::new),
            api_base_url,
            ingest_limit,
            backfill_count: v.positive("X_BACKFILL_COUNT", 50)?,
            interval_minutes: v.positive("X_INGEST_INTERVAL_MINUTES", 30)?,
            cron,
            circuit_fail_max: v.positive("X_CIRCUIT_FAIL_MAX", 5)?,
            circuit_reset_seconds: u64::from(v.positive("X_CIRCUIT_RESET_SECONDS", 300)?),
            refresh_cooldown_seconds: v.parse(
                "X_REFRESH_COOLDOWN_SECONDS",
                60u64,
                "a whole number",
            )?,
            monthly_read_budget,
            test_clock,
            activity_stream: v.boolean("X_ACTIVITY_STREAM", false)?,
            activity_stall_seconds: {
                let secs = v.positive("X_ACTIVITY_STALL_SECONDS", 30)?;
                if !(2..=600).contains(&secs) {
                    return Err(bad("X_ACTIVITY_STALL_SECONDS", "must be between 2 and 600"));
                }
                u64::from(secs)
            },
        };

        let jwt = v.get("ADMIN_JWT_SECRET");
        let using_default_secret = jwt.is_none();
        let jwt_secret = Secret::new(jwt.unwrap_or_else(|| DEFAULT_JWT_SECRET.to_string()));
        if jwt_secret.expose().len() < 16 && !using_default_secret {
            return Err(bad("ADMIN_JWT_SECRET", "must be at least 16 characters"));
        }
        let auth = AuthSettings {
            bootstrap_secret: v
                .get("ADMIN_BOOTSTRAP_SECRET")
                .map(Secret::new)
                .unwrap_or_else(|| jwt_secret.clone()),
            jwt_secret,
            jwt_ttl_seconds: u64::from(v.positive("ADMIN_JWT_TTL", 3600)?),
            using_default_secret,
        };

        let cors_raw = v.string("CORS_ALLOWED_ORIGINS", "*");
        let cors_allowed_origins = if cors_raw == "*" {
            CorsOrigins::Any
        } else {
            let list: Vec<String> = cors_raw
                .split(',')
                .map(|s| s.trim().trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty())
                .collect();
            for origin in &list {
                if origin == "*"
                    || !(origin.starts_with("http://") || origin.starts_with("https://"))
                {
                    return Err(bad(
                        "CORS_ALLOWED_ORIGINS",
                        format!("{origin:?} is not an http(s) origin"),
                    ));
                }
            }
            CorsOrigins::List(list)
        };

        if app_env == AppEnv::Production {
            if using_default_secret || auth.jwt_secret.expose() == DEFAULT_JWT_SECRET {
                return Err(bad(
                    "ADMIN_JWT_SECRET",
                    "production needs a secret of your own (APP_ENV=production)",
                ));
            }
            if cors_allowed_origins == CorsOrigins::Any {
                return Err(bad(
                    "CORS_ALLOWED_ORIGINS",
                    "production refuses * (APP_ENV=production); list your origins",
                ));
            }
        }

        let host = v.string("HOST", "127.0.0.1");
        let host = host
            .parse::<IpAddr>()
            .map_err(|_| bad("HOST", format!("{host:?} is not an IP address")))?;
        let data_dir = PathBuf::from(v.string("DATA_DIR", "./data"));

        Ok(Settings {
            host,
            port: v.parse("PORT", 5000u16, "a port number")?,
            data_dir,
            seed_file: PathBuf::from(v.string("SEED_FILE", "data/leaders.json")),
            seed_leaders: v.boolean("SEED_LEADERS", true)?,
            app_env,
            log_format,
            rust_log,
            redis_url,
            rate_limit,
            x,
            auth,
            cors_allowed_origins,
            sled_cache_mb: u64::from(v.positive("SLED_CACHE_MB", 64)?),
            disk_reserve_mb: v.parse("DISK_RESERVE_MB", 64u64, "a whole number of MiB")?,
            metrics_allowed_networks: v
                .networks("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")?,
            conn: ConnSettings {
                request_timeout_seconds: u64::from(v.positive("REQUEST_TIMEOUT_SECONDS", 30)?),
                max_connections: match v.get("MAX_CONNECTIONS") {
                    None => None,
                    Some(_) => Some(v.positive("MAX_CONNECTIONS", 1)? as usize),
                },
                max_connections_per_ip: v.positive("MAX_CONNECTIONS_PER_IP", 32)? as usize,
            },
            build: BuildInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                // Recorded by build.rs (git, or GIT_COMMIT / BUILD_TIME at build time);
                // the same variables at run time override it.
                commit: v
                    .get("GIT_COMMIT")
                    .unwrap_or_else(|| env!("AMBER_GIT_COMMIT").to_string()),
                build_time: v
                    .get("BUILD_TIME")
                    .unwrap_or_else(|| env!("AMBER_BUILD_TIME").to_string()),
            },
            notify: notify_settings(&v)?,
            bench_routes: v.boolean("AMBER_BENCH_ROUTES", false)?,
            live: LiveSettings {
                max_streams: v.positive("SSE_MAX_CONNECTIONS", 1000)? as usize,
                keepalive_seconds: u64::from(v.positive("SSE_KEEPALIVE_SECONDS", 15)?),
                max_stream_seconds: u64::from(v.positive("SSE_MAX_STREAM_SECONDS", 3600)?),
            },
            replication,
            replication_snapshot: v.get("REPLICATION_SNAPSHOT"),
            replication_advertise_url,
            test_bootstrap_pause_ms: v.parse(
                "AMBER_TEST_BOOTSTRAP_PAUSE_MS",
                0,
                "a whole number of milliseconds",
            )?,
        })
    }

    /// Where sled keeps its files: `$DATA_DIR/db`.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 5000);
        assert_eq!(s.rate_limit.burst_size, 60);
        assert_eq!(s.rate_limit.user_requests_per_minute, 120);
        assert_eq!(s.x.interval_minutes, 30);
        assert_eq!(s.sled_cache_mb, 64);
        assert_eq!(s.live.max_streams, 1000);
        assert_eq!(s.live.keepalive_seconds, 15);
        assert_eq!(s.live.max_stream_seconds, 3600);
        assert_eq!(s.disk_reserve_mb, 64);
        assert_eq!(
            settings(&[("DISK_RESERVE_MB", "0")])
                .unwrap()
                .disk_reserve_mb,
            0
        );
        assert_eq!(s.conn.request_timeout_seconds, 30);
        assert_eq!(s.conn.max_connections, None);
        assert_eq!(s.conn.max_connections_per_ip, 32);
        assert!(s.auth.using_default_secret);
        assert_eq!(s.auth.bootstrap_secret, s.auth.jwt_secret);
        assert_eq!(s.db_path(), PathBuf::from("./data/db"));
        assert!(!s.x.activity_stream);
        assert_eq!(s.x.activity_stall_seconds, 30);
        assert!(
            settings(&[("X_ACTIVITY_STREAM", "true")])
                .unwrap()
                .x
                .activity_stream
        );
    }

    #[test]
    fn burst_defaults_to_the_rate() {
        let s = settings(&[("REQUESTS_PER_MINUTE", "10")]).unwrap();
        assert_eq!(s.rate_limit.burst_size, 10);
        assert_eq!(s.rate_limit.user_burst_size, 20);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases = [
            ("PORT", "http"),
            ("REQUESTS_PER_MINUTE", "0"),
            ("BURST_SIZE", "ten"),
            ("X_INGEST_CRON", "every hour"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("METRICS_ALLOWED_NETWORKS", "nowhere"),
            ("X_API_BASE_URL", "ftp://x"),
            ("REDIS_URL", "localhost:6379"),
            ("RATE_LIMITING_ENABLED", "maybe"),
            ("HOST", "my host"),
            ("SLED_CACHE_MB", "-1"),
            ("DISK_RESERVE_MB", "lots"),
            ("DISK_RESERVE_MB", "-5"),
            ("LOG_FORMAT", "xml"),
            ("X_INGEST_LIMIT", "500"),
            ("REQUEST_TIMEOUT_SECONDS", "0"),
            ("MAX_CONNECTIONS", "many"),
            ("MAX_CONNECTIONS_PER_IP", "-3"),
            ("SSE_MAX_CONNECTIONS", "0"),
            ("SSE_KEEPALIVE_SECONDS", "soon"),
            ("SSE_MAX_STREAM_SECONDS", "-1"),
            ("X_ACTIVITY_STREAM", "sometimes"),
            ("X_ACTIVITY_STALL_SECONDS", "1"),
            ("X_ACTIVITY_STALL_SECONDS", "forever"),
            ("REPLICATION", "redis"),
            ("REPLICATION", "raft"),
        ];
        for (var, value) in cases {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}:")));
        }
    }

    #[test]
    fn production_refuses_default_secret_and_open_cors() {
        assert_eq!(
            settings(&[
                ("APP_ENV", "production"),
                ("CORS_ALLOWED_ORIGINS", "https://a.example")
            ])
            .unwrap_err()
            .var,
            "ADMIN_JWT_SECRET"
        );
        assert_eq!(
            settings(&[
                ("APP_ENV", "production"),
                ("ADMIN_JWT_SECRET", "a-long-enough-secret-value")
            ])
            .unwrap_err()
            .var,
            "CORS_ALLOWED_ORIGINS"
        );
        assert!(settings(&[
            ("APP_ENV", "production"),
            ("ADMIN_JWT_SECRET", "a-long-enough-secret-value"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example")
        ])
        .is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = settings(&[
            ("ADMIN_JWT_SECRET", "super-secret-value-123"),
            ("TWITTER_BEARER_TOKEN", "tok-abc"),
        ])
        .unwrap();
        let dump = format!("{s:?}");
        assert!(!dump.contains("super-secret-value-123"));
        assert!(!dump.contains("tok-abc"));
    }
}
