//! The command line (clap): `serve` (default), `token`, `export`, `import`,
//! `rate-limit reset`, `ingest`, `demo`, `healthcheck`.

use std::io::{BufWriter, Read, Write};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::actors::scheduler::{IngestScheduler, TriggerRun, WaitIdle};
use crate::actors::store::{Close, PostStore, SeedLeaders};
use crate::backup;
use crate::config::{Secret, Settings};
use crate::http::auth::{JwtKeys, Role};
use crate::rate_limit::key::{ClientKey, KeyKind};
use crate::rate_limit::redis_sync;
use crate::startup::{open_store, read_seed, Application, DataDirInUse};
use crate::x_api::fake::{username as fake_username, FakeScript, FakeX};

/// Amber: follow public figures on X from one self-hosted binary.
#[derive(Debug, Parser)]
#[command(name = "amber", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a signed JWT for the admin API.
    Token {
        /// Token subject (who the token is for).
        #[arg(long)]
        sub: String,
        /// Role of the token.
        #[arg(long, default_value = "admin", value_parser = ["admin", "reviewer"])]
        role: String,
        /// Lifetime in seconds (default ADMIN_JWT_TTL).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
        ttl: Option<u64>,
    },
    /// Write every leader, post and review item to stdout as JSON lines.
    Export,
    /// Read a backup (JSON lines) from stdin into DATA_DIR; the server must be stopped.
    /// The backup must end with its trailer line (a cut-short backup is refused).
    Import {
        /// Accept a backup without a trailer line (written before trailers existed).
        #[arg(long)]
        no_trailer: bool,
        /// Seconds between progress lines on stderr (default 5; 1 on a terminal; 0 after
        /// every batch).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86_400))]
        progress_every: Option<u64>,
    },
    /// Exit 0 when the local server (HOST/PORT) answers /api/health with ok or degraded.
    Healthcheck {
        /// Fail on `degraded` too, not only when the server is down or erroring.
        #[arg(long)]
        strict: bool,
    },
    /// Run one ingestion pass against the configured X API, print its record, exit.
    /// The server must be stopped (it shares DATA_DIR).
    Ingest {
        /// Read X_BACKFILL_COUNT posts per leader instead of only the new ones.
        #[arg(long)]
        backfill: bool,
    },
    /// Run the server against a built-in simulated X API: no token needed. Data goes to
    /// a fresh temporary directory, deleted when the demo stops.
    Demo {
        /// Simulated leaders.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=5000))]
        leaders: u32,
        /// Posts each simulated leader starts with.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=10000))]
        posts: u32,
        /// Seconds between new simulated posts, pushed live over the simulated Activity
        /// stream; every fifth tick one is deleted again (0: none).
        #[arg(long, default_value_t = 10)]
        new_post_every: u64,
    },
    /// Rate-limit buckets.
    RateLimit {
        #[command(subcommand)]
        action: RateLimitAction,
    },
}

/// `amber rate-limit ...`.
#[derive(Debug, Subcommand)]
pub enum RateLimitAction {
    /// Clear one client's bucket: the shared one in Redis (REDIS_URL) and the local one
    /// of the server listening on HOST:PORT, if one answers.
    #[command(group(clap::ArgGroup::new("client").required(true).args(["ip", "user"])))]
    Reset {
        /// The client address (IPv6: any address of its /64).
        #[arg(long)]
        ip: Option<String>,
        /// The token subject.
        #[arg(long)]
        user: Option<String>,
    },
}

