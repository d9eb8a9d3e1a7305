//! Wiring: open the store, start the actors, seed, build the HTTP server. Tests and
//! `main` both go through [`Application::build`]; the bound port is reported so tests
//! can ask for port 0.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{middleware::from_fn, web, App};
use anyhow::Context;

use crate::actors::scheduler::{IngestScheduler, Shutdown};
use crate::actors::store::{Close, PostStore, Recover, SeedLeaders};
use crate::actors::stream::{ActivityStream, BackoffRules, StopStream, StreamConfig, StreamDeps};
use crate::config::Settings;
use crate::domain::leader::LeaderDraft;
use crate::http::auth::JwtKeys;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimits;
use crate::shutdown::StopSignals;
use crate::status::{RedisHealth, StatusBoard};
use crate::storage::{Store, StoreError};

/// Seconds in-flight requests get to finish after SIGTERM / Ctrl-C.
const SHUTDOWN_GRACE_SECONDS: u64 = 30;
/// The seed list shipped with the binary, used when `SEED_FILE` is the default and the
/// file is not there (the binary was copied somewhere on its own).
const BUILTIN_SEED: &str = include_str!("../data/leaders.json");

/// A running server.
pub struct Application {
    port: u16,
    host: std::net::IpAddr,
    server: Server,
    /// Installed before the server reports its address; see [`crate::shutdown`].
    signals: StopSignals,
    store: Addr<PostStore>,
    ingest: Addr<IngestScheduler>,
    /// Closed at a stop signal, so open event streams end instead of holding the stop.
    live: Arc<crate::live::Hub>,
    activity: Option<Addr<ActivityStream>>,
}

/// Starts the Activity API stream when `X_ACTIVITY_STREAM=true` and a bearer token is set.
fn launch_stream(
    settings: &Settings,
    ingestion: &crate::actors::scheduler::Ingestion,
    store: &crate::replication::Writes,
    reader: &crate::storage::StoreReader,
) -> anyhow::Result<(
    Option<Addr<ActivityStream>>,
    tokio::sync::watch::Receiver<crate::status::StreamSnapshot>,
)> {
    let off = || tokio::sync::watch::channel(crate::status::StreamSnapshot::default()).1;
    if !settings.x.activity_stream {
        return Ok((None, off()));
    }
    let Some(token) = &settings.x.bearer_token else {
        tracing::warn!("X_ACTIVITY_STREAM=true but TWITTER_BEARER_TOKEN is not set: the activity stream stays off");
        return Ok((None, off()));
    };
    let client = crate::x_api::client::XClient::new(
        &settings.x.api_base_url,
        token.clone(),
        crate::x_api::client::RetryPolicy::default(),
    )?;
    let (addr, rx) = ActivityStream::launch(
        StreamConfig {
            stall_timeout: std::time::Duration::from_secs(settings.x.activity_stall_seconds),
            rules: BackoffRules::default(),
            redis_url: settings.redis_url.clone(),
        },
        StreamDeps {
            client,
            breaker: ingestion.breaker.clone(),
            store: store.clone(),
            reader: reader.clone(),
            scheduler: ingestion.scheduler.clone(),
        },
    );
    Ok((Some(addr), rx))
}

/// With `REPLICATION=redis`: the replicator, its reader loop started from the position
/// the store last applied. Without: writes go straight to the store.
fn start_replication(
    settings: &Settings,
    store: &Addr<PostStore>,
    reader: &crate::storage::StoreReader,
    bound: std::net::SocketAddr,
) -> anyhow::Result<crate::replication::Writes> {
    let (Some(cluster), Some(url)) = (&settings.replication, &settings.redis_url) else {
        return Ok(store.clone().into());
    };
    let position = reader.repl_position()?;
    let repl = crate::replication::Replicator::new(url, cluster, store.clone(), position)
        .map_err(|e| anyhow::anyhow!("REPLICATION: {e}"))?;
    repl.set_bootstrap(crate::replication::bootstrap::Config {
        data_dir: settings.data_dir.clone(),
        source: settings.replication_snapshot.clone(),
        // Without REPLICATION_ADVERTISE_URL, the address bound when it names one host.
        advertise: settings
            .replication_advertise_url
            .clone()
            .or_else(|| (!bound.ip().is_unspecified()).then(|| format!("http://{bound}"))),
        keys: Arc::new(JwtKeys::new(&settings.auth)),
        pause_ms: settings.test_bootstrap_pause_ms,
    });
    repl.spawn();
    tracing::info!(stream = %repl.state().stream, position = %repl.state().position, "replication on");
    Ok(crate::replication::Writes::new(store.clone(), Some(repl)))
}

