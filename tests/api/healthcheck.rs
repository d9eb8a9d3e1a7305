//! `amber healthcheck`: exit 0 against a healthy server, non-zero with one clear line
//! when nothing listens or the answer is not a healthy one.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;

use crate::helpers::{amber_command, spawn_app};

fn healthcheck(port: u16, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let env: HashMap<String, String> = [("PORT".to_string(), port.to_string())].into();
    amber_command(dir.path(), &env)
        .arg("healthcheck")
        .args(extra)
        .output()
        .expect("run amber healthcheck")
}

#[actix_web::test]
async fn healthcheck_exits_zero_when_the_server_is_ok() {
    let app = spawn_app().await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let out = healthcheck(port, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" is ok"), "{stdout}");
}

#[test]
fn healthcheck_fails_with_one_line_when_nothing_listens() {
    // Bind then drop: the port is very likely free right after.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = healthcheck(port, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach 127.0.0.1"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// A one-shot server answering every connection with `response`.
fn fake_server(response: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn healthcheck_fails_on_a_503_answer() {
    let port = fake_server("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{\"status\":\"error\"}");
    let out = healthcheck(port, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 503"));
}

#[test]
fn healthcheck_strict_fails_on_degraded_but_plain_passes() {
    const DEGRADED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"status\":\"degraded\"}";
    let out = healthcheck(fake_server(DEGRADED), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = healthcheck(fake_server(DEGRADED), &["--strict"]);
    assert!(!out.status.success());
    // The fatal line may be a JSON object (LOG_FORMAT=json): the quotes come escaped.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("\"degraded\"") || stderr.contains("\\\"degraded\\\""),
        "{stderr}"
    );
}

#[test]
fn healthcheck_fails_on_something_that_is_not_http() {
    let out = healthcheck(fake_server("SSH-2.0-OpenSSH_9.2\r\n\r\n"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreadable answer"));
}
