//! Damaged live data (issue 11 item 5): a store with bytes flipped inside a post's records
//! in `db/db` starts, says in health what is damaged, serves every feed page with the
//! intact posts, and exports a backup whose trailer counts what it holds and what it
//! skipped; import checks the trailer.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::import;
use crate::helpers::{eventually, spawn_on};

#[path = "../../benches/support/synth.rs"]
mod synth;

const POSTS: u64 = 5_000;

/// Builds a store of `POSTS` synthetic posts, then runs the server on it once and stops
/// it cleanly (as an operator's store looks: index snapshot and sled snapshot written).
async fn built_store(dir: &Path) {
    let db = dir.join("db");
    {
        let mut store = amber::storage::Store::open(&db, 8).unwrap();
        synth::add_leaders(&mut store);
        synth::fill(&mut store, POSTS, 1_000);
        store.close().unwrap();
    }
    released(&db.join("db"));
    let mut app = spawn_on(dir).await;
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(health["checks"]["database"]["stats"]["posts"], POSTS);
    assert!(app.terminate().success());
}

/// Waits (up to 30 s) until no handle of this process locks sled's log `file`: sled lets
/// go of its lock a moment after the store is dropped, when its last background job
/// drops its handle, and a server started before that finds the database in use.
fn released(file: &Path) {
    use fs2::FileExt;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = std::fs::File::open(file).unwrap();
        if probe.try_lock_exclusive().is_ok() {
            return; // Dropping the probe lets go of its lock.
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sled still locks {file:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Zeroes 4 KiB at 85 % of `db/db` and flips ten bytes between 70 % and 80 %: inside the
/// live part of sled's log, before its tail (whose damage is a different case).
fn damage(dir: &Path) {
    let path = dir.join("db").join("db");
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    let zero_at = (len * 85 / 100) / 4096 * 4096;
    bytes[zero_at..zero_at + 4096].fill(0);
    for i in 0..10 {
        bytes[len * 70 / 100 + i * (len / 100)] ^= 0x5A;
    }
    std::fs::write(&path, bytes).unwrap();
}

/// Flips one byte inside every copy of post `n`'s record in `bytes` (sled's log); returns
/// how many copies it found.
fn flip_copies_of(bytes: &mut [u8], n: u64) -> usize {
    let needle = format!("Post number {n}: good progress");
    let needle = needle.as_bytes();
    let (mut at, mut flipped) = (0, 0);
    while let Some(i) = bytes[at..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| at + i)
    {
        bytes[i + needle.len() - 4] ^= 0x5A;
        flipped += 1;
        at = i + needle.len();
    }
    flipped
}

/// Damages records sled reads only when they are asked for, never what it reads to open:
/// flips every copy of one post's record, trying posts spread over the store until
/// `amber export` opens the store and names damaged records. (Where a post's live copy
/// lies in sled's log depends on when its cleaner and flusher ran; a copy in the part
/// sled replays at open makes it refuse to open instead, the case
/// `damage_after_kill_9_is_named_as_damage_at_start` covers.)
fn damage_records(dir: &Path) {
    let path = dir.join("db").join("db");
    let pristine = std::fs::read(&path).unwrap();
    let mut tried = Vec::new();
    for n in (500..POSTS).step_by(500) {
        let mut bytes = pristine.clone();
        if flip_copies_of(&mut bytes, n) == 0 {
            continue;
        }
        std::fs::write(&path, &bytes).unwrap();
        let out = crate::helpers::amber_command(dir, &Default::default())
            .arg("export")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if err.contains("damaged records could not be read") {
            return;
        }
        tried.push(format!("post {n}: {err}"));
    }
    panic!("no post's damage left a store sled opens: {tried:#?}");
}

#[actix_web::test]
async fn damaged_records_are_reported_skipped_and_the_rest_is_served_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    built_store(dir.path()).await;
    damage_records(dir.path());

    let app = spawn_on(dir.path()).await;
    let (leaders, posts) = {
        let (_, h) = app.get_json("/api/health").await;
        let stats = &h["checks"]["database"]["stats"];
        (
            stats["leaders"].as_u64().unwrap(),
            stats["posts"].as_u64().unwrap(),
        )
    };
    let health = eventually(Duration::from_secs(60), "the integrity check", || async {
        let (_, h) = app.get_json("/api/health").await;
        (h["checks"]["database"]["damage"]["checked"] == true).then_some(h)
    })
    .await;
    let damage = &health["checks"]["database"]["damage"];
    let damaged = damage["damagedRecords"].as_u64().unwrap();
    assert!(damaged > 0, "the damage is found: {health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["database"]["status"], "degraded");
    assert!(
        app.logs()
            .contains("integrity check: damaged records found"),
        "start-up says so in the log"
    );

    // Every feed page answers, with the intact posts.
    let mut served = 0;
    for page in 1..=(posts / 100 + 1) {
        let (status, body) = app
            .get_json(&format!("/api/feed?page={page}&page_size=100"))
            .await;
        assert_eq!(status, 200, "page {page}: {body}");
        served += body["posts"].as_array().unwrap().len() as u64;
    }
    let (status, _) = app.get_json("/api/dashboard").await;
    assert_eq!(status, 200);
    assert!(
        served < posts && served + damaged >= posts,
        "{served} of {posts} served, {damaged} damaged"
    );

    // The export holds every intact record and says what it skipped.
    let res = app.get_auth("/api/admin/export", &app.admin_token()).await;
    assert_eq!(res.status(), 200);
    let backup = res.text().await.unwrap();
    let (records, last) = backup.trim_end().rsplit_once('\n').unwrap();
    let trailer: Value = serde_json::from_str(last).unwrap();
    assert_eq!(trailer["kind"], "trailer");
    let written = trailer["records"].as_u64().unwrap();
    assert_eq!(written, records.lines().count() as u64);
    assert!(trailer["damagedSkipped"].as_u64().unwrap() > 0, "{trailer}");
    assert_eq!(
        written + trailer["damagedSkipped"].as_u64().unwrap(),
        leaders + posts,
        "every record is either in the backup or counted as skipped: {trailer}"
    );
    drop(app);

    // Import checks the trailer: the whole backup restores; a cut one is refused.
    let fresh = tempfile::tempdir().unwrap();
    let cut: String = records
        .lines()
        .take(500)
        .map(|l| format!("{l}\n"))
        .collect();
    let out = import(fresh.path(), &cut);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("without its trailer line") && err.contains("cut short"),
        "{err}"
    );
    let out = import(fresh.path(), &format!("{cut}{last}\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the trailer counts"));
    let out = import(fresh.path(), &backup);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("exported from a damaged database"), "{err}");
    let restored = spawn_on(fresh.path()).await;
    let (_, h) = restored.get_json("/api/health").await;
    assert_eq!(h["checks"]["database"]["stats"]["posts"], served);
}

#[actix_web::test]
async fn a_deleted_database_with_its_index_snapshot_left_behind_is_said_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = spawn_on(dir.path()).await;
    assert!(app.terminate().success());
    assert!(std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("db.index")));
    std::fs::remove_dir_all(dir.path().join("db")).unwrap();
    let app = spawn_on(dir.path()).await;
    assert!(
        app.logs().contains("DATA_DIR has no database"),
        "{}",
        app.logs()
    );
}

