//! Shared test harness: spawn the real `amber` binary on port 0 with a temp `DATA_DIR`,
//! find its address from its first stdout line, and talk HTTP to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use amber::config::{AuthSettings, Secret};
use amber::http::auth::{JwtKeys, Role};
use serde_json::Value;
use tempfile::TempDir;

/// The JWT secret every spawned test server uses.
pub const TEST_SECRET: &str = "test-secret-for-amber-black-box";
/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Every variable of SPEC's table: removed from the child's environment so the
/// developer's shell cannot change what a test sees.
const SPEC_VARS: &[&str] = &[
    "HOST",
    "PORT",
    "DATA_DIR",
    "SEED_FILE",
    "SEED_LEADERS",
    "APP_ENV",
    "LOG_FORMAT",
    "RUST_LOG",
    "REDIS_URL",
    "RATE_LIMITING_ENABLED",
    "REQUESTS_PER_MINUTE",
    "BURST_SIZE",
    "WINDOW_SECONDS",
    "USER_REQUESTS_PER_MINUTE",
    "USER_BURST_SIZE",
    "TRUSTED_PROXIES",
    "X_INGEST_ENABLED",
    "TWITTER_BEARER_TOKEN",
    "X_API_BASE_URL",
    "X_INGEST_LIMIT",
    "X_BACKFILL_COUNT",
    "X_INGEST_INTERVAL_MINUTES",
    "X_INGEST_CRON",
    "X_CIRCUIT_FAIL_MAX",
    "X_CIRCUIT_RESET_SECONDS",
    "X_REFRESH_COOLDOWN_SECONDS",
    "ADMIN_JWT_SECRET",
    "ADMIN_JWT_TTL",
    "ADMIN_BOOTSTRAP_SECRET",
    "CORS_ALLOWED_ORIGINS",
    "SLED_CACHE_MB",
    "METRICS_ALLOWED_NETWORKS",
    "X_MONTHLY_READ_BUDGET",
    "GIT_COMMIT",
    "BUILD_TIME",
    "REQUEST_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_IP",
    "REPLICATION",
    "REPLICATION_CLUSTER",
    "REPLICATION_SNAPSHOT",
    "REPLICATION_ADVERTISE_URL",
];

/// The path of the binary under test.
pub fn amber_bin() -> &'static str {
    env!("CARGO_BIN_EXE_amber")
}

/// The seed file in the repository.
pub fn seed_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/leaders.json")
}

/// A command for the binary with a clean, test-owned environment.
pub fn amber_command(data_dir: &Path, env: &HashMap<String, String>) -> Command {
    amber_command_limited(data_dir, env, None)
}

/// Like [`amber_command`], with the open-file limit (soft and hard) set to `nofile` in
/// the child, as `ulimit -n` would (systemd's default is 1024).
pub fn amber_command_limited(
    data_dir: &Path,
    env: &HashMap<String, String>,
    nofile: Option<u64>,
) -> Command {
    let mut cmd = match nofile {
        Some(n) => {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\""))
                .arg(amber_bin());
            sh
        }
        None => Command::new(amber_bin()),
    };
    for var in SPEC_VARS {
        cmd.env_remove(var);
    }
    // The child runs in the data dir so a developer's `.env` is never read.
    cmd.current_dir(data_dir)
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATA_DIR", data_dir)
        .env("SEED_FILE", seed_file())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("ADMIN_JWT_SECRET", TEST_SECRET)
        .env("SLED_CACHE_MB", "16");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running server and everything needed to talk to it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub env: HashMap<String, String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
    // Invariant: kept alive as long as the app; dropped last.
    _dir: Option<TempDir>,
}

/// Spawns a server with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A fake X API with `users` accounts of `posts` posts each, and a server pointed at it
/// with its token (plus `extra` environment).
pub async fn spawn_on_fake_x(
    users: u32,
    posts: u32,
    extra: &[(&str, &str)],
) -> (amber::x_api::fake::FakeX, TestApp) {
    use amber::x_api::fake::{FakeScript, FakeX};
    let fake = FakeX::start(FakeScript {
        users,
        posts_per_user: posts,
        ..FakeScript::default()
    })
    .expect("fake X API");
    let token = fake.token();
    let mut env = vec![
        ("X_API_BASE_URL", fake.base_url()),
        ("TWITTER_BEARER_TOKEN", token.as_str()),
    ];
    env.extend_from_slice(extra);
    let app = spawn_app_with(&env).await;
    drop(env);
    (fake, app)
}

/// Spawns a server with extra environment variables.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut app = start(dir.path().to_path_buf(), env).await;
    app._dir = Some(dir);
    app
}

/// Spawns a server on an existing data directory (kept by the caller).
pub async fn spawn_on(data_dir: &Path) -> TestApp {
    start(data_dir.to_path_buf(), HashMap::new()).await
}

/// Spawns a server on an existing data directory (kept by the caller) with extra variables.
pub async fn spawn_on_with(data_dir: &Path, env: &[(&str, &str)]) -> TestApp {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    start(data_dir.to_path_buf(), env).await
}

