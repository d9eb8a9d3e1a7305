//! The connection layer: HTTP/1.1 served through a socket wrapper of ours, so that every
//! connection is admitted under a cap, every phase of a request has a deadline, and the
//! protocol-level refusals actix-http would write itself (an empty 400, 408 or 431) are
//! SPEC JSON with `X-Request-Id` and the security headers.
//!
//! ```text
//!  accept ─▶ Admission (per-address cap, global cap below RLIMIT_NOFILE, health-only slots)
//!              │ refused: one JSON 429/503, closed
//!              ▼
//!           GuardedStream (framing + deadlines; answers refused heads and timeouts itself)
//!              ▼
//!           actix-http h1 dispatcher ─▶ the actix-web App (middleware, routes)
//! ```
//!
//! `serve` builds what `actix_web::HttpServer` would (workers, keep-alive, graceful
//! shutdown signal) on `actix-server` directly, because `HttpServer` accepts only plain
//! `TcpStream`s and so cannot put a wrapper between the socket and actix-http.

pub mod admission;
pub mod early;
pub mod framing;
pub mod guard;
pub mod reply;

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_server::ServerBuilder;
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::AppConfig;
use tokio::net::TcpStream;

use crate::http::conn::admission::{Admission, ConnLimits, Refusal};
use crate::http::conn::early::{EarlyFactory, EarlyRefusals};
use crate::http::conn::guard::{Deadlines, GuardedStream};
use crate::http::conn::reply::RawReply;
use crate::metrics::Metrics;

/// Idle time allowed on a kept-alive connection, and for a fresh one's first byte.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Longest a request head may take to arrive (capped by the request deadline).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long actix-http lingers to read what a client still sends after an answer that
/// ends the connection.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the connection layer is configured with.
#[derive(Clone)]
pub struct EdgeSettings {
    pub limits: ConnLimits,
    /// `REQUEST_TIMEOUT_SECONDS`: a whole request must arrive within this.
    pub request_timeout: Duration,
    /// The limiters, for the refusals answered before the app ([`early`]); `None`: none.
    pub rate_limits: Option<Arc<crate::rate_limit::RateLimits>>,
}

impl fmt::Debug for EdgeSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeSettings")
            .field("limits", &self.limits)
            .field("request_timeout", &self.request_timeout)
            .field("rate_limits", &self.rate_limits.is_some())
            .finish()
    }
}

impl EdgeSettings {
    fn deadlines(&self) -> Deadlines {
        Deadlines {
            first_byte: KEEP_ALIVE,
            head: HEAD_TIMEOUT.min(self.request_timeout),
            request: self.request_timeout,
            write_stall: self.request_timeout,
        }
    }
}

/// A server builder listening on `listener`, serving the app that `factory` builds
/// through the connection layer. The caller sets shutdown behaviour and calls `run`.
pub fn server<F, I, S, B>(
    listener: TcpListener,
    factory: F,
    edge: EdgeSettings,
    metrics: Arc<Metrics>,
) -> std::io::Result<ServerBuilder>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let builder = ServerBuilder::default();
    let shutdown = builder.graceful_shutdown_signal();
    let admission = Admission::new(
        edge.limits.clone(),
        metrics.connections_open.clone(),
        metrics.connections_refused.clone(),
    );
    let deadlines = edge.deadlines();
    let early = edge.rate_limits.clone().map(|limits| EarlyRefusals {
        limits,
        metrics: metrics.clone(),
    });
    tracing::info!(
        max_connections = edge.limits.max,
        health_reserve = edge.limits.health_reserve,
        per_address = edge.limits.per_address,
        request_timeout_s = edge.request_timeout.as_secs(),
        "connection limits"
    );
    builder.listen(format!("amber-{addr}"), listener, move || {
        let shutdown = shutdown.clone();
        let admission = admission.clone();
        let metrics = metrics.clone();
        let guard_early = early.clone();
        let app = EarlyFactory::new(
            factory()
                .into_factory()
                .map_err(|err| err.into().error_response()),
            early.clone(),
        );
        let h1 = HttpService::<GuardedStream, _, _>::build()
            .graceful_shutdown_signal(move || {
                let signal = shutdown.clone();
                async move { signal.notified().await }
            })
            .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
            // The guard times heads itself (and answers in JSON): actix-http's own head
            // timer, which would answer an empty 408 first, is off.
            .client_request_timeout(Duration::ZERO)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .h1_allow_half_closed(true)
            .local_addr(addr)
            .on_connect_ext(|io: &GuardedStream, ext| {
                ext.insert(io.handle());
            })
            .h1(map_config(app, move |()| {
                AppConfig::__priv_test_new(false, addr.to_string(), addr)
            }));
        fn_service(move |stream: TcpStream| {
            let peer = stream.peer_addr().ok();
            let admitted = admission.admit(peer.map(|p| crate::http::canonical_ip(p.ip())));
            let metrics = metrics.clone();
            let early = guard_early.clone();
            async move {
                match admitted {
                    Ok((permit, grant)) => {
                        let _ = stream.set_nodelay(true);
                        let io = GuardedStream::new(
                            stream, permit, grant, deadlines, metrics, early, peer,
                        );
                        Ok::<_, DispatchError>((io, peer))
                    }
                    Err(refusal) => {
                        refuse(&stream, refusal, peer);
                        linger(stream).await;
                        Err(DispatchError::Io(
                            std::io::ErrorKind::ConnectionRefused.into(),
                        ))
                    }
                }
            }
        })
        .and_then(h1)
    })
}

/// Refused connections lingering at once, at most: beyond this they are closed at once
/// (a flood of refusals must not take the descriptors the caps protect).
const MAX_LINGERING: usize = 32;
static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// After a refusal: reads and drops what the client sends until it closes or
/// [`guard::LINGER`] passes, so the close is not a reset that destroys the answer.
async fn linger(mut stream: TcpStream) {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncReadExt;
    if LINGERING.fetch_add(1, Ordering::Relaxed) < MAX_LINGERING {
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(guard::LINGER, async {
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    LINGERING.fetch_sub(1, Ordering::Relaxed);
}

/// Answers a refused connection with one JSON error and lets it close. The answer is
/// written before the request is read: a fresh socket's send buffer takes it at once.
fn refuse(stream: &TcpStream, refusal: Refusal, peer: Option<SocketAddr>) {
    use std::io::{Read, Write};
    let (status, code, message) = match refusal {
        Refusal::PerAddress => (
            429,
            "too_many_connections",
            "this address has too many open connections; close some and try again",
        ),
        Refusal::Full => (
            503,
            "server_busy",
            "the server is at its connection limit; try again shortly",
        ),
    };
    let reply = RawReply::new(status, code, message, None, Some(1));
    // Straight on the (non-blocking) socket: tokio's `try_*` would see no readiness yet
    // on a socket this fresh. What already arrived is read first, so the close that
    // follows is a FIN, not a reset that could discard the answer.
    let sock = socket2::SockRef::from(stream);
    let mut sink = [0u8; 4096];
    while matches!((&*sock).read(&mut sink), Ok(n) if n > 0) {}
    let _ = (&*sock).write(&reply.bytes);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    tracing::debug!(peer = ?peer, status, "connection refused");
}
