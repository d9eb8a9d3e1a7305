//! `amber healthcheck`: one plain HTTP/1.1 `GET /api/health` to the local server over a
//! std `TcpStream` with short timeouts, for container health checks in images that have
//! no curl. Healthy means HTTP 200 with `status` `ok`, or `degraded` unless strict (a
//! degraded server still serves: its breaker is open or Redis is away, and restarting
//! the container would not help).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::config::Settings;

/// How long the whole check may take: connect, send, read.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest health response read; the real one is well under 1 KB.
const MAX_RESPONSE: usize = 64 * 1024;

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("cannot reach {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no complete answer from {addr} within {timeout:?}")]
    Io {
        addr: SocketAddr,
        timeout: Duration,
        #[source]
        source: std::io::Error,
    },
    #[error("unreadable answer from {addr}: {reason}")]
    BadResponse { addr: SocketAddr, reason: String },
    #[error("server at {addr} is not healthy: HTTP {http_status}, status {status:?}")]
    Unhealthy {
        addr: SocketAddr,
        http_status: u16,
        status: String,
    },
}

/// `amber healthcheck [--strict]`: checks the server of `HOST`/`PORT` and prints one line.
pub fn run(settings: &Settings, strict: bool) -> anyhow::Result<()> {
    let addr = target(settings.host, settings.port);
    let status = check(addr, strict)?;
    println!("amber at {addr} is {status}");
    Ok(())
}

/// Where to ask: the configured address, with a wildcard listen address replaced by
/// the loopback address of the same family.
pub fn target(host: IpAddr, port: u16) -> SocketAddr {
    let ip = match host {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    SocketAddr::new(ip, port)
}

/// Asks `addr` for `/api/health`; returns the reported `status` when healthy.
pub fn check(addr: SocketAddr, strict: bool) -> Result<String, HealthcheckError> {
    let deadline = Instant::now() + TIMEOUT;
    let io_err = |source| HealthcheckError::Io {
        addr,
        timeout: TIMEOUT,
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|source| HealthcheckError::Connect { addr, source })?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    let request = format!(
        "GET /api/health HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: amber-healthcheck\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    let mut response = Vec::with_capacity(2048);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io_err(std::io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(io_err)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() > MAX_RESPONSE {
                    return Err(HealthcheckError::BadResponse {
                        addr,
                        reason: format!("longer than {MAX_RESPONSE} bytes"),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
    let (http_status, status) =
        parse_response(&response).map_err(|reason| HealthcheckError::BadResponse {
            addr,
            reason: reason.to_string(),
        })?;
    let healthy = http_status == 200 && (status == "ok" || (!strict && status == "degraded"));
    if healthy {
        Ok(status)
    } else {
        Err(HealthcheckError::Unhealthy {
            addr,
            http_status,
            status,
        })
    }
}

/// Why a response could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no HTTP status line")]
    StatusLine,
    #[error("headers never end")]
    Headers,
    #[error("broken chunked body")]
    Chunked,
    #[error("body is not health JSON")]
    Body,
}

/// Parses a whole HTTP/1.1 response: the status code and the body's `status` field.
pub fn parse_response(raw: &[u8]) -> Result<(u16, String), ParseError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(ParseError::Headers)?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| ParseError::Headers)?;
    let mut lines = head.split("\r\n");
    let code = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(ParseError::StatusLine)?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| ParseError::Body)?;
    let status = json
        .get("status")
        .and_then(|s| s.as_str())
        .ok_or(ParseError::Body)?;
    Ok((code, status.to_string()))
}

/// Joins the chunks of a chunked body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, ParseError> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(ParseError::Chunked)?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| ParseError::Chunked)?;
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| ParseError::Chunked)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(ParseError::Chunked);
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_ok_answer_is_healthy_json() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ok\",\"checks\":{}}";
        assert_eq!(parse_response(raw), Ok((200, "ok".to_string())));
    }

    #[test]
    fn a_chunked_answer_is_joined() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{\"status\r\n9\r\n\":\"error\"\r\n1\r\n}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw), Ok((503, "error".to_string())));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse_response(b""), Err(ParseError::Headers));
        assert_eq!(
            parse_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ParseError::StatusLine)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n\r\n<html>"),
            Err(ParseError::Body)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ParseError::Chunked)
        );
    }

    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        assert_eq!(
            target("0.0.0.0".parse().unwrap(), 5000),
            "127.0.0.1:5000".parse().unwrap()
        );
        assert_eq!(
            target("::".parse().unwrap(), 80),
            "[::1]:80".parse().unwrap()
        );
        assert_eq!(
            target("10.1.2.3".parse().unwrap(), 1),
            "10.1.2.3:1".parse().unwrap()
        );
    }
}