/// Runs a parsed command line with loaded settings.
pub fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::Token { sub, role, ttl } => {
            let role = Role::parse(&role).context("role must be admin or reviewer")?;
            if settings.auth.using_default_secret {
                // stderr, so `T=$(amber token ...)` still captures only the token.
                eprintln!("amber: warning: ADMIN_JWT_SECRET is not set, so this token is signed with the development secret: only a server that also runs without ADMIN_JWT_SECRET accepts it. Run amber token with the server's environment (see README, Runbook).");
            }
            let keys = JwtKeys::new(&settings.auth);
            let ttl = ttl.unwrap_or(settings.auth.jwt_ttl_seconds);
            let token = keys
                .issue(&sub, role, ttl)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Export => {
            let store = open_store(&settings).map_err(|err| {
                server_running(err, &settings, |url| {
                    format!(
                        "export from it over HTTP instead: curl -s -H \"Authorization: Bearer $(amber token --sub backup --ttl 300)\" {url}/api/admin/export > backup.jsonl"
                    )
                })
            })?;
            let reader = store.reader();
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let skipped = std::cell::Cell::new(0);
            let mut n = 0u64;
            for record in reader.export(&skipped) {
                backup::write_record(&mut out, &record?)?;
                n += 1;
            }
            let damaged = skipped.get();
            backup::write_trailer(
                &mut out,
                backup::Trailer {
                    records: n,
                    damaged_skipped: damaged,
                },
            )?;
            out.flush()?;
            drop(reader);
            let mut store = store;
            store.close()?;
            eprintln!("exported {n} records");
            if damaged > 0 {
                anyhow::bail!(
                    "{damaged} damaged records could not be read and are not in the backup (the log names them); the {n} records written are intact"
                );
            }
            Ok(())
        }
        Command::Import {
            no_trailer,
            progress_every,
        } => {
            // The import reads each page once or twice: a large page cache only holds
            // memory (at 100 k posts, 163 MB peak with 64 MiB against 93 MB with 16).
            // Its threads (sled's, the spool reader) share two malloc arenas, as the
            // server's do: at 1 M posts, 11 s of system time with one arena a thread
            // against 5 s (BENCHMARKS.md).
            crate::startup::bound_malloc_arenas();
            let settings = Settings {
                sled_cache_mb: settings.sled_cache_mb.min(IMPORT_CACHE_MB),
                ..settings
            };
            let rule = if no_trailer {
                backup::TrailerRule::Optional
            } else {
                backup::TrailerRule::Required
            };
            if let (Some(cluster), Some(url)) = (&settings.replication, &settings.redis_url) {
                return import_replicated(&settings, cluster, url, rule, progress_every);
            }
            let mut store = open_store(&settings).map_err(|err| {
                server_running(err, &settings, |_| {
                    "import needs the database to itself: stop the server (e.g. systemctl stop amber), run amber import, then start it again".to_string()
                })
            })?;
            let imported = import_stdin(&mut store, &settings, rule, progress_every);
            let closed = store.close();
            let report = imported?;
            closed?;
            eprintln!(
                "imported {} leaders, {} posts, {} review items; skipped {} (already present or orphaned)",
                report.leaders, report.posts, report.reviews, report.skipped
            );
            Ok(())
        }
        Command::Ingest { backfill } => ingest_once(settings, backfill),
        Command::Demo {
            leaders,
            posts,
            new_post_every,
        } => demo(settings, leaders, posts, new_post_every),
        Command::RateLimit {
            action: RateLimitAction::Reset { ip, user },
        } => {
            let key = match (ip, user) {
                (Some(ip), _) => ClientKey::parse(KeyKind::Ip, &ip),
                (None, Some(user)) => ClientKey::parse(KeyKind::User, &user),
                (None, None) => anyhow::bail!("give --ip ADDR or --user SUB"),
            }
            .context("the client to reset")?;
            reset_rate_limit(&settings, &key)
        }
        Command::Healthcheck { strict } => crate::healthcheck::run(&settings, strict),
    }
}

/// Largest sled page cache `amber import` opens the database with, in MiB (below it,
/// `SLED_CACHE_MB` still applies): the import appends, so it reads back little beyond
/// the leaves it is filling; at 1 M posts 16 MiB peaked at 74.6 MB and 8 at 62.6 MB,
/// no slower (BENCHMARKS.md).
const IMPORT_CACHE_MB: u64 = 8;

/// Records an import batch holds at most: one change, bounded in memory whatever the
/// size of the backup. Before the vendored sled applied a batch's writes leaf by leaf,
/// it held a copy of a leaf for every write until the batch ended: at 100 k posts,
/// batches of 500 peaked at 46 MB, 2,000 at 101 MB and 8,000 at 151 MB (BENCHMARKS.md).
const IMPORT_BATCH_RECORDS: usize = 500;
/// Bytes of backup lines an import batch holds at most (posts with large `metrics`).
const IMPORT_BATCH_BYTES: usize = 4 << 20;

/// Records a replicated import batch (one stream entry) holds at most: an instance reads
/// up to 100 entries at once, so entries stay small.
const REPL_IMPORT_BATCH_RECORDS: usize = 500;
/// Bytes of backup lines a replicated import batch holds at most.
const REPL_IMPORT_BATCH_BYTES: usize = 256 << 10;
/// How long `amber import` waits for a live instance to apply its last entry.
const REPL_IMPORT_WAIT: Duration = Duration::from_secs(300);