/// Spawns a server with extra environment variables under an open-file limit.
pub async fn spawn_app_with_nofile(env: &[(&str, &str)], nofile: u64) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut app = start_limited(dir.path().to_path_buf(), env, Some(nofile)).await;
    app._dir = Some(dir);
    app
}

async fn start(data_dir: PathBuf, env: HashMap<String, String>) -> TestApp {
    start_limited(data_dir, env, None).await
}

async fn start_limited(
    data_dir: PathBuf,
    env: HashMap<String, String>,
    nofile: Option<u64>,
) -> TestApp {
    let log_path = data_dir.join(format!(
        "server-{}.log",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = amber_command_limited(&data_dir, &env, nofile)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn amber");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "server did not start; log:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
    };
    let address = listening_address(&line);
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!("server at {address}, log {}", log_path.display());
    }
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // Below the server's keep-alive (5 s), so a pooled connection is never one
            // the server is closing as it is reused (hyper's IncompleteMessage, seen
            // once under load in a replication test).
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .expect("client"),
        env,
        data_dir,
        log_path,
        child: Some(child),
        _dir: None,
    }
}

impl TestApp {
    /// The full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The data directory of this server.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A token signed with the test secret.
    pub fn token(&self, sub: &str, role: Role) -> String {
        keys().issue(sub, role, 3600).expect("token")
    }

    /// An admin token.
    pub fn admin_token(&self) -> String {
        self.token("test-admin", Role::Admin)
    }

    /// A reviewer token.
    pub fn reviewer_token(&self) -> String {
        self.token("test-reviewer", Role::Reviewer)
    }

    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// GET a path with a token.
    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// Sends JSON with a method and an optional token.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.request(method, self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request")
    }

    /// POST JSON as admin.
    pub async fn admin_post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.send_json(reqwest::Method::POST, path, body, Some(&self.admin_token()))
            .await
    }

    /// DELETE a path as admin.
    pub async fn admin_delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("request")
    }

    /// Creates a post as admin and returns its JSON.
    pub async fn create_post(&self, body: &Value) -> Value {
        let res = self.admin_post("/api/posts", body).await;
        assert_eq!(res.status(), 201, "create post");
        res.json().await.expect("json")
    }

    /// GET a path and return its status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Kills the server with SIGKILL (no chance to flush) and waits for it to go.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.send_sigterm();
        self.wait_exit()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        self.send_signal("TERM");
    }

    /// Sends a signal (`TERM`, `INT`, ...) without waiting.
    pub fn send_signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
    }

    /// Waits (at most 40 s) for the server to exit, and returns its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new server process on the same data directory and settings.
    pub async fn restart(mut self) -> TestApp {
        self.kill9();
        let dir = self._dir.take();
        let mut app = start(self.data_dir.clone(), self.env.clone()).await;
        app._dir = dir;
        app
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Keys for the test secret.
pub fn keys() -> JwtKeys {
    JwtKeys::new(&AuthSettings {
        jwt_secret: Secret::new(TEST_SECRET),
        jwt_ttl_seconds: 3600,
        bootstrap_secret: Secret::new(TEST_SECRET),
        using_default_secret: false,
    })
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An id as the API answers it: a JSON string of digits (never a number), as the
/// original system's clients expect. Panics on anything else.
pub fn id_of(v: &Value) -> u64 {
    v.as_str()
        .unwrap_or_else(|| panic!("an id must be a JSON string, got {v}"))
        .parse()
        .unwrap_or_else(|_| panic!("an id of Amber's is digits, got {v}"))
}

/// The address of the first stdout line: `amber listening on ADDRESS`, or with
/// LOG_FORMAT=json (the harness default) one JSON object whose `address` it is.
pub fn listening_address(line: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        assert_eq!(v["event"], "listening", "{line}");
        assert_eq!(
            v["message"],
            format!("amber listening on {}", v["address"].as_str().unwrap_or("")),
            "{line}"
        );
        return v["address"].as_str().expect("address").to_string();
    }
    line.strip_prefix("amber listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string()
}

/// Triggers an ingestion run (not a backfill) and waits, up to a minute, until it is over.
pub async fn run_ingestion(app: &TestApp) {
    let (_, s) = app.get_json("/api/ingestion/status").await;
    let before = s["last_run"]["started_at"].clone();
    let res = app
        .admin_post(
            "/api/ingestion/trigger",
            &serde_json::json!({"backfill": false}),
        )
        .await;
    assert_eq!(res.status(), 202);
    eventually(Duration::from_secs(60), "the run to end", || async {
        let (_, s) = app.get_json("/api/ingestion/status").await;
        let last = &s["last_run"];
        (!s["running"].as_bool().unwrap_or(true) && !last.is_null() && last["started_at"] != before)
            .then_some(())
    })
    .await;
}

/// Starts a throw-away redis-server on a free port, if one is installed.
pub fn redis_server() -> Option<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some((child, format!("redis://127.0.0.1:{port}")))
}
