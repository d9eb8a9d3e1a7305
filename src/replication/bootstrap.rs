//! Bootstrap from a snapshot: what an instance does when the stream no longer holds the
//! entries after its position (trimmed past it while it was stopped, or a new instance
//! whose stream no longer starts at entry 1).
//!
//! 1. **Where from.** `REPLICATION_SNAPSHOT` (a file path, or a URL asked with an admin
//!    token this instance signs) when set; else every instance that set
//!    `REPLICATION_ADVERTISE_URL` and reported lately in `amber:repl:{NAME}:snapshots`,
//!    the most advanced first, each asked `GET <url>/api/admin/replication/snapshot`.
//! 2. **Fetch and load.** A URL is downloaded to `DATA_DIR/db.bootstrap.download`; the
//!    snapshot is read into a new database `DATA_DIR/db.bootstrap`, checked as it goes
//!    (`storage::replica::load`: Amber snapshot, this cluster, whole, checksum).
//! 3. **Check the position against the stream.** The snapshot must reach the stream: the
//!    entry after its position must still be there, and when its own entry is, that
//!    entry must carry the number the snapshot names (a snapshot of the same cluster name
//!    on another Redis is refused).
//! 4. **Switch** (`PostStore` `SwitchToLoaded`, atomic, see `storage::replica`) and
//!    follow the stream from the snapshot's position.
//!
//! A failure is shown in `lastError`; every source is tried, then again after a backoff
//! (1 s doubling to 60 s). Health shows `bootstrapping` with the phase and progress.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use crate::actors::store::SwitchToLoaded;
use crate::http::auth::{JwtKeys, Role};
use crate::storage::replica::{self, LoadProgress, Trailer};

use super::{
    entries, id_key, now_ms, timed, Replicator, MEMBER_TTL_MS, REDIS_TIMEOUT, REPORT_EVERY,
};

/// The path every instance serves its snapshot on.
pub const SNAPSHOT_PATH: &str = "/api/admin/replication/snapshot";
/// Longest wait between two rounds of tries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Time allowed to download one snapshot.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a bootstrap needs besides the replicator.
pub struct Config {
    pub data_dir: PathBuf,
    /// `REPLICATION_SNAPSHOT`.
    pub source: Option<String>,
    /// `REPLICATION_ADVERTISE_URL`.
    pub advertise: Option<String>,
    /// Signs the admin token a fetch carries (the instances share `ADMIN_JWT_SECRET`).
    pub keys: Arc<JwtKeys>,
    /// `AMBER_TEST_BOOTSTRAP_PAUSE_MS`.
    pub pause_ms: u64,
}

/// A bootstrap in progress, as health shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// `fetching`, `loading`, `switching`, or `waiting` (for the next try).
    pub phase: &'static str,
    /// The snapshot being loaded (a file or URL).
    pub source: Option<String>,
    /// Bytes downloaded of it.
    pub bytes: u64,
    /// Records loaded of it.
    pub records: u64,
    /// Rounds over the sources so far.
    pub attempts: u32,
    /// When the bootstrap began (unix ms).
    pub started_ms: i64,
}

impl Replicator {
    fn progress(&self, f: impl FnOnce(&mut Progress)) {
        let mut st = self.inner.state.lock();
        if let Some(p) = st.bootstrap.as_mut() {
            f(p);
        }
    }

