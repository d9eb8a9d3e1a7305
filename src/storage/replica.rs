//! Replication snapshots (issue 15): a consistent copy of the replicated key spaces with
//! the stream position it includes, and the switch of a bootstrapping instance to one.
//!
//! **Taking one without holding the writer.** sled's iterators are not point-in-time: a
//! scan that runs beside commits sees some of them. So a snapshot is a scan plus a
//! fix-up. [`StoreReader::begin_capture`] makes every later commit note the keys it wrote
//! ([`Capture`]); the scan then runs on a blocking thread while writes go on; at its end
//! the writer ([`Store::finish_capture`], a `PostStore` message, so no commit runs
//! beside it) reads the current value (or absence) of every key noted, plus every counter
//! and meta key, and the stream position. A key no commit touched during the scan was seen
//! by it as it still is; a key one touched is overwritten by the fix-up. Loading the scan
//! then the fix-up in order gives the tree exactly as it was at the fix-up, which is the
//! position the trailer names.
//!
//! **Format** (`application/octet-stream`): `AMBERSNAP` + version byte, a length-prefixed
//! JSON header (`cluster`, `createdMs`); frames `+` key value / `-` key (u32 BE lengths);
//! `.` + a length-prefixed JSON trailer (`cluster`, `position`, `n`, `records`); and the
//! CRC-32 of every byte before it (u32 BE). A copy cut anywhere fails the CRC or ends
//! without a trailer.
//!
//! **What is in it.** Every key space but this instance's own: the index journal (`J`),
//! the X user cache (`U`), and the meta values `index_snapshot` and `app:*` (usage,
//! run state) except the ingestion stop switch. A bootstrapping instance keeps its own of
//! those. Notification targets and their outbox (`W`, `Q`, `seq:notify`) and the stop
//! switch are replicated (every instance applies the same commands to them), so they come
//! with the snapshot.
//!
//! **Switching atomically.** The snapshot is loaded into a new sled directory,
//! `DATA_DIR/db.bootstrap`; the instance's own keys are copied in and it is flushed; then
//! the marker `DATA_DIR/db.bootstrap.ready` is written and fsynced: that is the commit
//! point. After it `db` becomes `db.replaced`, `db.bootstrap` becomes `db`, the marker and
//! the old feed index snapshots go. [`finish_pending_switch`] runs before every open: with
//! the marker it completes the renames (whatever step a crash stopped at), without it a
//! `db.bootstrap` is an unfinished load and is deleted. Either the old data or the new,
//! never a mix.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sled::IVec;

use crate::storage::disk::Writer;
use crate::storage::{keys, Store, StoreError, StoreReader};

/// First bytes of every snapshot: the name and the format version.
pub const MAGIC: &[u8] = b"AMBERSNAP\x01";
/// Keys a capture may note before the snapshot is given up (writes during a very slow
/// download); the client gets a body without a trailer and tries again.
const CAPTURE_MAX_KEYS: usize = 2_000_000;
/// Largest key or value a snapshot frame may carry (a corrupt length is refused early).
const MAX_FRAME: u32 = 256 << 20;
/// Keys loaded per sled batch.
const LOAD_BATCH: usize = 10_000;

/// The new database while it is loaded, next to `db`.
pub const NEW_DIR: &str = "db.bootstrap";
/// The commit point of a switch.
pub const READY_MARKER: &str = "db.bootstrap.ready";
/// The database a switch replaced (deleted once the switch is done).
pub const OLD_DIR: &str = "db.replaced";

/// The snapshot's first record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub cluster: String,
    pub created_ms: i64,
}

/// The snapshot's last record: what it includes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Trailer {
    pub cluster: String,
    /// Stream id of the last entry the data includes (`0-0`: none).
    pub position: String,
    /// That entry's number.
    pub n: u64,
    /// Frames before the trailer.
    pub records: u64,
}

/// The one `app:` meta value every instance holds alike: the ingestion stop switch
/// (`Command::IngestionStopped`).
const REPLICATED_SWITCH: &str = "app:ingestion_stopped";