/// The newest `snap.*` file sled wrote in `db/`.
fn sled_snapshot(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("db"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("snap.")
        })
        .max()
        .expect("sled wrote its snapshot")
}

#[actix_web::test]
async fn a_damaged_sled_snapshot_is_set_aside_and_the_database_recovered_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    built_store(dir.path()).await;
    let snap = sled_snapshot(dir.path());
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 10] {
        *b ^= 0x5A;
    }
    std::fs::write(&snap, bytes).unwrap();

    let mut app = spawn_on(dir.path()).await;
    let logs = app.logs();
    assert!(
        logs.contains("snapshot was damaged") && logs.contains("db.damaged-snap."),
        "start-up says what was damaged and where it went: {logs}"
    );
    assert!(!logs.contains("in use by another process"), "{logs}");
    let health = eventually(Duration::from_secs(60), "the integrity check", || async {
        let (_, h) = app.get_json("/api/health").await;
        (h["checks"]["database"]["damage"]["checked"] == true).then_some(h)
    })
    .await;
    let db = &health["checks"]["database"];
    assert_eq!(db["stats"]["posts"], POSTS, "nothing lost: {health}");
    assert_eq!(db["damage"]["damagedRecords"], 0, "{health}");
    let aside = db["damage"]["sledSnapshotSetAside"].as_str().unwrap();
    assert!(Path::new(aside).exists(), "{health}");
    let mut served = 0;
    for page in 1..=POSTS / 100 {
        let (status, body) = app
            .get_json(&format!("/api/feed?page={page}&page_size=100"))
            .await;
        assert_eq!(status, 200, "page {page}: {body}");
        served += body["posts"].as_array().unwrap().len() as u64;
    }
    assert_eq!(served, POSTS);
    // Writes work, and the next start is an ordinary one.
    let created = app
        .create_post(
            &serde_json::json!({"leaderId": 1, "platform": "X", "content": "after the repair"}),
        )
        .await;
    assert!(created["id"].is_string(), "{created}");
    assert!(app.terminate().success());
    let app = spawn_on(dir.path()).await;
    assert!(
        !app.logs().contains("snapshot was damaged"),
        "{}",
        app.logs()
    );
    let (_, h) = app.get_json("/api/health").await;
    assert_eq!(h["checks"]["database"]["stats"]["posts"], POSTS + 1);
}