    /// Bootstraps until it succeeds; afterwards the state stands at the snapshot's
    /// position and the reader reads on from there.
    pub(super) async fn bootstrap(&self, why: String) {
        let Some(config) = self.inner.bootstrap.get() else {
            // Without a configuration (never in a server) the gap stays a stop.
            self.inner.state.lock().last_error = Some(why);
            std::future::pending::<()>().await;
            return;
        };
        tracing::warn!(reason = %why, "replication: bootstrapping from a snapshot");
        {
            let mut st = self.inner.state.lock();
            st.last_error = Some(why);
            st.bootstrap = Some(Progress {
                phase: "fetching",
                started_ms: now_ms(),
                ..Default::default()
            });
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            self.progress(|p| p.attempts += 1);
            let mut errors = Vec::new();
            let sources = match self.sources(config).await {
                Ok(s) if s.is_empty() => {
                    errors.push("no snapshot source: set REPLICATION_SNAPSHOT, or REPLICATION_ADVERTISE_URL on another instance of the cluster".to_string());
                    s
                }
                Ok(s) => s,
                Err(err) => {
                    errors.push(err);
                    Vec::new()
                }
            };
            for source in sources {
                match self.try_source(config, &source).await {
                    Ok(trailer) => {
                        let mut st = self.inner.state.lock();
                        st.position = trailer.position.clone();
                        st.applied = trailer.n;
                        st.applied_ms = id_key(&trailer.position).0 as i64;
                        st.head = st.head.max(trailer.n);
                        st.update_lag();
                        st.bootstrap = None;
                        st.last_error = None;
                        tracing::info!(source = %source, position = %trailer.position, n = trailer.n, "replication: bootstrapped from a snapshot; following the stream");
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(source = %source, error = %err, "replication: snapshot not used");
                        errors.push(format!("{source}: {err}"));
                    }
                }
            }
            {
                let mut st = self.inner.state.lock();
                st.last_error = Some(format!(
                    "bootstrapping from a snapshot (try {}): {}; next try in {} s",
                    st.bootstrap.as_ref().map_or(0, |p| p.attempts),
                    errors.join("; "),
                    backoff.as_secs()
                ));
                if let Some(p) = st.bootstrap.as_mut() {
                    p.phase = "waiting";
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Where to fetch from: the configured snapshot, or the advertised ones (freshest
    /// report, most advanced position first; this instance excluded).
    async fn sources(&self, config: &Config) -> Result<Vec<String>, String> {
        if let Some(source) = &config.source {
            return Ok(vec![source.clone()]);
        }
        let key = snapshots_key(&self.inner.stream);
        let advertised: std::collections::HashMap<String, String> = self
            .with_conn(async |conn| {
                timed(
                    REDIS_TIMEOUT,
                    redis::cmd("HGETALL").arg(&key).query_async(conn),
                )
                .await
            })
            .await?;
        let now = now_ms();
        let mut found: Vec<(u64, String)> = advertised
            .into_iter()
            .filter(|(instance, _)| *instance != self.inner.instance)
            .filter_map(|(_, value)| {
                let mut parts = value.splitn(3, ' ');
                let at: i64 = parts.next()?.parse().ok()?;
                let n: u64 = parts.next()?.parse().ok()?;
                let url = parts.next()?.to_string();
                (now - at <= MEMBER_TTL_MS).then(|| (n, format!("{url}{SNAPSHOT_PATH}")))
            })
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        Ok(found.into_iter().map(|(_, url)| url).collect())
    }

    async fn try_source(&self, config: &Config, source: &str) -> Result<Trailer, String> {
        self.progress(|p| {
            p.phase = "fetching";
            p.source = Some(source.to_string());
            p.bytes = 0;
            p.records = 0;
        });
        let download = config.data_dir.join("db.bootstrap.download");
        let file = if source.starts_with("http://") || source.starts_with("https://") {
            self.download(config, source, &download).await?;
            download.clone()
        } else {
            PathBuf::from(source)
        };
        self.progress(|p| p.phase = "loading");
        let progress = Arc::new(LoadProgress {
            pause_ms: config.pause_ms,
            ..Default::default()
        });
        let loading = {
            let (data_dir, cluster, progress) = (
                config.data_dir.clone(),
                self.inner.cluster.clone(),
                progress.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let input = std::fs::File::open(&file)
                    .map_err(|e| format!("opening {}: {e}", file.display()))?;
                replica::load(&data_dir, input, &cluster, &progress)
            })
        };
        tokio::pin!(loading);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let loaded = loop {
            tokio::select! {
                done = &mut loading => break done,
                _ = tick.tick() => {
                    let n = progress.records.load(Ordering::Relaxed);
                    self.progress(|p| p.records = n);
                }
            }
        };
        let _ = std::fs::remove_file(&download);
        let trailer = loaded.map_err(|e| format!("the load stopped: {e}"))??;
        let records = progress.records.load(Ordering::Relaxed);
        self.progress(|p| p.records = records);
        // Past the commit point (the marker) the loaded database is the data: never removed.
        let discard = || {
            if !config.data_dir.join(replica::READY_MARKER).exists() {
                let _ = std::fs::remove_dir_all(config.data_dir.join(replica::NEW_DIR));
            }
        };
        if let Err(err) = self.reaches_the_stream(&trailer).await {
            discard();
            return Err(err);
        }
        self.progress(|p| p.phase = "switching");
        match self.inner.store.send(SwitchToLoaded).await {
            Ok(Ok(())) => {
                // The snapshot brought the cluster's ingestion switch and notification
                // targets: whoever keeps them in memory reads them again.
                if let Some(hook) = self.inner.hook.get() {
                    hook(None);
                }
                Ok(trailer)
            }
            Ok(Err(err)) => {
                discard();
                Err(format!("switching to it: {err}"))
            }
            Err(err) => Err(format!("switching to it: {err}")),
        }
    }

    async fn download(
        &self,
        config: &Config,
        url: &str,
        to: &std::path::Path,
    ) -> Result<(), String> {
        use std::io::Write;
        let token = config
            .keys
            .issue("replication-bootstrap", Role::Admin, 600)
            .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut res = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("fetching: {e}"))?;
        if !res.status().is_success() {
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            return Err(format!(
                "fetching: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            ));
        }
        // Chunks go to the page cache (small writes); the one fsync runs off the executor.
        let mut file =
            std::fs::File::create(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
        while let Some(chunk) = res.chunk().await.map_err(|e| format!("fetching: {e}"))? {
            file.write_all(&chunk)
                .map_err(|e| format!("writing {}: {e}", to.display()))?;
            let len = chunk.len() as u64;
            self.progress(|p| p.bytes += len);
        }
        tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing {}: {e}", to.display()))
    }

    /// The snapshot must reach the stream: the entry after it is still there, and its own
    /// entry, when still there, carries its number.
    async fn reaches_the_stream(&self, trailer: &Trailer) -> Result<(), String> {
        let inner = &self.inner;
        let (first, own, head): (Value, Value, Option<u64>) = self
            .with_conn(async |conn| {
                timed(
                    REDIS_TIMEOUT,
                    redis::pipe()
                        .cmd("XRANGE")
                        .arg(&inner.stream)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(1)
                        .cmd("XRANGE")
                        .arg(&inner.stream)
                        .arg(&trailer.position)
                        .arg(&trailer.position)
                        .cmd("GET")
                        .arg(&inner.counter)
                        .query_async(conn),
                )
                .await
            })
            .await?;
        let head = head.unwrap_or(0);
        if trailer.n > head {
            return Err(format!(
                "it stands at entry {} but this stream has only {head}: it is of another stream",
                trailer.n
            ));
        }
        let Some(first) = entries(&first).pop() else {
            return if trailer.n == head {
                Ok(())
            } else {
                Err(format!(
                    "it stands at entry {}, the stream is trimmed to entry {head}",
                    trailer.n
                ))
            };
        };
        let first_n = first.number("n").unwrap_or(0);
        if trailer.n + 1 < first_n {
            return Err(format!(
                "it is too old: it stands at entry {}, the stream now starts at entry {first_n}",
                trailer.n
            ));
        }
        if trailer.n >= first_n {
            let same = entries(&own)
                .pop()
                .is_some_and(|e| e.number("n") == Some(trailer.n));
            if !same {
                return Err(format!(
                    "it is of another stream: entry {} is not number {} here",
                    trailer.position, trailer.n
                ));
            }
        } else if id_key(&trailer.position) >= id_key(&first.id) {
            return Err(format!(
                "it is of another stream: its entry {} is not before the stream's first, {}",
                trailer.position, first.id
            ));
        }
        Ok(())
    }

    /// Every [`REPORT_EVERY`], while this instance follows the stream, advertises where its
    /// snapshot is served (with `REPLICATION_ADVERTISE_URL`).
    pub(super) async fn advertise_loop(self) {
        let Some(url) = self.inner.bootstrap.get().and_then(|c| c.advertise.clone()) else {
            return;
        };
        let key = snapshots_key(&self.inner.stream);
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (following, applied) = {
                let st = self.inner.state.lock();
                (st.bootstrap.is_none() && st.connected, st.applied)
            };
            let instance = self.inner.instance.clone();
            let value = format!("{} {applied} {url}", now_ms());
            let _ = self
                .with_conn(async |conn| {
                    let mut cmd = redis::cmd(if following { "HSET" } else { "HDEL" });
                    cmd.arg(&key).arg(&instance);
                    if following {
                        cmd.arg(&value);
                    }
                    timed(REDIS_TIMEOUT, cmd.query_async::<()>(conn)).await
                })
                .await;
        }
    }
}

/// The hash of advertised snapshots: instance → `<unix ms> <entries applied> <url>`.
fn snapshots_key(stream: &str) -> String {
    format!("{stream}:snapshots")
}