/// `amber import` with `REPLICATION=redis`: the backup is checked as without replication
/// (nothing appended on a bad line), then appended to the replication stream in bounded
/// batches (commands every instance applies in order through `Store::import_batch`, so
/// all get the same ids), then an end marker. Answers once the entries are appended and
/// a live instance has applied the last one (so the import is on disk in a `DATA_DIR`);
/// the other instances follow in stream order. `DATA_DIR` is not opened: the servers keep
/// running.
fn import_replicated(
    settings: &Settings,
    cluster: &str,
    url: &str,
    rule: backup::TrailerRule,
    progress_every: Option<u64>,
) -> anyhow::Result<()> {
    use crate::replication::{Appender, Command};
    use std::io::BufReader;
    let Checked {
        mut second,
        total,
        counted,
        _spool,
        ..
    } = check_stdin(settings, rule, progress_every)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let mut appender = runtime
        .block_on(Appender::connect(url, cluster))
        .map_err(|e| {
            anyhow::anyhow!("the replication stream is unreachable ({e}): nothing was imported")
        })?;
    let import: u64 = rand::random();
    let mut progress = Progress::new("appending", progress_every);
    let mut batch = Vec::with_capacity(REPL_IMPORT_BATCH_RECORDS);
    let mut batch_bytes = 0;
    let (appended, batches) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    let mut send = |batch: &mut Vec<crate::storage::Imported>| -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let command = Command::ImportBatch {
            import,
            records: std::mem::take(batch),
        };
        let n = match &command {
            Command::ImportBatch { records, .. } => records.len() as u64,
            _ => 0,
        };
        runtime
            .block_on(appender.append(&command))
            .map_err(|e| anyhow::anyhow!("appending to the replication stream: {e}"))?;
        appended.set(appended.get() + n);
        batches.set(batches.get() + 1);
        Ok(())
    };
    let reader = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: &mut second,
            read: counted.clone(),
        },
    );
    let scanned = backup::scan(reader, rule, |record, bytes| {
        batch.push(record);
        batch_bytes += bytes;
        if batch.len() >= REPL_IMPORT_BATCH_RECORDS || batch_bytes >= REPL_IMPORT_BATCH_BYTES {
            batch_bytes = 0;
            send(&mut batch)?;
            progress.tick(appended.get(), counted.get(), Some(total));
        }
        Ok::<_, anyhow::Error>(())
    })
    .and_then(|_| send(&mut batch));
    progress.done();
    let (appended, batches) = (appended.get(), batches.get());
    if let Err(err) = scanned {
        return Err(err.context(format!(
            "the import stopped after {appended} records were appended in {batches} batches (every instance applies them in order); once the cause is fixed, run the same import again: it skips what is stored and completes the rest"
        )));
    }
    let last = runtime
        .block_on(appender.append(&Command::ImportFinish { import }))
        .map_err(|e| anyhow::anyhow!("appending the end of the import: {e}"))?;
    eprintln!(
        "appended {appended} records in {batches} batches to {}; waiting for an instance to apply them",
        appender.stream()
    );
    let started = std::time::Instant::now();
    loop {
        let members = runtime
            .block_on(appender.members(&last))
            .map_err(|e| anyhow::anyhow!("reading the instances' positions: {e}"))?;
        let applied = members.iter().filter(|(_, done)| *done).count();
        if applied > 0 {
            eprintln!(
                "imported: applied by {applied} of {} live instances (the others follow in stream order)",
                members.len()
            );
            return Ok(());
        }
        if started.elapsed() > REPL_IMPORT_WAIT {
            anyhow::bail!(
                "the import is in the replication stream but no live instance applied it within {} s ({} reported lately); the instances apply it in stream order when they run",
                REPL_IMPORT_WAIT.as_secs(),
                members.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A reader that copies what it reads into a file (stdin that is a pipe, kept for the
/// second pass).
struct Tee<R> {
    inner: R,
    copy: BufWriter<std::fs::File>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// The copy of a piped backup in `DATA_DIR`, removed when the import ends.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Progress of a long import on stderr: on a terminal one line rewritten every second,
/// otherwise a line every five seconds (or every `--progress-every` seconds). Nothing for
/// an import that ends sooner.
struct Progress {
    what: &'static str,
    started: std::time::Instant,
    last: std::time::Instant,
    every: Duration,
    terminal: bool,
    shown: bool,
}

impl Progress {
    fn new(what: &'static str, every_secs: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        let now = std::time::Instant::now();
        let terminal = std::io::stderr().is_terminal();
        Progress {
            what,
            started: now,
            last: now,
            every: Duration::from_secs(every_secs.unwrap_or(if terminal { 1 } else { 5 })),
            terminal,
            shown: false,
        }
    }

    /// Shows `records` done and `bytes` of `total` read, when it is time to.
    fn tick(&mut self, records: u64, bytes: u64, total: Option<u64>) {
        if self.last.elapsed() < self.every {
            return;
        }
        self.last = std::time::Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        let rate = records as f64 / secs.max(0.001);
        let mb = bytes as f64 / 1e6;
        let line = match total.filter(|t| *t > 0) {
            Some(total) => {
                let left = secs * (total.saturating_sub(bytes) as f64) / (bytes.max(1) as f64);
                format!(
                    "{}: {:.0}% ({mb:.0} of {:.0} MB), {records} records, {rate:.0} records/s, about {left:.0} s left",
                    self.what,
                    100.0 * bytes as f64 / total as f64,
                    total as f64 / 1e6
                )
            }
            None => format!(
                "{}: {mb:.0} MB, {records} records, {rate:.0} records/s",
                self.what
            ),
        };
        if self.terminal {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
        self.shown = true;
    }

    /// Ends a progress line left open on a terminal.
    fn done(&self) {
        if self.terminal && self.shown {
            eprintln!();
        }
    }
}

/// The backup on stdin, checked (first pass, nothing written) and ready to be read again.
struct Checked {
    second: Box<dyn Read>,
    total: u64,
    /// Bytes read so far through `second`.
    counted: std::rc::Rc<std::cell::Cell<u64>>,
    _spool: Option<Spool>,
}

/// The first pass of `amber import` with `REPLICATION=redis`: checks every line and the
/// trailer (a bad line names its number) and writes nothing; a pipe is copied to
/// `DATA_DIR` for the second pass.
fn check_stdin(
    settings: &Settings,
    rule: backup::TrailerRule,
    progress_every: Option<u64>,
) -> anyhow::Result<Checked> {
    use std::io::{BufReader, Seek, SeekFrom};
    use std::os::fd::AsFd;

    let stdin = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading stdin")?,
    );
    let mut stdin = stdin;
    let start = match stdin.metadata() {
        Ok(m) if m.is_file() => stdin.stream_position().ok().map(|at| (at, m.len())),
        _ => None,
    };
    let counted = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let mut check = Progress::new("checking the backup", progress_every);
    let checked_records = std::cell::Cell::new(0u64);
    let tick = |progress: &mut Progress, total: Option<u64>| {
        checked_records.set(checked_records.get() + 1);
        if checked_records.get().is_multiple_of(1024) {
            progress.tick(checked_records.get(), counted.get(), total);
        }
    };
    let (second, total, _spool): (Box<dyn Read>, u64, Option<Spool>) = match start {
        Some((at, len)) => {
            let total = len.saturating_sub(at);
            let reader = BufReader::with_capacity(
                1 << 16,
                Counting {
                    inner: &stdin,
                    read: counted.clone(),
                },
            );
            let scanned = backup::scan(reader, rule, |_, _| {
                tick(&mut check, Some(total));
                Ok::<_, anyhow::Error>(())
            });
            check.done();
            warn_damaged(scanned?);
            stdin.seek(SeekFrom::Start(at)).context("rereading stdin")?;
            (Box::new(stdin), total, None)
        }
        None => {
            let path = settings.data_dir.join("import-spool.jsonl");
            let spool = Spool(path.clone());
            let copy = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut tee = Tee {
                inner: Counting {
                    inner: &stdin,
                    read: counted.clone(),
                },
                copy: BufWriter::with_capacity(1 << 16, copy),
            };
            let scanned =
                backup::scan(BufReader::with_capacity(1 << 16, &mut tee), rule, |_, _| {
                    tick(&mut check, None);
                    Ok::<_, anyhow::Error>(())
                });
            check.done();
            let scanned = scanned.with_context(|| {
                format!(
                    "reading the backup from stdin, and copying it to {} for the second pass",
                    path.display()
                )
            })?;
            warn_damaged(scanned);
            tee.copy
                .flush()
                .with_context(|| format!("writing {}", path.display()))?;
            let file = std::fs::File::open(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            (Box::new(file), counted.get(), Some(spool))
        }
    };
    counted.set(0);
    Ok(Checked {
        second,
        total,
        counted,
        _spool,
    })
}

/// The file of the first pass's records in `DATA_DIR`, for the second pass: each record
/// a little-endian `u32` length, then the record in bincode (the `Imported` the line
/// parsed to). Removed when the import ends, and replaced by the next import's.
const PARSED_SPOOL: &str = "import-spool.bin";

/// The backup on stdin, checked and parsed by the first pass into [`PARSED_SPOOL`].
struct Parsed {
    spool: Spool,
    /// Bytes of the spool.
    bytes: u64,
    /// Records in it.
    records: u64,
}

/// The first pass of a local `amber import`: checks every line and the trailer (a bad
/// line names its number) and writes nothing to the database; each record, as parsed,
/// goes to [`PARSED_SPOOL`], so the second pass decodes it instead of parsing its JSON
/// again (a second parse was half the import's CPU).
fn parse_stdin(
    settings: &Settings,
    rule: backup::TrailerRule,
    progress_every: Option<u64>,
) -> anyhow::Result<Parsed> {
    use std::io::{BufReader, Seek};
    use std::os::fd::AsFd;

    let mut stdin = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading stdin")?,
    );
    let total = match stdin.metadata() {
        Ok(m) if m.is_file() => stdin
            .stream_position()
            .ok()
            .map(|at| m.len().saturating_sub(at)),
        _ => None,
    };
    let path = settings.data_dir.join(PARSED_SPOOL);
    let spool = Spool(path.clone());
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, file);
    let counted = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let reader = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: &stdin,
            read: counted.clone(),
        },
    );
    let mut progress = Progress::new("checking the backup", progress_every);
    let (mut frame, mut records, mut bytes) = (Vec::new(), 0u64, 0u64);
    let scanned = backup::scan(reader, rule, |record, _| {
        frame.clear();
        bincode::encode_into_std_write(&record, &mut frame, bincode::config::standard())
            .context("encoding a record for the second pass")?;
        let len = u32::try_from(frame.len()).context("a record too large to spool")?;
        out.write_all(&len.to_le_bytes())
            .and_then(|()| out.write_all(&frame))
            .with_context(|| format!("writing {} for the second pass", path.display()))?;
        bytes += 4 + u64::from(len);
        records += 1;
        if records.is_multiple_of(1024) {
            progress.tick(records, counted.get(), total);
        }
        Ok::<_, anyhow::Error>(())
    });
    progress.done();
    warn_damaged(scanned?);
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Parsed {
        spool,
        bytes,
        records,
    })
}

/// A batch of the second pass, and the spool's bytes read once it was read.
type SpoolBatch = anyhow::Result<(Vec<crate::storage::Imported>, u64)>;

/// Reads [`PARSED_SPOOL`] into batches of at most [`IMPORT_BATCH_RECORDS`] records (or
/// [`IMPORT_BATCH_BYTES`]) and sends them in order; stops at the end, at an error (sent),
/// or when nobody receives any more.
fn read_spool(file: std::fs::File, batches: std::sync::mpsc::SyncSender<SpoolBatch>) {
    use std::io::BufReader;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let mut read = 0u64;
    let mut frame = Vec::new();
    let mut next = || -> anyhow::Result<Option<(Vec<crate::storage::Imported>, u64)>> {
        let mut batch = Vec::with_capacity(IMPORT_BATCH_RECORDS);
        let mut batch_bytes = 0;
        while batch.len() < IMPORT_BATCH_RECORDS && batch_bytes < IMPORT_BATCH_BYTES {
            let mut len = [0u8; 4];
            match input.read(&mut len[..1])? {
                0 => break,
                _ => input.read_exact(&mut len[1..])?,
            }
            let len = u32::from_le_bytes(len) as usize;
            frame.resize(len, 0);
            input.read_exact(&mut frame)?;
            let (record, _) = bincode::decode_from_slice(&frame, bincode::config::standard())
                .context("the spooled record does not decode")?;
            batch.push(record);
            batch_bytes += len;
            read += 4 + len as u64;
        }
        Ok((!batch.is_empty()).then_some((batch, read)))
    };
    loop {
        let sent = match next() {
            Ok(None) => return,
            Ok(Some(batch)) => batches.send(Ok(batch)),
            Err(err) => {
                let _ = batches.send(Err(err));
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// `amber import`: reads the backup on stdin once, checking every line and the trailer
/// and writing nothing to the database (a bad line names its number), each record as
/// parsed to [`PARSED_SPOOL`]; then imports the spool in batches of
/// [`IMPORT_BATCH_RECORDS`] records (each one change, durable before the next is
/// imported), the next batch decoded on a second thread while the current one is
/// written. At most three batches are in memory (one decoding, one queued, one being
/// written), so memory stays bounded whatever the size of the backup. A run that stops
/// part-way leaves whole batches; the same import run again skips what is stored and
/// completes it.
fn import_stdin(
    store: &mut crate::storage::Store,
    settings: &Settings,
    rule: backup::TrailerRule,
    progress_every: Option<u64>,
) -> anyhow::Result<crate::storage::ImportReport> {
    let parsed = parse_stdin(settings, rule, progress_every)?;
    let file = std::fs::File::open(&parsed.spool.0)
        .with_context(|| format!("reading {}", parsed.spool.0.display()))?;

    // `amber import` has the database to itself: the posts stay out of the in-memory
    // feed index, which the next start rebuilds (memory does not grow with the backup).
    let mut run = store.import_begin_offline(parsed.records)?;
    let mut progress = Progress::new("importing", progress_every);
    let (sender, batches) = std::sync::mpsc::sync_channel(1);
    let imported = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("import-read".into())
            .spawn_scoped(scope, move || read_spool(file, sender))
            .context("starting the import's reader")?;
        let mut done = 0u64;
        for batch in batches {
            let (batch, read) = batch?;
            done += batch.len() as u64;
            store.import_batch(&mut run, batch)?;
            progress.tick(done, read, Some(parsed.bytes));
        }
        Ok::<_, anyhow::Error>(())
    });
    progress.done();
    if let Err(err) = imported {
        let so_far = run.report();
        return Err(err.context(format!(
            "the import stopped after {} leaders, {} posts and {} review items were stored (whole batches, on disk); once the cause is fixed, run the same import again: it skips what is stored and completes the rest",
            so_far.leaders, so_far.posts, so_far.reviews
        )));
    }
    Ok(store.import_finish(run)?)
}

/// Warns when the backup's trailer says the export skipped damaged records.
fn warn_damaged(scanned: backup::Scanned) {
    if let Some(t) = scanned.trailer.filter(|t| t.damaged_skipped > 0) {
        eprintln!(
            "warning: this backup was exported from a damaged database: {} damaged records were skipped and are not in it",
            t.damaged_skipped
        );
    }
}

/// Turns "the database is in use" into one plain line: the server is running on this
/// `DATA_DIR`, and `what_instead` (given the server's URL) says what to do. Any other
/// error passes through.
fn server_running(
    err: anyhow::Error,
    settings: &Settings,
    what_instead: impl FnOnce(&str) -> String,
) -> anyhow::Error {
    if err.downcast_ref::<DataDirInUse>().is_none() {
        return err;
    }
    let url = format!("http://{}:{}", local_host(settings), settings.port);
    anyhow::anyhow!(
        "the amber server is running on DATA_DIR {} (it holds the database); {}",
        settings.data_dir.display(),
        what_instead(&url)
    )
}

/// `HOST` as this machine reaches it in a URL: loopback for `0.0.0.0` / `::`, IPv6 in
/// brackets.
fn local_host(settings: &Settings) -> String {
    match settings.host {
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    }
}

/// How long `amber rate-limit reset` waits for Redis or the local server.
const RESET_TIMEOUT: Duration = Duration::from_secs(3);

/// `amber rate-limit reset`: deletes the shared bucket in Redis, then asks the server on
/// HOST:PORT (with a short-lived admin token of its own) to drop its local bucket. A
/// stopped server holds no buckets, so without Redis and without a running server there
/// is nothing to clear.
fn reset_rate_limit(settings: &Settings, key: &ClientKey) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    runtime.block_on(async {
        let mut failed = false;
        match &settings.redis_url {
            Some(url) => {
                let deleted =
                    tokio::time::timeout(RESET_TIMEOUT, redis_sync::reset_in_redis(url, key)).await;
                match deleted {
                    Ok(Ok(true)) => println!("redis: deleted {}", key.redis_key()),
                    Ok(Ok(false)) => {
                        println!("redis: no bucket under {} (already full)", key.redis_key())
                    }
                    Ok(Err(err)) => {
                        failed = true;
                        println!("redis: could not delete {}: {err}", key.redis_key());
                    }
                    Err(_) => {
                        failed = true;
                        println!("redis: no answer within {RESET_TIMEOUT:?}");
                    }
                }
            }
            None => {
                println!("redis: REDIS_URL is not set; buckets live only in each server's memory")
            }
        }
        let host = local_host(settings);
        let (kind, value) = match key {
            ClientKey::Ip(ip) => ("ip", ip.to_string()),
            ClientKey::User(user) => ("user", user.to_string()),
        };
        let url = reqwest::Url::parse(&format!("http://{host}:{}/", settings.port))
            .and_then(|base| base.join("api/admin/rate-limits/"))
            .map(|mut url| {
                if let Ok(mut segments) = url.path_segments_mut() {
                    segments.pop_if_empty().push(kind).push(&value);
                }
                url
            })
            .context("the server address")?;
        let token = JwtKeys::new(&settings.auth)
            .issue("amber-cli", Role::Admin, 60)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let answer = reqwest::Client::builder()
            .timeout(RESET_TIMEOUT)
            .build()
            .context("http client")?
            .delete(url)
            .bearer_auth(token)
            .send()
            .await;
        match answer {
            Ok(res) if res.status().is_success() => {
                println!(
                    "server {host}:{}: local bucket of {key} cleared",
                    settings.port
                )
            }
            Ok(res) => {
                failed = true;
                println!(
                    "server {host}:{}: refused the reset ({})",
                    settings.port,
                    res.status()
                );
            }
            Err(_) => println!(
                "server {host}:{}: not running there, so it holds no bucket to clear",
                settings.port
            ),
        }
        if failed {
            anyhow::bail!("the reset of {key} did not complete");
        }
        Ok(())
    })
}

/// `amber ingest`: the actors without the HTTP server, one run, then a flush.
fn ingest_once(settings: Settings, backfill: bool) -> anyhow::Result<()> {
    if settings.x.bearer_token.is_none() {
        anyhow::bail!("TWITTER_BEARER_TOKEN is not set: there is nothing to ingest from");
    }
    actix_web::rt::System::new().block_on(async move {
        let store = open_store(&settings).map_err(|err| {
            server_running(err, &settings, |url| {
                format!("ask it for a run instead: curl -X POST -H \"Authorization: Bearer $(amber token --sub ops)\" {url}/api/ingestion/trigger")
            })
        })?;
        let reader = store.reader();
        let store = PostStore::start(store);
        if settings.seed_leaders {
            let drafts = read_seed(&settings.seed_file)?;
            store
                .send(SeedLeaders(drafts))
                .await
                .context("store actor")??;
        }
        if settings.replication.is_some() {
            anyhow::bail!("amber ingest writes this instance's database only; with REPLICATION=redis ask a running server for a run (POST /api/ingestion/trigger)");
        }
        let ingestion = IngestScheduler::launch(&settings, store.clone(), reader, false)?;
        ingestion
            .scheduler
            .send(TriggerRun {
                backfill,
                source: "cli",
            })
            .await
            .context("ingestion scheduler")??;
        let record = ingestion
            .scheduler
            .send(WaitIdle)
            .await
            .context("ingestion scheduler")?;
        store.send(Close).await.context("store actor")??;
        let record = record.context("the run left no record")?;
        println!("{}", serde_json::to_string(&crate::http::dto::RunJson::of(&record))?);
        eprintln!(
            "ingested {} new posts from {} leaders ({} errors) in {} ms",
            record.posts_ingested,
            record.leaders,
            record.errors.len(),
            record.duration_ms.unwrap_or(0)
        );
        match record.stopped_reason {
            Some(reason) => anyhow::bail!("the run stopped early: {reason}"),
            None => Ok(()),
        }
    })
}

/// The demo's data directory: fresh for every run, removed when the demo ends (also
/// when it fails to start), so runs leave nothing behind in the temp directory.
struct DemoDir(std::path::PathBuf);

impl DemoDir {
    fn create() -> anyhow::Result<DemoDir> {
        let dir = std::env::temp_dir().join(format!("amber-demo-{}", std::process::id()));
        // A directory of an earlier process with the same id (killed with -9) is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(DemoDir(dir))
    }
}

impl Drop for DemoDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("amber demo: could not remove {}: {err}", self.0.display());
        }
    }
}