/// True for keys that belong to this instance alone (never in a snapshot; kept by a
/// bootstrapping instance).
pub fn is_local(key: &[u8]) -> bool {
    match key.split_first() {
        Some((&keys::JOURNAL | &keys::X_USER, _)) => true,
        Some((&keys::META, name)) => {
            name == b"index_snapshot"
                || (name.starts_with(b"app:") && name != REPLICATED_SWITCH.as_bytes())
        }
        _ => false,
    }
}

/// Keys written while a snapshot's scan runs.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    inner: Mutex<Option<Noted>>,
}

#[derive(Debug, Default)]
struct Noted {
    keys: HashSet<IVec>,
    overflow: bool,
}

impl Capture {
    /// Called by [`Store::apply`] after every commit.
    pub(crate) fn note(&self, written: &[(IVec, Option<IVec>)]) {
        let mut guard = self.inner.lock();
        let Some(noted) = guard.as_mut() else { return };
        for (key, _) in written {
            if noted.keys.len() >= CAPTURE_MAX_KEYS {
                noted.overflow = true;
                noted.keys.clear();
                return;
            }
            if !noted.overflow && !is_local(key) {
                noted.keys.insert(key.clone());
            }
        }
    }
}

impl StoreReader {
    /// Starts noting the keys commits write, for a snapshot; refused while another
    /// snapshot is being taken.
    pub fn begin_capture(&self) -> Result<(), StoreError> {
        let mut guard = self.shared.capture.inner.lock();
        if guard.is_some() {
            return Err(StoreError::Conflict(
                "a snapshot is being taken already".into(),
            ));
        }
        *guard = Some(Noted::default());
        Ok(())
    }

    /// Stops noting (a snapshot given up).
    pub fn abort_capture(&self) {
        *self.shared.capture.inner.lock() = None;
    }

    /// The scan half of a snapshot: every replicated key and its value, as the tree shows
    /// them while it runs (see the module notes).
    pub fn snapshot_scan(
        &self,
    ) -> Result<impl Iterator<Item = Result<(IVec, IVec), StoreError>>, StoreError> {
        let tree = self.tree()?;
        Ok(tree.iter().filter_map(|kv| match kv {
            Ok((k, _)) if is_local(&k) => None,
            Ok(kv) => Some(Ok(kv)),
            Err(err) => Some(Err(err.into())),
        }))
    }
}

/// What the writer hands over at the end of a snapshot's scan.
pub struct FixUp {
    /// Every key a commit wrote during the scan, and every counter and meta key: its
    /// value now (`None`: absent now).
    pub writes: Vec<(IVec, Option<IVec>)>,
    /// The stream position the data includes (`<id>`, `n`).
    pub position: (String, u64),
}

impl Store {
    /// The fix-up of a snapshot (on the writer, so no commit runs beside it); ends the
    /// capture. Refused when the capture overflowed.
    pub fn finish_capture(&mut self) -> Result<FixUp, StoreError> {
        let noted = self.shared.capture.inner.lock().take();
        let Some(noted) = noted else {
            return Err(StoreError::Conflict("no snapshot is being taken".into()));
        };
        if noted.overflow {
            return Err(StoreError::Conflict(
                "too many writes while the snapshot was read; try again".into(),
            ));
        }
        let mut keys_now: Vec<IVec> = noted.keys.into_iter().collect();
        for space in [keys::COUNTER, keys::META] {
            for kv in self.tree.scan_prefix([space]) {
                let (k, _) = kv?;
                if !is_local(&k) {
                    keys_now.push(k);
                }
            }
        }
        keys_now.sort();
        keys_now.dedup();
        let mut writes = Vec::with_capacity(keys_now.len());
        for k in keys_now {
            let v = self.tree.get(&k)?;
            writes.push((k, v));
        }
        let position = self
            .tree
            .get(keys::named_key(
                keys::META,
                crate::storage::change::REPL_POSITION,
            ))?
            .and_then(|v| crate::replication::parse_stamp(&v))
            .unwrap_or_else(|| ("0-0".to_string(), 0));
        Ok(FixUp { writes, position })
    }
}