/// With replication: the schedule follows stops and starts applied from the stream, and
/// the delivery actor the targets created and deleted on other instances. The first
/// messages catch what was applied before the hook was set.
fn follow_replicated_switches(
    repl: &crate::replication::Replicator,
    scheduler: &Addr<IngestScheduler>,
    notifications: &crate::notify::delivery::Notifications,
) {
    use crate::actors::scheduler::IngestionSwitched;
    use crate::replication::Command;
    let (sched, notes) = (scheduler.clone(), notifications.clone());
    repl.on_applied(Arc::new(move |command: Option<&Command>| match command {
        Some(Command::IngestionStopped { stopped }) => {
            sched.do_send(IngestionSwitched(Some(*stopped)))
        }
        Some(
            Command::CreateNotifyTarget { .. }
            | Command::SyncEnvNotifyTarget { .. }
            | Command::DeleteNotifyTarget { .. }
            | Command::SetNotifyPaused { .. },
        ) => notes.targets_changed(),
        // A bootstrap replaced the store: the switch and the targets came with it.
        None => {
            sched.do_send(IngestionSwitched(None));
            notes.targets_changed();
        }
        Some(_) => {}
    }));
    scheduler.do_send(IngestionSwitched(None));
    notifications.targets_changed();
}

/// Another process, normally the running server, holds the database of `DATA_DIR`.
#[derive(Debug, thiserror::Error)]
#[error("the database in {} is in use by another process: is the amber server running on this DATA_DIR?", .0.display())]
pub struct DataDirInUse(pub std::path::PathBuf);

/// Caps glibc's malloc arenas at two. glibc gives each thread that meets a locked arena
/// a new one (up to 8 per core), and each keeps its freed pages: with actix workers, sled's
/// threads and blocking reads that is most of the RSS above the caches under mixed load
/// (issue 11 item 9). Called once before the actors and workers start.
pub fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(
                param: std::os::raw::c_int,
                value: std::os::raw::c_int,
            ) -> std::os::raw::c_int;
        }
        /// glibc's `M_ARENA_MAX`.
        const M_ARENA_MAX: std::os::raw::c_int = -8;
        // SAFETY: mallopt takes no pointers; it sets a tuning value of glibc's allocator
        // and is safe to call at any time.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
        }
    }
}

/// Hands the heap pages glibc holds free back to the kernel (`malloc_trim(0)`). Opening
/// sled on a large store and loading the feed index allocate and free far more than they
/// keep (sled's page-table snapshot, log segments read in recovery, the index snapshot
/// file); glibc keeps those freed pages resident, which at 1M posts was most of the idle
/// RSS (issue 14). Called after the store is open, after the integrity check and after a
/// large rate-limit sweep.
pub fn trim_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and only releases free heap memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Says so when `DATA_DIR` holds a feed index snapshot (`db.index-*`) but no database:
/// `db/` was deleted or moved, and the server is about to start empty.
fn warn_if_database_gone(settings: &Settings) {
    if settings.db_path().join("db").exists() {
        return;
    }
    let snapshots: Vec<String> = std::fs::read_dir(&settings.data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("db.index"))
        .collect();
    if !snapshots.is_empty() {
        tracing::error!(
            data_dir = %settings.data_dir.display(),
            left_behind = %snapshots.join(", "),
            "DATA_DIR has no database (db/ is missing or empty) but holds a feed index snapshot of one: the database was deleted or moved. Starting with an EMPTY database; stop now and restore db/ (or import a backup) if that is not what you meant"
        );
    }
}