/// `amber demo`: the fake X API on loopback, generated leaders, a one-minute schedule,
/// new posts appearing every few seconds (live, over the simulated Activity stream, which
/// the demo turns on), and the real server pointed at all of it.
fn demo(settings: Settings, leaders: u32, posts: u32, new_post_every: u64) -> anyhow::Result<()> {
    let fake = std::sync::Arc::new(
        FakeX::start(FakeScript {
            users: leaders,
            posts_per_user: posts,
            token: "amber-demo-token".to_string(),
            latency: std::time::Duration::from_millis(20),
            workers: 1,
        })
        .context("starting the simulated X API")?,
    );
    let demo_dir = DemoDir::create()?;
    let dir = demo_dir.0.clone();
    let seed: Vec<serde_json::Value> = (0..leaders)
        .map(|u| {
            serde_json::json!({
                "name": format!("Leader {u}"),
                "handles": {"x": fake_username(u)},
                "trackingTopics": ["demo"],
            })
        })
        .collect();
    let seed_file = dir.join("leaders.json");
    std::fs::write(&seed_file, serde_json::to_vec_pretty(&seed)?)?;
    let mut settings = settings;
    settings.data_dir = dir.clone();
    settings.seed_file = seed_file;
    settings.seed_leaders = true;
    settings.x.ingest_enabled = true;
    settings.x.bearer_token = Some(Secret::new(fake.token()));
    settings.x.api_base_url = fake.base_url().to_string();
    settings.x.interval_minutes = 1;
    settings.x.cron = None;
    settings.x.circuit_fail_max = 3;
    settings.x.circuit_reset_seconds = 30;
    settings.x.activity_stream = true;
    if new_post_every > 0 {
        let fake = fake.clone();
        std::thread::spawn(move || demo_script(&fake, leaders, new_post_every));
    }
    let control = fake.control_url().to_string();
    let result = actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        println!("amber listening on {}", app.address());
        println!("amber demo: simulated X API at {control}/2 ({leaders} leaders), data in {} (deleted when the demo stops)", dir.display());
        println!("  watch:   curl {}/api/ingestion/status   and   curl '{}/api/feed?source=x'", app.address(), app.address());
        println!("  live:    curl -N {}/api/feed/events   (new posts arrive over X's Activity stream every {new_post_every} s; the page shows \"N new posts\")", app.address());
        println!("  break X: curl -X POST {control}/_fake/faults -H 'Content-Type: application/json' -d '{{\"kind\":\"server_error\",\"count\":0}}'");
        println!("  heal X:  curl -X DELETE {control}/_fake/faults      (stats: curl {control}/_fake/stats)");
        let result = app.run_until_stopped().await;
        drop(fake);
        result
    });
    drop(demo_dir);
    result
}