/// Writes a snapshot into a buffer that the caller empties as it goes (a streamed body).
pub struct Encoder {
    buf: Vec<u8>,
    crc: crc32fast::Hasher,
    records: u64,
}

impl Encoder {
    /// A snapshot of `cluster`'s data starts.
    pub fn new(cluster: &str) -> Encoder {
        let mut e = Encoder {
            buf: Vec::with_capacity(128 * 1024),
            crc: crc32fast::Hasher::new(),
            records: 0,
        };
        let header = Header {
            cluster: cluster.to_string(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        e.raw(MAGIC);
        e.json(&header);
        e
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.crc.update(bytes);
        self.buf.extend_from_slice(bytes);
    }

    fn len_prefixed(&mut self, bytes: &[u8]) {
        self.raw(&(bytes.len() as u32).to_be_bytes());
        self.raw(bytes);
    }

    fn json<T: Serialize>(&mut self, value: &T) {
        // Plain structs of strings and numbers always serialize.
        let text = serde_json::to_vec(value).unwrap_or_default();
        self.len_prefixed(&text);
    }

    /// One key and its value.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.raw(b"+");
        self.len_prefixed(key);
        self.len_prefixed(value);
        self.records += 1;
    }

    /// A key that is absent.
    pub fn remove(&mut self, key: &[u8]) {
        self.raw(b"-");
        self.len_prefixed(key);
        self.records += 1;
    }

    /// Bytes written so far.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes what is buffered (to send it).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Ends the snapshot with its trailer and checksum; returns the last bytes.
    pub fn finish(mut self, cluster: &str, position: (String, u64)) -> Vec<u8> {
        let trailer = Trailer {
            cluster: cluster.to_string(),
            position: position.0,
            n: position.1,
            records: self.records,
        };
        self.raw(b".");
        self.json(&trailer);
        let crc = self.crc.clone().finalize();
        self.buf.extend_from_slice(&crc.to_be_bytes());
        self.buf
    }
}

/// One frame read back.
enum Frame {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    End(Trailer),
}

/// Reads a snapshot, checking as it goes.
struct Decoder<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    records: u64,
}

fn refused(why: impl std::fmt::Display) -> String {
    format!("the snapshot is refused: {why}")
}

impl<R: Read> Decoder<R> {
    fn exact(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; n];
        self.input
            .read_exact(&mut out)
            .map_err(|e| refused(format!("it ends early, cut short ({e})")))?;
        self.crc.update(&out);
        Ok(out)
    }

    fn len_prefixed(&mut self) -> Result<Vec<u8>, String> {
        let len = self.exact(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        if len > MAX_FRAME {
            return Err(refused(format!(
                "a frame of {len} bytes: not a snapshot, or damaged"
            )));
        }
        self.exact(len as usize)
    }

    fn open(input: R) -> Result<(Decoder<R>, Header), String> {
        let mut d = Decoder {
            input,
            crc: crc32fast::Hasher::new(),
            records: 0,
        };
        let magic = d.exact(MAGIC.len())?;
        if magic != MAGIC {
            return Err(refused(
                "it does not start as an Amber snapshot of this version",
            ));
        }
        let header: Header = serde_json::from_slice(&d.len_prefixed()?)
            .map_err(|e| refused(format!("its header does not read ({e})")))?;
        Ok((d, header))
    }

    fn next(&mut self) -> Result<Frame, String> {
        let tag = self.exact(1)?;
        match tag[0] {
            b'+' => {
                let k = self.len_prefixed()?;
                let v = self.len_prefixed()?;
                self.records += 1;
                Ok(Frame::Put(k, v))
            }
            b'-' => {
                let k = self.len_prefixed()?;
                self.records += 1;
                Ok(Frame::Remove(k))
            }
            b'.' => {
                let trailer: Trailer = serde_json::from_slice(&self.len_prefixed()?)
                    .map_err(|e| refused(format!("its trailer does not read ({e})")))?;
                let want = self.crc.clone().finalize();
                let mut crc = [0u8; 4];
                self.input
                    .read_exact(&mut crc)
                    .map_err(|_| refused("it ends before its checksum"))?;
                if u32::from_be_bytes(crc) != want {
                    return Err(refused("its checksum does not match: damaged or cut"));
                }
                if trailer.records != self.records {
                    return Err(refused(format!(
                        "it holds {} records but its trailer says {}",
                        self.records, trailer.records
                    )));
                }
                Ok(Frame::End(trailer))
            }
            other => Err(refused(format!("an unknown frame {other:#04x}: damaged"))),
        }
    }
}

