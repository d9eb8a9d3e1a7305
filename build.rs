//! Build script: records what `/api/health` reports about the build, and whether the
//! browser tests can run here.
//!
//! - `AMBER_GIT_COMMIT`: `GIT_COMMIT` from the build environment, else the short hash of
//!   `HEAD` when the sources are a git checkout (`git` on `PATH`), else `unknown` (a
//!   tarball, or a Docker build context without `.git`).
//! - `AMBER_BUILD_TIME`: `BUILD_TIME` from the build environment, else `SOURCE_DATE_EPOCH`
//!   (reproducible builds), else the time this script ran, as RFC 3339 UTC. The script
//!   runs again when the commit or these variables change, not on every edit, so in a
//!   dirty checkout it is the time the commit was first built.
//! - `cfg(amber_browser)`: node, Chromium and `tests/browser/node_modules/playwright-core`
//!   are all present, or `CI=true` (where a missing piece must fail, not be ignored).
//!   Without it the browser tests are `#[ignore]`d, and `cargo test` counts them so.
//!
//! Nothing here touches the network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rustc-check-cfg=cfg(amber_browser)");
    for var in [
        "GIT_COMMIT",
        "BUILD_TIME",
        "SOURCE_DATE_EPOCH",
        "CI",
        "CHROMIUM",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let commit = non_empty_env("GIT_COMMIT").or_else(git_commit);
    println!(
        "cargo:rustc-env=AMBER_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    let build_time = non_empty_env("BUILD_TIME").unwrap_or_else(|| {
        let secs = non_empty_env("SOURCE_DATE_EPOCH")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64)
            });
        rfc3339_utc(secs)
    });
    println!("cargo:rustc-env=AMBER_BUILD_TIME={build_time}");

    match browser_tests_can_run() {
        Ok(()) => println!("cargo:rustc-cfg=amber_browser"),
        // Without tests/ (a Docker build context, a crate package) there is nothing to say.
        Err(_) if !manifest_dir().join("tests/browser").is_dir() => {}
        Err(missing) => println!(
            "cargo:warning=browser tests (tests/api/browser.rs) are ignored: missing {missing}"
        ),
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Runs `git args...` in the manifest directory; its trimmed stdout on success.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The short hash of `HEAD`, and rerun triggers for when it moves.
fn git_commit() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Paths git reports relative to the manifest directory (a worktree's `.git` is a
    // file pointing elsewhere, so ask git rather than guess).
    let manifest = manifest_dir();
    let resolve = |p: String| {
        let path = PathBuf::from(p);
        if path.is_absolute() {
            path
        } else {
            manifest.join(path)
        }
    };
    let git_dir = git(&["rev-parse", "--git-dir"]).map(resolve);
    let common_dir = git(&["rev-parse", "--git-common-dir"]).map(resolve);
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut watched = Vec::new();
    if let Some(dir) = &git_dir {
        watched.push(dir.join("HEAD"));
    }
    if let Some(dir) = &common_dir {
        watched.push(dir.join("packed-refs"));
        if let Some(head_ref) = &head_ref {
            watched.push(dir.join(head_ref));
        }
    }
    // A path that does not exist would make cargo rerun this script on every build.
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Some(commit)
}

/// Whether the browser tests can run: `Ok` when everything they need is here, or CI says
/// they must run (and fail if something is missing); else what is missing.
fn browser_tests_can_run() -> Result<(), String> {
    let browser_dir = manifest_dir().join("tests/browser");
    let chromium = non_empty_env("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
    // Rerun when `npm ci` fills node_modules, or Chromium appears or goes. Directories
    // only: they exist, so cargo compares their contents' times instead of rerunning
    // every build.
    if browser_dir.is_dir() {
        println!("cargo:rerun-if-changed={}", browser_dir.display());
    }
    if let Some(parent) = Path::new(&chromium).parent().filter(|p| p.is_dir()) {
        println!("cargo:rerun-if-changed={}", parent.display());
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        return Ok(());
    }
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = browser_dir
        .join("node_modules/playwright-core/package.json")
        .is_file();
    let missing: Vec<String> = [
        (!node).then(|| "node".to_string()),
        (!Path::new(&chromium).exists()).then(|| format!("{chromium} (apt-get install chromium)")),
        (!playwright).then(|| "playwright-core (npm ci --prefix tests/browser)".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join(", "))
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