/// The demo's X: every `every` seconds one leader publishes one to three posts, sent at
/// once as `post.create` on the Activity stream (polling finds those no subscription
/// matched yet); every fifth tick the oldest post the stream carried is deleted on X
/// (`post.delete`), so the page shows posts arriving and leaving without a reload.
fn demo_script(fake: &FakeX, leaders: u32, every: u64) {
    let mut made = std::collections::VecDeque::new();
    for tick in 0u64.. {
        std::thread::sleep(std::time::Duration::from_secs(every));
        let user = (tick % u64::from(leaders)) as u32;
        for id in fake.add_posts(&fake_username(user), 1 + (tick % 3) as u32) {
            // Only posts the stream carried are deleted again (before Amber subscribed,
            // nobody hears of them until the next poll).
            if fake.emit_post_create(&id).is_some_and(|e| e.delivered > 0) {
                made.push_back(id);
            }
        }
        if tick % 5 == 4 {
            if let Some(id) = made.pop_front() {
                fake.emit_post_delete(&id);
            }
        }
    }
}

fn serve(settings: Settings) -> anyhow::Result<()> {
    let format = settings.log_format;
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        // One machine-readable line on stdout, so scripts and tests using PORT=0 can find us:
        // `amber listening on ADDRESS`, or with LOG_FORMAT=json an object whose `address` it is.
        let address = app.address().to_string();
        println!(
            "{}",
            crate::telemetry::line(
                format,
                "INFO",
                "listening",
                &format!("amber listening on {address}"),
                &[("address", &address)],
            )
        );
        app.run_until_stopped().await
    })
}