/// How a load is going (shown in health), and how a test slows it.
#[derive(Debug, Default)]
pub struct LoadProgress {
    pub records: AtomicU64,
    /// Tests only (`AMBER_TEST_BOOTSTRAP_PAUSE_MS`): a pause after every 10 records, so a
    /// test can kill the process mid-load.
    pub pause_ms: u64,
}

fn open_sled_waiting(dir: &Path) -> Result<sled::Db, String> {
    let mut waiting = LockWait::new();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            .flush_every_ms(None)
            .open();
        match opened {
            Err(err) if crate::storage::sled_is_locked(&err) && waiting.again() => {}
            other => return other.map_err(|e| format!("opening {}: {e}", dir.display())),
        }
    }
}

/// Waiting for sled to let go of a database this process closed: sled releases its file
/// lock only when its last background job drops its handle, a moment after the handle
/// itself is dropped. This process holds nothing else of the directory, so it waits up
/// to [`LOCK_WAIT`].
struct LockWait {
    deadline: std::time::Instant,
    step: Duration,
}

/// How long a switch waits for its own closed handles to let go of a database.
const LOCK_WAIT: Duration = Duration::from_secs(30);

impl LockWait {
    fn new() -> LockWait {
        LockWait {
            deadline: std::time::Instant::now() + LOCK_WAIT,
            step: Duration::from_millis(5),
        }
    }

    /// Sleeps a little and says whether to try again (false past the deadline).
    fn again(&mut self) -> bool {
        if std::time::Instant::now() >= self.deadline {
            return false;
        }
        std::thread::sleep(self.step);
        self.step = (self.step * 2).min(Duration::from_millis(100));
        true
    }
}

/// Loads the snapshot read from `input` into a new database `DATA_DIR/db.bootstrap`
/// (any older one there is an unfinished load and goes first). Checks as it reads: the
/// magic, `cluster`, every frame, the record count and the checksum; an error leaves
/// no `db.bootstrap` behind. Returns the trailer: where the data stands in the stream.
pub fn load(
    data_dir: &Path,
    input: impl Read,
    cluster: &str,
    progress: &LoadProgress,
) -> Result<Trailer, String> {
    let dir = data_dir.join(NEW_DIR);
    let out = load_into(&dir, input, cluster, progress);
    if out.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    out
}

