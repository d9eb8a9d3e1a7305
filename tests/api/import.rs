//! The streaming `amber import`: a bad or over-long line anywhere rejects the whole file
//! before anything is written; progress lines on stderr; `kill -9` part-way, then the
//! same import again, completes it with nothing duplicated and nothing acknowledged lost.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::{amber_command, spawn_on};

/// A post of the generated backup for every this many posts has a review item.
const REVIEW_EVERY: usize = 100;

fn leader_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn post_id(i: usize) -> String {
    format!("10000000-0000-4000-8000-{i:012}")
}

fn review_id(i: usize) -> String {
    format!("20000000-0000-4000-8000-{i:012}")
}

/// Record lines of an original-style backup: three leaders, `posts` posts (UUIDs, X ids),
/// a review item for every [`REVIEW_EVERY`]th post. No trailer.
fn records(posts: usize) -> Vec<String> {
    let mut lines: Vec<String> = (0..3)
        .map(|l| {
            format!(
                r#"{{"kind":"leader","id":"{}","name":"Leader {l}","handles":{{"x":"lead{l}"}},"createdAt":"2025-01-01T00:00:00Z"}}"#,
                leader_id(l)
            )
        })
        .collect();
    for i in 0..posts {
        lines.push(format!(
            r#"{{"kind":"post","id":"{}","leaderId":"{}","platform":"X","content":"post number {i} says something","timestamp":"2025-02-01T{:02}:{:02}:{:02}Z","sentiment":"Neutral","metrics":{{"likes":{i}}},"platformPostId":"{}","verificationStatus":"Needs Review"}}"#,
            post_id(i),
            leader_id(i % 3),
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60,
            1_800_000_000_000_000_000u64 + i as u64,
        ));
        if i % REVIEW_EVERY == 0 {
            lines.push(format!(
                r#"{{"kind":"review","id":"{}","postId":"{}","state":"pending","updatedAt":"2025-02-02T00:00:00Z"}}"#,
                review_id(i),
                post_id(i)
            ));
        }
    }
    lines
}

/// The lines with their trailer, as one backup file.
fn with_trailer(lines: &[String]) -> String {
    let mut out: String = lines.iter().map(|l| format!("{l}\n")).collect();
    out.push_str(&format!(
        "{{\"kind\":\"trailer\",\"records\":{},\"damagedSkipped\":0}}\n",
        lines.len()
    ));
    out
}