/// What an operator does about sled files that cannot be opened.
const DAMAGED_DB_ADVICE: &str = "Keep a copy of the directory as it is; restore db/ from a copy taken while the server was stopped, or import the newest backup into a fresh DATA_DIR (amber import)";

/// Opens the store under `DATA_DIR`; [`DataDirInUse`] when another process has it.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating DATA_DIR {}", settings.data_dir.display()))?;
    // A bootstrap from a replication snapshot that a stop interrupted: completed after
    // its commit point, removed before it (storage/replica.rs).
    crate::storage::replica::finish_pending_switch(&settings.data_dir).with_context(|| {
        format!(
            "completing a bootstrap switch in DATA_DIR {}",
            settings.data_dir.display()
        )
    })?;
    crate::storage::replica::remove_replaced(&settings.data_dir);
    warn_if_database_gone(settings);
    let opened = Store::open(&settings.db_path(), settings.sled_cache_mb);
    if let Ok(store) = &opened {
        store.set_disk_reserve_mb(settings.disk_reserve_mb);
    }
    opened.map_err(|err| {
        if err.is_locked() {
            anyhow::Error::new(DataDirInUse(settings.db_path()))
        } else if matches!(err, StoreError::Sled(sled::Error::Corruption { .. })) {
            anyhow::Error::new(err).context(format!(
                "the database files in {} are damaged: sled's log (db) failed its checksum where sled must read it to open (a damaged page-table snapshot, snap.*, is set aside and the log read whole instead; that did not help here), so sled refuses to open them (no other process holds them). {DAMAGED_DB_ADVICE}",
                settings.db_path().display()
            ))
        } else if matches!(err, StoreError::LogDamaged(_)) {
            anyhow::Error::new(err).context(format!(
                "the database files in {} are damaged and sled cannot recover them (no other process holds them). {DAMAGED_DB_ADVICE}",
                settings.db_path().display()
            ))
        } else {
            anyhow::Error::new(err).context(format!(
                "opening the database in {}",
                settings.db_path().display()
            ))
        }
    })
}

/// While the database is closed after a failed write (a full disk), asks the writer to
/// reopen it every second, so reads come back without waiting for the next write.
/// Reads every record once in the background and logs what is damaged (health shows it);
/// renders every post for feed pages on the way.
fn spawn_integrity_check(reader: crate::storage::StoreReader) {
    let spawned = std::thread::Builder::new()
        .name("integrity-check".into())
        .spawn(move || {
            // Renders every post on the way, so feed pages are ready (storage::rendered).
            let render = |p: &crate::domain::post::Post,
                          l: Option<&crate::domain::leader::Leader>| {
                crate::http::feed::render_feed_post(p, l).ok()
            };
            if let Err(err) = reader.check_integrity(Some(&render)) {
                tracing::warn!(error = %err, "integrity check did not finish");
            }
            // Every post was decoded once: give the freed buffers back.
            trim_malloc();
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "integrity check not started");
    }
}

fn spawn_recovery(store: Addr<PostStore>, reader: crate::storage::StoreReader) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if reader.is_closed() && store.send(Recover).await.is_err() {
                return;
            }
        }
    });
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeedLeader {
    name: String,
    #[serde(default)]
    handles: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    tracking_topics: Vec<String>,
    avatar_url: Option<String>,
}

/// Reads the seed list: `SEED_FILE`, or the built-in copy when the default file is absent.
pub fn read_seed(path: &Path) -> anyhow::Result<Vec<LeaderDraft>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err)
            if err.kind() == std::io::ErrorKind::NotFound
                && path == Path::new("data/leaders.json") =>
        {
            BUILTIN_SEED.to_string()
        }
        Err(err) => {
            return Err(err).with_context(|| format!("reading SEED_FILE {}", path.display()))
        }
    };
    let raw: Vec<SeedLeader> = serde_json::from_str(&text)
        .with_context(|| format!("parsing SEED_FILE {}", path.display()))?;
    raw.into_iter()
        .map(|l| {
            LeaderDraft::parse(&l.name, l.handles, l.tracking_topics, l.avatar_url)
                .with_context(|| format!("seed leader {:?}", l.name))
        })
        .collect()
}