/// Damage after an unclean stop: sled must replay the log written since its snapshot,
/// and sled 0.34 cannot replay a damaged one (it panics inside `open`): opening stops
/// with that reason, not a panic trace and not "another process". Damage outside the
/// replayed part opens and is met as damaged records (the export fails naming them).
#[actix_web::test]
async fn damage_after_kill_9_is_named_as_damage_at_start() {
    let dir = tempfile::tempdir().unwrap();
    built_store(dir.path()).await;
    let mut app = spawn_on(dir.path()).await;
    for i in 0..300 {
        let created = app
            .create_post(&serde_json::json!({
                "leaderId": 1, "platform": "X", "content": format!("after the snapshot {i}")
            }))
            .await;
        assert!(created["id"].is_string(), "{created}");
    }
    app.kill9();
    damage(dir.path());
    // `amber export` opens the store as `serve` does and ends by itself: it must fail,
    // naming the damage (or, were sled to open, the records it had to skip).
    let out = crate::helpers::amber_command(dir.path(), &Default::default())
        .arg("export")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // Where the bytes land depends on how sled laid out its log, which depends on when
        // its background flusher ran (a loaded machine moves it): bytes that fell on space
        // sled no longer uses damage nothing. Then the export must be whole, every post
        // in it and its trailer's count true; anything less is a silent loss.
        let text = String::from_utf8_lossy(&out.stdout);
        let posts = text
            .lines()
            .filter(|l| l.contains(r#""kind":"post""#))
            .count() as u64;
        assert_eq!(
            posts,
            POSTS + 300,
            "an export that succeeded after damage lost posts: {err}"
        );
        return;
    }
    // Which of the two depends on where the damage falls: in the part sled replays, or
    // in pages it reads later. Both are said; neither is a silent success.
    let refused = err.contains("are damaged") && err.contains("sled could not recover its log");
    let skipped = err.contains("damaged records could not be read and are not in the backup");
    assert!(refused || skipped, "{err}");
    assert!(!err.contains("in use by another process"), "{err}");
    assert!(!err.contains("panicked at"), "no panic trace: {err}");
}