/// `amber import` on `dir` with the file `backup` as stdin, progress after every batch.
fn import_file(dir: &Path, backup: &Path) -> Command {
    let mut cmd = amber_command(dir, &HashMap::new());
    cmd.args(["import", "--progress-every", "0"])
        .stdin(std::fs::File::open(backup).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// The records `amber export` writes for `dir`, by kind.
fn exported_kinds(dir: &Path) -> HashMap<String, usize> {
    let out = amber_command(dir, &HashMap::new())
        .arg("export")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut kinds = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *kinds
            .entry(v["kind"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    kinds
}

/// The number in `… {n} records …` of a progress line.
fn records_in(line: &str) -> Option<u64> {
    let (before, _) = line.split_once(" records")?;
    before.rsplit(' ').next()?.parse().ok()
}

#[actix_web::test]
async fn an_over_long_or_bad_line_deep_in_a_large_backup_rejects_it_before_anything_is_written() {
    let work = tempfile::tempdir().unwrap();
    let good = records(5_000);
    // Line numbers are 1-based; the bad line comes after more than two batches' worth.
    let at = good.len() + 1;
    let huge = format!(
        r#"{{"kind":"post","id":"x","leaderId":"{}","platform":"X","content":"{}","timestamp":"2025-02-01T00:00:00Z","sentiment":"Neutral","verificationStatus":"Needs Review"}}"#,
        leader_id(0),
        "a".repeat(5 << 20)
    );
    for (bad, says) in [
        (huge, "longer than"),
        ("{\"kind\":\"post\",\"id\":".to_string(), "EOF"),
    ] {
        let mut lines = good.clone();
        lines.push(bad);
        lines.extend(records(10).into_iter().skip(3));
        let path = work.path().join("bad.jsonl");
        std::fs::write(&path, with_trailer(&lines)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let out = import_file(data.path(), &path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("line {at}:")), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("importing:"), "nothing imported: {stderr}");
        let kinds = exported_kinds(data.path());
        assert_eq!(kinds.get("leader"), None, "nothing written: {kinds:?}");
        assert_eq!(kinds.get("post"), None, "nothing written: {kinds:?}");
    }
}

#[actix_web::test]
async fn a_long_import_prints_progress_lines_on_stderr() {
    let work = tempfile::tempdir().unwrap();
    let lines = records(6_000);
    let path = work.path().join("backup.jsonl");
    std::fs::write(&path, with_trailer(&lines)).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = import_file(data.path(), &path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let checking = stderr
        .lines()
        .filter(|l| l.starts_with("checking the backup: "))
        .count();
    assert!(
        checking >= 2,
        "a line every 1,024 records checked: {stderr}"
    );
    let importing: Vec<u64> = stderr
        .lines()
        .filter(|l| l.starts_with("importing: "))
        .map(|l| records_in(l).unwrap_or_else(|| panic!("{l}")))
        .collect();
    // 6,063 records: a line after each batch of 500, and after the last one.
    let batches: Vec<u64> = (1..=12).map(|n| n * 500).chain([6_063]).collect();
    assert_eq!(importing, batches, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("importing: ") && l.contains("records/s")),
        "{stderr}"
    );
}

#[actix_web::test]
async fn kill_9_part_way_through_an_import_then_the_same_import_completes_it_once() {
    let work = tempfile::tempdir().unwrap();
    let posts = 30_000;
    let lines = records(posts);
    let reviews = posts / REVIEW_EVERY;
    let total = lines.len();
    let path = work.path().join("backup.jsonl");
    std::fs::write(&path, with_trailer(&lines)).unwrap();
    let data = tempfile::tempdir().unwrap();

    // The first run is killed as soon as it says a batch is stored.
    let mut child = import_file(data.path(), &path).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut acknowledged = None;
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.starts_with("importing: ") {
            acknowledged = records_in(&line);
            child.kill().unwrap();
            break;
        }
        line.clear();
    }
    let status = child.wait().unwrap();
    let acknowledged = acknowledged.unwrap_or_else(|| panic!("no progress line: {seen}"));
    assert!(
        !status.success(),
        "the import ended before it was killed: a larger backup is needed ({seen})"
    );
    assert!(acknowledged >= 500 && (acknowledged as usize) < total);

    // Nothing acknowledged is lost: the stored records are whole batches, at least as many
    // as the progress line counted.
    let kinds = exported_kinds(data.path());
    let stored: usize = kinds.values().sum::<usize>() - 1;
    assert!(
        stored as u64 >= acknowledged,
        "{stored} stored, {acknowledged} acknowledged"
    );
    assert!(stored < total, "{kinds:?}");

    // The same import again completes it: what is stored is skipped.
    let out = import_file(data.path(), &path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let [leaders, new_posts, new_reviews, skipped] = numbers[..] else {
        panic!("{summary}");
    };
    assert_eq!(skipped, stored, "{summary}");
    assert_eq!(
        leaders + new_posts + new_reviews + skipped,
        total,
        "{summary}"
    );

    // Every record once.
    let kinds = exported_kinds(data.path());
    assert_eq!(kinds["leader"], 3, "{kinds:?}");
    assert_eq!(kinds["post"], posts, "{kinds:?}");
    assert_eq!(kinds["review"], reviews, "{kinds:?}");
    for spool in ["import-spool.jsonl", "import-spool.bin"] {
        assert!(!data.path().join(spool).exists(), "{spool} left behind");
    }

    let app = spawn_on(data.path()).await;
    for i in [0, posts / 2, posts - 1] {
        let (status, post) = app.get_json(&format!("/api/posts/{}", post_id(i))).await;
        assert_eq!(status, 200, "post {i}: {post}");
        assert_eq!(post["metrics"]["likes"], i, "{post}");
    }
    let (_, feed) = app.get_json("/api/feed").await;
    assert_eq!(feed["total"], posts, "no post twice");
}