/// The connection layer's limits: the open-file limit raised as far as allowed, the
/// caps derived from it (see `http::conn::admission`).
fn conn_settings(settings: &Settings) -> http::conn::EdgeSettings {
    let nofile = http::conn::admission::raise_nofile_limit();
    let limits = http::conn::admission::ConnLimits::for_nofile(
        nofile,
        settings.conn.max_connections,
        settings.conn.max_connections_per_ip,
        settings.rate_limit.trusted_proxies.clone(),
    );
    tracing::info!(open_file_limit = nofile, "open-file limit");
    http::conn::EdgeSettings {
        limits,
        request_timeout: std::time::Duration::from_secs(settings.conn.request_timeout_seconds),
        rate_limits: None,
    }
}

impl Application {
    /// Builds everything and binds the listener; call [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        bound_malloc_arenas();
        let started = Instant::now();
        let settings = Arc::new(settings);
        // Bind first: a taken port fails with one clear line before any actor starts
        // (an actor dropped before it ran, with its runtime, would panic).
        let listener = TcpListener::bind((settings.host, settings.port))
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        if settings.auth.using_default_secret {
            tracing::warn!("ADMIN_JWT_SECRET is not set: using the development default. Anyone can mint admin tokens. Set it before exposing this server.");
        }
        let store = open_store(&settings)?;
        trim_malloc();
        let reader = store.reader();
        let store = PostStore::start(store);
        spawn_recovery(store.clone(), reader.clone());
        spawn_integrity_check(reader.clone());
        let writes = start_replication(&settings, &store, &reader, listener.local_addr()?)?;
        if settings.seed_leaders {
            let drafts = read_seed(&settings.seed_file)?;
            match writes
                .send(SeedLeaders(drafts))
                .await
                .context("store actor")?
            {
                Ok(added) if added > 0 => tracing::info!(added, "seeded leaders"),
                Ok(_) => {}
                // Through the stream: an instance that starts while Redis is away does
                // not seed; the next one to start (or an admin) does.
                Err(StoreError::Replication(err)) => {
                    tracing::warn!(error = %err, "seed leaders not written")
                }
                Err(err) => return Err(err.into()),
            }
        }
        let metrics = Arc::new(Metrics::default());
        let env_target = settings
            .notify
            .default_target
            .as_ref()
            .map(|(url, format)| crate::notify::target::TargetDraft {
                url: url.clone(),
                format: *format,
                leaders: vec![],
                kinds: vec![],
                keywords: vec![],
                approved_only: false,
            });
        if writes.replicator().is_none() {
            store
                .send(crate::actors::store::SyncEnvNotifyTarget(env_target))
                .await
                .context("store actor")??;
        } else if let Some(draft) = env_target {
            // With replication the `NOTIFY_URL` target is the cluster's: set (or changed)
            // through the stream by an instance that has the variables; an instance
            // without them leaves it (delete it with the API).
            match writes
                .send(crate::actors::store::SyncEnvNotifyTarget(Some(draft)))
                .await
                .context("store actor")?
            {
                Ok(_) => {}
                Err(StoreError::Replication(err)) => {
                    tracing::warn!(error = %err, "NOTIFY_URL target not written")
                }
                Err(err) => return Err(err.into()),
            }
        }
        let notifications = crate::notify::delivery::Notifications::start(
            reader.clone(),
            writes.clone(),
            metrics.clone(),
            settings.notify.delivery.clone(),
        );
        let metrics_for_conn = metrics.clone();
        let jwt = Arc::new(JwtKeys::new(&settings.auth));
        // Seam: the rate limiter (issue 3) and the ingestion actors (issue 4) publish their
        // status here and are built next to the store.
        let (redis_health, redis_status) = tokio::sync::watch::channel(RedisHealth::Disabled);
        // Built once: every worker shares these limiters (and their Redis sync).
        let rate_limits = RateLimits::start(
            &settings.rate_limit,
            settings.redis_url.as_deref(),
            redis_health,
        )?;
        let ingestion = IngestScheduler::launch(&settings, writes.clone(), reader.clone(), true)?;
        let (activity, stream_status) = launch_stream(&settings, &ingestion, &writes, &reader)?;
        if let Some(repl) = writes.replicator() {
            follow_replicated_switches(repl, &ingestion.scheduler, &notifications);
        }
        let status = StatusBoard {
            redis: redis_status,
            ingest: ingestion.snapshot.clone(),
            stream: stream_status,
        };
        let scheduler = web::Data::new(ingestion.scheduler.clone());
        let live = reader.live();
        let state = AppState {
            settings: settings.clone(),
            live: Arc::new(http::feed_events::Streams::new(
                live.clone(),
                settings.live.clone(),
            )),
            reader,
            store: store.clone(),
            writes,
            jwt,
            metrics,
            status,
            started,
            page_cache: Default::default(),
            notifications,
            feed_cache: Default::default(),
            activity: activity.clone(),
        };