fn load_into(
    dir: &Path,
    input: impl Read,
    cluster: &str,
    progress: &LoadProgress,
) -> Result<Trailer, String> {
    let (mut decoder, header) = Decoder::open(std::io::BufReader::with_capacity(1 << 20, input))?;
    if header.cluster != cluster {
        return Err(refused(format!(
            "it is of cluster {:?}, this instance is in {cluster:?}",
            header.cluster
        )));
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    let db = open_sled_waiting(dir)?;
    let tree = crate::storage::disk::open_tree(&db).map_err(|e| e.to_string())?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let trailer = loop {
        let frame = decoder.next()?;
        match frame {
            Frame::Put(k, v) => batch.insert(k, v),
            Frame::Remove(k) => batch.remove(k),
            Frame::End(trailer) => break trailer,
        }
        in_batch += 1;
        let loaded = progress.records.fetch_add(1, Ordering::Relaxed) + 1;
        if progress.pause_ms > 0 && loaded.is_multiple_of(10) {
            std::thread::sleep(Duration::from_millis(progress.pause_ms));
        }
        if in_batch >= LOAD_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(|e| format!("writing {}: {e}", dir.display()))?;
            in_batch = 0;
        }
    };
    if trailer.cluster != cluster {
        return Err(refused(format!(
            "its trailer names cluster {:?}, this instance is in {cluster:?}",
            trailer.cluster
        )));
    }
    // The position the data includes, whatever the frames said about it.
    batch.insert(
        keys::named_key(keys::META, crate::storage::change::REPL_POSITION),
        crate::replication::stamp(&trailer.position, trailer.n),
    );
    tree.apply_batch(batch)
        .and_then(|()| db.flush().map(|_| ()))
        .map_err(|e| format!("writing {}: {e}", dir.display()))?;
    Ok(trailer)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Completes a switch a crash interrupted, or removes an unfinished load (see the module
/// notes). Runs before the database is opened, and as the last step of a switch.
pub fn finish_pending_switch(data_dir: &Path) -> std::io::Result<()> {
    let db = data_dir.join("db");
    let new = data_dir.join(NEW_DIR);
    let old = data_dir.join(OLD_DIR);
    let marker = data_dir.join(READY_MARKER);
    if marker.exists() {
        if new.exists() {
            if db.exists() {
                if old.exists() {
                    std::fs::remove_dir_all(&old)?;
                }
                std::fs::rename(&db, &old)?;
            }
            std::fs::rename(&new, &db)?;
        }
        // The old database's feed index snapshots describe data that is gone.
        for entry in std::fs::read_dir(data_dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("db.index") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        sync_dir(data_dir)?;
        std::fs::remove_file(&marker)?;
        sync_dir(data_dir)?;
        tracing::info!(data_dir = %data_dir.display(), "bootstrap: switched to the snapshot's database");
    } else if new.exists() {
        tracing::warn!(data_dir = %data_dir.display(), "bootstrap: an unfinished snapshot load was found and removed; the database is as before it");
        std::fs::remove_dir_all(&new)?;
    }
    Ok(())
}

/// Removes the database a switch replaced (at start-up, and a while after a switch).
pub fn remove_replaced(data_dir: &Path) {
    let old = data_dir.join(OLD_DIR);
    if old.exists() && !data_dir.join(READY_MARKER).exists() {
        if let Err(err) = std::fs::remove_dir_all(&old) {
            tracing::warn!(error = %err, path = %old.display(), "could not remove the replaced database");
        }
    }
}

fn data_dir_of(db_dir: &Path) -> PathBuf {
    db_dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Writer {
    /// Switches the open store to the database loaded into `db.bootstrap` (see the module
    /// notes). This instance's own keys (targets, outbox, X user cache, ingestion
    /// switches) are copied into it first. Readers keep reading the old data until the
    /// new is open. On an error before the commit point nothing changed; after it, the
    /// writer is closed and its next open completes the switch.
    pub fn switch_to_loaded(&mut self) -> Result<(), StoreError> {
        let store = self.open()?;
        let data_dir = data_dir_of(&store.dir);
        let new = data_dir.join(NEW_DIR);
        if !new.exists() {
            return Err(StoreError::Conflict("no snapshot was loaded".into()));
        }
        let fail = |e: String| StoreError::Unavailable(format!("bootstrap switch: {e}"));
        {
            let db = open_sled_waiting(&new).map_err(fail)?;
            let tree = crate::storage::disk::open_tree(&db)?;
            let mut batch = sled::Batch::default();
            for kv in store.tree.iter() {
                let (k, v) = kv?;
                if is_local(&k) && k.first() != Some(&keys::JOURNAL) && &k[..] != b"Mindex_snapshot"
                {
                    batch.insert(k, v);
                }
            }
            tree.apply_batch(batch)?;
            db.flush()?;
        }
        let marker = data_dir.join(READY_MARKER);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .and_then(|()| sync_dir(&data_dir))
            .map_err(|e| fail(format!("writing {}: {e}", marker.display())))?;
        // The commit point is passed: from here a crash ends on the new data.
        let Writer::Open(store) = std::mem::replace(self, Writer::Switching) else {
            unreachable!("opened above")
        };
        let Store {
            db,
            tree,
            shared,
            dir,
            cache_mb,
            ..
        } = store;
        drop(tree);
        drop(db);
        let reopened = finish_pending_switch(&data_dir)
            .map_err(|e| fail(e.to_string()))
            .and_then(|()| {
                let mut waiting = LockWait::new();
                loop {
                    match Store::open_db(&dir, cache_mb) {
                        Err(err) if err.is_locked() && waiting.again() => {}
                        other => break other,
                    }
                }
            })
            .and_then(|(db, tree, _)| Store::around(db, tree, &dir, cache_mb, shared.clone()));
        match reopened {
            Ok(store) => {
                let high_water = store.ids.post.saturating_sub(1);
                store
                    .shared
                    .live
                    .publish(vec![(crate::live::Change::Reset, None)], high_water);
                *self = Writer::Open(store);
                // Readers of the old tree finish within moments; then its files go.
                let _ = std::thread::Builder::new()
                    .name("bootstrap-cleanup".into())
                    .spawn(move || {
                        std::thread::sleep(Duration::from_secs(10));
                        remove_replaced(&data_dir);
                    });
                Ok(())
            }
            Err(err) => {
                *self = Writer::Closed(crate::storage::disk::Closed::after_switch(
                    dir,
                    cache_mb,
                    shared,
                    err.to_string(),
                ));
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(cluster: &str, pairs: &[(&[u8], Option<&[u8]>)], position: (&str, u64)) -> Vec<u8> {
        let mut e = Encoder::new(cluster);
        for (k, v) in pairs {
            match v {
                Some(v) => e.put(k, v),
                None => e.remove(k),
            }
        }
        let mut out = e.take();
        out.extend(e.finish(cluster, (position.0.to_string(), position.1)));
        out
    }

    #[test]
    fn a_snapshot_loads_last_write_wins_and_names_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = snapshot(
            "c1",
            &[
                (b"Pa", Some(b"1")),
                (b"Pb", Some(b"2")),
                (b"Pa", Some(b"3")),
                (b"Pb", None),
            ],
            ("5-0", 7),
        );
        let trailer = load(dir.path(), &bytes[..], "c1", &LoadProgress::default()).unwrap();
        assert_eq!(
            (trailer.position.as_str(), trailer.n, trailer.records),
            ("5-0", 7, 4)
        );
        // `load` dropped its handle; sled lets go of the lock a moment later.
        let db = open_sled_waiting(&dir.path().join(NEW_DIR)).unwrap();
        let tree = db.open_tree(crate::storage::TREE_NAME).unwrap();
        assert_eq!(tree.get(b"Pa").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(tree.get(b"Pb").unwrap(), None);
        assert_eq!(
            tree.get(b"Mrepl:position").unwrap().as_deref(),
            Some(&b"5-0 7"[..])
        );
    }

    #[test]
    fn another_cluster_a_cut_copy_and_a_flipped_byte_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = snapshot("c1", &[(b"Pa", Some(b"1"))], ("5-0", 7));
        let p = LoadProgress::default();
        let err = load(dir.path(), &bytes[..], "c2", &p).unwrap_err();
        assert!(err.contains("cluster"), "{err}");
        let err = load(dir.path(), &bytes[..bytes.len() - 3], "c1", &p).unwrap_err();
        assert!(err.contains("early") || err.contains("checksum"), "{err}");
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 1;
        assert!(load(dir.path(), &flipped[..], "c1", &p).is_err());
        assert!(!dir.path().join(NEW_DIR).exists());
    }

    #[test]
    fn a_switch_stopped_at_any_step_ends_on_the_old_or_the_new_database() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mark = |p: &Path, what: &str| {
            std::fs::create_dir_all(p).unwrap();
            std::fs::write(p.join("which"), what).unwrap();
        };
        let which = || std::fs::read_to_string(d.join("db").join("which")).unwrap();
        // Before the marker: the load is unfinished, the old data stays.
        mark(&d.join("db"), "old");
        mark(&d.join(NEW_DIR), "new");
        finish_pending_switch(d).unwrap();
        assert_eq!(which(), "old");
        assert!(!d.join(NEW_DIR).exists());
        // Marker written, nothing renamed yet.
        mark(&d.join(NEW_DIR), "new");
        std::fs::write(d.join(READY_MARKER), b"").unwrap();
        std::fs::write(d.join("db.index-1"), b"x").unwrap();
        finish_pending_switch(d).unwrap();
        assert_eq!(which(), "new");
        assert!(!d.join(READY_MARKER).exists() && !d.join("db.index-1").exists());
        // Stopped between the two renames: db gone, both others there.
        std::fs::rename(d.join("db"), d.join(NEW_DIR)).unwrap();
        mark(&d.join(OLD_DIR), "old");
        std::fs::write(d.join(READY_MARKER), b"").unwrap();
        finish_pending_switch(d).unwrap();
        assert_eq!(which(), "new");
        remove_replaced(d);
        assert!(!d.join(OLD_DIR).exists());
    }

    fn replicated(tree: &sled::Tree) -> Vec<(IVec, IVec)> {
        tree.iter()
            .map(Result::unwrap)
            .filter(|(k, _)| !is_local(k) && &k[..] != b"Mrepl:position")
            .collect()
    }

    #[test]
    fn a_snapshot_read_beside_writes_is_the_store_at_its_fix_up_and_a_switch_keeps_local_keys() {
        use crate::storage::posts::tests::{draft, x_post};
        let source_dir = tempfile::tempdir().unwrap();
        let mut source = Store::open(&source_dir.path().join("db"), 8).unwrap();
        let leader = source.create_leader(draft("A"), 0).unwrap();
        let posts: Vec<_> = (0..300)
            .map(|i| x_post(leader.id, &format!("{}", 1000 + i), i, &[]))
            .collect();
        source.insert_posts(posts).unwrap();
        let reader = source.reader();
        reader.begin_capture().unwrap();
        let mut enc = Encoder::new("c");
        let mut scan = reader.snapshot_scan().unwrap();
        // Half the scan, then writes of every kind under it, then the rest.
        for _ in 0..400 {
            let (k, v) = scan.next().unwrap().unwrap();
            enc.put(&k, &v);
        }
        for i in 0..50 {
            source
                .create_post(
                    x_post(leader.id, &format!("{}", 5000 + i), 10_000 + i, &[]),
                    i % 2 == 0,
                    0,
                )
                .unwrap();
        }
        for id in [1, 2, 150, 299] {
            source.delete_post(id).unwrap();
        }
        source.create_leader(draft("B"), 0).unwrap();
        for kv in scan {
            let (k, v) = kv.unwrap();
            enc.put(&k, &v);
        }
        let fix = source.finish_capture().unwrap();
        for (k, v) in &fix.writes {
            match v {
                Some(v) => enc.put(k, v),
                None => enc.remove(k),
            }
        }
        let mut bytes = enc.take();
        bytes.extend(enc.finish("c", fix.position));

        let target_dir = tempfile::tempdir().unwrap();
        let mut target = Store::open(&target_dir.path().join("db"), 8).unwrap();
        target.create_leader(draft("Only here"), 0).unwrap();
        target.set_meta("mine", Some(b"kept")).unwrap();
        let target_reader = target.reader();
        load(target_dir.path(), &bytes[..], "c", &LoadProgress::default()).unwrap();
        let mut writer = Writer::Open(target);
        writer.switch_to_loaded().unwrap();
        let Writer::Open(target) = &writer else {
            panic!("open after the switch")
        };
        assert_eq!(replicated(&target.tree), replicated(&source.tree));
        assert_eq!(
            target_reader.meta("mine").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
        assert_eq!(target_reader.stats().posts, source.reader().stats().posts);
        assert!(target_reader.post(150).unwrap().is_none());
        assert!(!target_dir.path().join(NEW_DIR).exists());
        assert!(!target_dir.path().join(READY_MARKER).exists());
    }

    #[test]
    fn local_keys_stay_out() {
        assert!(is_local(b"J\0\0"));
        assert!(!is_local(b"Mapp:ingestion_stopped"));
        assert!(is_local(b"Mapp:usage"));
        assert!(!is_local(b"W\0\0\0\0\0\0\0\x01"));
        assert!(!is_local(b"Mseq:notify"));
        assert!(is_local(b"Mindex_snapshot"));
        assert!(!is_local(b"Mseq:post"));
        assert!(!is_local(b"Mrepl:position"));
        assert!(!is_local(b"P\0\0\0\0\0\0\0\x01"));
    }
}