        let addr = listener.local_addr()?;
        let route_settings = settings.clone();
        let edge = http::conn::EdgeSettings {
            rate_limits: Some(rate_limits.clone()),
            ..conn_settings(&settings)
        };
        let server = http::conn::server(
            listener,
            move || {
                let route_settings = route_settings.clone();
                App::new()
                    .app_data(web::Data::new(state.clone()))
                    .app_data(web::Data::from(rate_limits.clone()))
                    .app_data(scheduler.clone())
                    .wrap(from_fn(http::middleware::around))
                    .configure(move |cfg| http::configure(cfg, &route_settings))
                    .default_service(web::to(http::not_found))
            },
            edge,
            metrics_for_conn,
        )?
        .shutdown_timeout(SHUTDOWN_GRACE_SECONDS)
        // Stop signals are ours (crate::shutdown): graceful on SIGINT too, and never lost.
        .disable_signals()
        .run();
        tracing::info!(address = %addr, data_dir = %settings.data_dir.display(), startup_ms = started.elapsed().as_millis() as u64, "amber is listening");
        Ok(Application {
            port: addr.port(),
            host: addr.ip(),
            server,
            signals: StopSignals::install().context("installing the SIGTERM/SIGINT handlers")?,
            store,
            ingest: ingestion.scheduler,
            live,
            activity,
        })
    }

    /// The port actually bound (useful with `PORT=0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address actually bound.
    pub fn address(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Serves until SIGTERM / Ctrl-C: stops accepting, lets in-flight requests finish,
    /// then flushes the store.
    ///
    /// A second stop signal during the drain cuts the requests still in flight (the
    /// store is flushed all the same).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            mut server,
            mut signals,
            store,
            ingest,
            live,
            activity,
            ..
        } = self;
        let handle = server.handle();
        tokio::select! {
            served = &mut server => served.context("http server")?,
            signal = signals.recv() => {
                tracing::info!(
                    signal,
                    grace_seconds = SHUTDOWN_GRACE_SECONDS,
                    "stopping: new connections are refused; requests in flight may finish"
                );
                // Event streams never finish by themselves: end them, so the drain below
                // waits only for requests that do.
                live.close();
                // The command is sent at once; the server future below carries it out.
                drop(handle.stop(true));
                tokio::select! {
                    served = &mut server => served.context("http server")?,
                    signal = signals.recv() => {
                        tracing::warn!(signal, "second stop signal: cutting the requests still in flight");
                        // Dropping the server closes its listener and stops its workers now.
                        drop(server);
                    }
                }
            }
        }
        if let Some(stream) = activity {
            tracing::info!("shutting down: closing the activity stream");
            if let Err(err) = stream.send(StopStream).await {
                tracing::warn!(error = %err, "activity stream already gone");
            }
        }
        tracing::info!("shutting down: stopping ingestion at a leader boundary");
        if let Err(err) = ingest.send(Shutdown).await {
            tracing::warn!(error = %err, "ingestion scheduler already gone");
        }
        tracing::info!("shutting down: flushing the store");
        store.send(Close).await.context("store actor")??;
        tracing::info!("store flushed; bye");
        Ok(())
    }
}
