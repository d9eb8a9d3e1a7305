//! [`GuardedStream`]: the socket as actix-http sees it. It frames the requests on the way
//! in ([`Framer`]), holds every phase of a request to a deadline, and writes the answer to
//! what actix-http must not see (a refused head, a request that did not arrive in time)
//! itself, as SPEC JSON, before closing.
//!
//! Deadlines, all measured from the first byte of the request they guard:
//! - the head must arrive within `head` (5 s), the whole request, body included, within
//!   `request` (`REQUEST_TIMEOUT_SECONDS`, 30 s): dribbling does not reset them;
//! - a fresh connection must send its first byte within `first_byte` (the keep-alive
//!   time); between later requests actix-http's keep-alive timer closes idle connections;
//! - a blocked write (a client that does not read) may wait `write_stall`.
//!
//! When a deadline passes while the request is still arriving and nothing has been
//! written for it yet, the client gets a JSON 408 and the connection is closed; when a
//! response has begun (the handler answered early), the connection is simply closed.
//!
//! Refusals answered here (BENCHMARKS.md, issue 14, hT): while nothing of a connection
//! has been passed to actix-http (so it owes no answer and has no response in flight),
//! each complete simple `GET` head (`framing::SimpleGet`: HTTP/1.1, no body, no
//! `Connection`, `Expect` or `Upgrade`) is first offered to
//! `early::EarlyRefusals::answer_simple`; a refusal is written here as the bytes
//! actix-http would have written for it, and the head is never passed on. Such a
//! connection's idle time between requests is held to the keep-alive time here (actix-http's
//! own keep-alive timer only starts after an answer of its own). The first head passed on
//! ends this for the connection: from then on every request goes to actix-http.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::http::conn::admission::{Grant, Permit};
use crate::http::conn::early::EarlyRefusals;
use crate::http::conn::framing::{Framer, HeadInfo, Progress, Rejection, SimpleGet};
use crate::http::conn::reply::RawReply;
use crate::http::middleware::log_request;
use crate::http::rate_limit::Precharged;
use crate::metrics::Metrics;

/// How long writing one of our own answers may take before the connection is dropped.
const REPLY_GRACE: Duration = Duration::from_secs(2);
/// After our own answer, how long what the client still sends is read and dropped before
/// the socket closes: closing with unread data would reset the connection, and a reset
/// can destroy the answer before the client reads it.
pub const LINGER: Duration = Duration::from_secs(1);
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Most bytes of our own answers held unwritten at once (see `GuardedStream::fast_out`).
const MAX_FAST_OUT: usize = 16 * 1024;
/// What actix-http writes for `Expect: 100-continue`: not an answer to the request.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The deadlines of every connection (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    pub first_byte: Duration,
    pub head: Duration,
    pub request: Duration,
    pub write_stall: Duration,
}

impl Deadlines {
    /// Health-only slots (see `admission`) get a tighter first byte and head.
    fn for_grant(self, grant: Grant) -> Deadlines {
        match grant {
            Grant::Full => self,
            Grant::HealthOnly => Deadlines {
                first_byte: self.first_byte.min(Duration::from_secs(2)),
                head: self.head.min(Duration::from_secs(2)),
                ..self
            },
        }
    }
}

/// What the request handlers may know of their connection (actix `conn_data`).
#[derive(Debug, Clone)]
pub struct ConnHandle(Rc<ConnState>);

#[derive(Debug)]
struct ConnState {
    cut: Cell<bool>,
    health_only: bool,
    /// An admission this layer spent for the head it passed on last (see `early`).
    precharged: Cell<Option<Precharged>>,
}

impl ConnHandle {
    /// True once this layer answered or dropped the connection: whatever the handler
    /// answers now is never sent (so it is not counted or logged as an answer).
    pub fn is_cut(&self) -> bool {
        self.0.cut.get()
    }

    /// True on a health-only slot: the response must close the connection.
    pub fn health_only(&self) -> bool {
        self.0.health_only
    }

    /// Leaves an admission spent for the head about to be passed on, for the service
    /// that receives its request.
    pub fn set_precharged(&self, pre: Precharged) {
        self.0.precharged.set(Some(pre));
    }

    /// The admission spent for this request's head, if this layer spent one.
    pub fn take_precharged(&self) -> Option<Precharged> {
        self.0.precharged.take()
    }
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    FirstByte,
    /// A connection whose every answer this layer wrote sat idle for the keep-alive time.
    Idle,
    Head,
    Request,
    WriteStall,
    Reply,
    Linger,
}

enum Phase {
    /// Serving.
    Open,
    /// Writing our own answer; then `Lingering`.
    Replying {
        reply: RawReply,
        written: usize,
        since: Instant,
    },
    /// Our answer is out and our side shut: reading and dropping what still arrives
    /// until the client closes or `until`; then `Closed`.
    Lingering { until: Instant },
    /// Done: reads see the end of the stream, writes are discarded (actix-http's answer
    /// to a request this layer already answered).
    Closed,
    /// Dropped: reads and writes fail, so actix-http stops at once.
    Failed,
}

/// The socket of one client connection, with its framing and deadlines.
pub struct GuardedStream {
    io: TcpStream,
    framer: Framer,
    deadlines: Deadlines,
    grant: Grant,
    handle: ConnHandle,
    metrics: Arc<Metrics>,
    opened: Instant,
    phase: Phase,
    /// When the request still arriving began; `None` between requests.
    request_started: Option<Instant>,
    requests_seen: u64,
    /// Something was written since `request_started`: a response began, ours would mix.
    wrote_since_start: bool,
    /// Requests received in full since the last write (their answers are owed).
    owed: u32,
    /// `owed` when the current request began: non-zero means an earlier answer is still
    /// to come, so ours would be taken for it.
    owed_at_start: u32,
    stall_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    timer_at: Option<Instant>,
    /// The refusals answered here (`None`: none are).
    early: Option<EarlyRefusals>,
    peer: Option<SocketAddr>,
    /// Answers written here, in order, not yet all on the socket; `fast_written` of them
    /// are. Flushed before anything else is read or written.
    fast_out: Vec<u8>,
    fast_written: usize,
    /// Since when a connection with only answers of ours has been idle.
    idle_since: Option<Instant>,
    // Invariant: dropped with the stream, which frees the connection's slot.
    _permit: Permit,
}

impl GuardedStream {
    /// Wraps an accepted connection.
    pub fn new(
        io: TcpStream,
        permit: Permit,
        grant: Grant,
        deadlines: Deadlines,
        metrics: Arc<Metrics>,
        early: Option<EarlyRefusals>,
        peer: Option<SocketAddr>,
    ) -> GuardedStream {
        let now = Instant::now();
        let deadlines = deadlines.for_grant(grant);
        GuardedStream {
            io,
            framer: Framer::default(),
            deadlines,
            grant,
            handle: ConnHandle(Rc::new(ConnState {
                cut: Cell::new(false),
                health_only: grant == Grant::HealthOnly,
                precharged: Cell::new(None),
            })),
            metrics,
            opened: now,
            phase: Phase::Open,
            request_started: None,
            requests_seen: 0,
            wrote_since_start: false,
            owed: 0,
            owed_at_start: 0,
            stall_since: None,
            timer: Box::pin(tokio::time::sleep_until(now + deadlines.first_byte)),
            timer_at: None,
            early: early.filter(|_| grant == Grant::Full),
            peer,
            fast_out: Vec::new(),
            fast_written: 0,
            idle_since: None,
            _permit: permit,
        }
    }

    /// The handle actix-http puts in every request's `conn_data`.
    pub fn handle(&self) -> ConnHandle {
        self.handle.clone()
    }

    /// The earliest deadline in force now.
    fn next_deadline(&self) -> Option<(Instant, Expired)> {
        let mut next: Option<(Instant, Expired)> = None;
        let mut consider = |at: Instant, what: Expired| {
            if next.is_none_or(|(t, _)| at < t) {
                next = Some((at, what));
            }
        };
        match &self.phase {
            Phase::Replying { since, .. } => consider(*since + REPLY_GRACE, Expired::Reply),
            Phase::Lingering { until } => consider(*until, Expired::Linger),
            Phase::Closed | Phase::Failed => {}
            Phase::Open => {
                match self.request_started {
                    Some(start) => {
                        if !self.framer.head_done() {
                            consider(start + self.deadlines.head, Expired::Head);
                        }
                        consider(start + self.deadlines.request, Expired::Request);
                    }
                    None if self.requests_seen == 0 => {
                        consider(self.opened + self.deadlines.first_byte, Expired::FirstByte)
                    }
                    None => {
                        if let Some(since) = self.idle_since {
                            consider(since + self.deadlines.first_byte, Expired::Idle)
                        }
                    }
                }
                if let Some(since) = self.stall_since {
                    consider(since + self.deadlines.write_stall, Expired::WriteStall);
                }
            }
        }
        next
    }

    /// The deadline that has passed, if one has; otherwise arms the timer for the next
    /// one, so the connection's task wakes when it is due.
    fn poll_deadlines(&mut self, cx: &mut Context<'_>) -> Option<Expired> {
        let (at, what) = self.next_deadline()?;
        if at <= Instant::now() {
            return Some(what);
        }
        if self.timer_at != Some(at) {
            self.timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Some(what);
        }
        None
    }

    /// True when an answer written now would be read as this request's answer.
    fn can_answer(&self) -> bool {
        !self.wrote_since_start && self.owed_at_start == 0
    }

    fn expire(&mut self, what: Expired) {
        match what {
            Expired::FirstByte => {
                tracing::debug!("closing a connection that sent nothing");
                self.cut(Phase::Closed);
            }
            Expired::Idle => {
                tracing::debug!("closing an idle connection");
                self.cut(Phase::Closed);
            }
            Expired::Head | Expired::Request => {
                let limit = if what == Expired::Head {
                    self.deadlines.head
                } else {
                    self.deadlines.request
                };
                let rejection = Rejection {
                    status: 408,
                    code: "request_timeout",
                    message: format!(
                        "the request {} did not arrive within {} s",
                        if what == Expired::Head {
                            "head"
                        } else {
                            "body"
                        },
                        limit.as_secs()
                    ),
                    head: self
                        .framer
                        .last_head()
                        .cloned()
                        .filter(|_| self.framer.head_done()),
                };
                self.answer(rejection);
            }
            Expired::WriteStall => {
                tracing::info!(
                    seconds = self.deadlines.write_stall.as_secs(),
                    "closing a connection whose client stopped reading"
                );
                self.cut(Phase::Failed);
            }
            Expired::Reply => self.cut(Phase::Failed),
            Expired::Linger => self.phase = Phase::Closed,
        }
    }

    /// Answers the current request with `rejection` when that can be read as its answer,
    /// else closes; either way the connection ends.
    fn answer(&mut self, rejection: Rejection) {
        if !self.can_answer() {
            tracing::info!(
                status = rejection.status,
                reason = %rejection.message,
                "closing a connection mid-response"
            );
            self.cut(Phase::Failed);
            return;
        }
        let head = rejection.head.clone().unwrap_or(HeadInfo {
            method: "-".into(),
            path: "-".into(),
            request_id: None,
        });
        let retry_after = (rejection.status == 503).then_some(1);
        let mut reply = RawReply::new(
            rejection.status,
            rejection.code,
            &rejection.message,
            head.request_id.as_deref(),
            retry_after,
        );
        log_request(
            Some(&self.metrics),
            &head.method,
            &head.path,
            reply.status,
            self.request_started.unwrap_or(self.opened).into_std(),
            &reply.request_id,
        );
        // What the client already sent is read and dropped, so closing the socket does
        // not reset the connection before the answer is read. Straight on the socket:
        // tokio's `try_read` trusts its cached readiness, which says "not readable".
        let sock = socket2::SockRef::from(&self.io);
        let mut sink = [0u8; READ_CHUNK];
        while matches!(std::io::Read::read(&mut &*sock, &mut sink), Ok(n) if n > 0) {}
        if self.fast_written < self.fast_out.len() {
            // Our earlier answers, still partly unwritten, go first.
            let mut bytes = self.fast_out.split_off(self.fast_written);
            bytes.extend_from_slice(&reply.bytes);
            reply.bytes = bytes;
        }
        self.fast_out = Vec::new();
        self.fast_written = 0;
        self.handle.0.cut.set(true);
        self.phase = Phase::Replying {
            reply,
            written: 0,
            since: Instant::now(),
        };
    }

    fn cut(&mut self, phase: Phase) {
        self.handle.0.cut.set(true);
        self.phase = phase;
    }

    /// Writes our own answer; `Ready` once it is out (the phase is then `Closed`).
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(Expired::Reply) = self.poll_deadlines(cx) {
            self.cut(Phase::Failed);
            return Poll::Ready(());
        }
        let Phase::Replying { reply, written, .. } = &mut self.phase else {
            return Poll::Ready(());
        };
        while *written < reply.bytes.len() {
            match Pin::new(&mut self.io).poll_write(cx, &reply.bytes[*written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.phase = Phase::Failed;
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        // Send our FIN now; a pending shutdown completes when actix-http shuts down.
        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
        self.phase = Phase::Lingering {
            until: Instant::now() + LINGER,
        };
        Poll::Ready(())
    }

    /// Reads and drops what the client still sends; `Ready` once it closed or the linger
    /// time is over (the phase is then `Closed`).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut sink = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        loop {
            if !matches!(self.phase, Phase::Lingering { .. }) {
                return Poll::Ready(());
            }
            if let Some(what) = self.poll_deadlines(cx) {
                self.expire(what);
                continue;
            }
            let mut read = ReadBuf::uninit(&mut sink);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {}
                // The client closed (or the socket failed): done.
                Poll::Ready(_) => self.phase = Phase::Closed,
            }
        }
    }

    /// Writes the answers written here that are not on the socket yet; `Ready(Ok)` once
    /// none is left.
    fn poll_fast_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fast_out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while self.fast_written < self.fast_out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.fast_out[self.fast_written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.fast_written += n;
                    self.stall_since = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.stall_since.is_none() {
                        self.stall_since = Some(Instant::now());
                    }
                    return Poll::Pending;
                }
            }
        }
        self.fast_out.clear();
        self.fast_written = 0;
        if !self.framer.passed() {
            self.idle_since = Some(Instant::now());
        }
        Poll::Ready(Ok(()))
    }

    /// [`Self::poll_fast_out`] for a caller about to read or write: `None` once nothing
    /// of ours is left to write (go on), else what to return (with the stall deadline
    /// armed while the client does not read).
    fn flush_fast<T>(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<T>>> {
        match self.poll_fast_out(cx) {
            Poll::Ready(Ok(())) => None,
            Poll::Ready(Err(e)) => {
                self.cut(Phase::Failed);
                Some(Poll::Ready(Err(e)))
            }
            Poll::Pending => {
                if let Some(what) = self.poll_deadlines(cx) {
                    self.expire(what);
                }
                Some(Poll::Pending)
            }
        }
    }

    /// Book-keeping after the framer took a read.
    fn on_progress(&mut self, progress: Progress) {
        self.requests_seen += u64::from(progress.started);
        self.owed += progress.completed - progress.answered;
        if self.framer.passed() {
            self.idle_since = None;
        }
        if self.framer.in_request() {
            if progress.started > 0 || self.request_started.is_none() {
                self.request_started = Some(Instant::now());
                self.wrote_since_start = false;
                self.owed_at_start = self.owed;
            }
        } else {
            self.request_started = None;
        }
        if self.grant == Grant::HealthOnly {
            let probe = self
                .framer
                .last_head()
                .is_none_or(HeadInfo::is_health_probe);
            if self.requests_seen > 1 || !probe {
                self.framer.ready().clear();
                self.answer(Rejection {
                    status: 503,
                    code: "server_busy",
                    message: "the server is at its connection limit; only health probes are served, try again shortly".into(),
                    head: self.framer.last_head().cloned(),
                });
            }
        }
    }

    fn note_write(&mut self, written: &[u8]) {
        if written == CONTINUE {
            return;
        }
        self.owed = 0;
        if self.request_started.is_some() {
            self.wrote_since_start = true;
        }
    }

    /// One turn of `poll_read` while the phase is `Open`: hand over checked bytes, or
    /// read more. `None`: state changed, go round again.
    fn read_open(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Option<Poll<io::Result<()>>> {
        let ready = self.framer.ready();
        if !ready.is_empty() {
            let n = ready.len().min(buf.remaining());
            buf.put_slice(&ready[..n]);
            ready.advance(n);
            return Some(Poll::Ready(Ok(())));
        }
        if let Some(what) = self.poll_deadlines(cx) {
            self.expire(what);
            return None;
        }
        if let Some(poll) = self.flush_fast(cx) {
            // An expired stall deadline changed the phase: go round again.
            return matches!(self.phase, Phase::Open).then_some(poll);
        }
        let mut chunk = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        match Pin::new(&mut self.io).poll_read(cx, &mut read) {
            Poll::Pending => Some(Poll::Pending),
            Poll::Ready(Err(e)) => Some(Poll::Ready(Err(e))),
            // The client closed its side: actix-http sees the end too.
            Poll::Ready(Ok(())) if read.filled().is_empty() => Some(Poll::Ready(Ok(()))),
            Poll::Ready(Ok(())) => {
                let pushed = match &self.early {
                    Some(early) if !self.framer.passed() => {
                        let (peer, handle, out) = (self.peer, &self.handle, &mut self.fast_out);
                        // Bounded: past `MAX_FAST_OUT` unwritten bytes (a client that
                        // pipelines without reading), heads go to actix-http, whose
                        // pipelining limit then applies.
                        let mut answer = |head: &SimpleGet<'_>| {
                            out.len() < MAX_FAST_OUT && early.answer_simple(head, peer, handle, out)
                        };
                        self.framer.push_with(read.filled(), &mut answer)
                    }
                    _ => self.framer.push(read.filled()),
                };
                match pushed {
                    Ok(progress) => {
                        self.on_progress(progress);
                        if progress.answered > 0 && matches!(self.phase, Phase::Open) {
                            // Out at once: one write per read, as actix-http does.
                            if let Some(Poll::Ready(Err(e))) = self.flush_fast::<()>(cx) {
                                return Some(Poll::Ready(Err(e)));
                            }
                        }
                    }
                    Err(rejection) => {
                        self.framer.ready().clear();
                        self.answer(rejection);
                    }
                }
                None
            }
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Open => {
                    if let Some(poll) = this.read_open(cx, buf) {
                        return poll;
                    }
                }
                Phase::Replying { .. } => {
                    if this.poll_reply(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Phase::Lingering { .. } => {
                    if this.poll_linger(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Failed => return Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Open => {}
                Phase::Replying { .. } => {
                    if this.poll_reply(cx).is_pending() {
                        return Poll::Pending;
                    }
                    continue;
                }
                Phase::Lingering { .. } | Phase::Closed => return Poll::Ready(Ok(data.len())),
                Phase::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
            if let Some(what) = this.poll_deadlines(cx) {
                this.expire(what);
                continue;
            }
            if let Some(poll) = this.flush_fast(cx) {
                if matches!(this.phase, Phase::Open) {
                    return poll;
                }
                continue;
            }
            return match Pin::new(&mut this.io).poll_write(cx, data) {
                Poll::Ready(Ok(n)) => {
                    this.stall_since = None;
                    this.note_write(&data[..n]);
                    Poll::Ready(Ok(n))
                }
                Poll::Pending => {
                    if this.stall_since.is_none() {
                        this.stall_since = Some(Instant::now());
                        // Arm the stall deadline with this task's waker.
                        if let Some(what) = this.poll_deadlines(cx) {
                            this.expire(what);
                            continue;
                        }
                    }
                    Poll::Pending
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            };
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Open => {}
                Phase::Replying { .. } => {
                    if this.poll_reply(cx).is_pending() {
                        return Poll::Pending;
                    }
                    continue;
                }
                Phase::Lingering { .. } => {
                    // Drive the linger here too: actix-http may not be reading.
                    let _ = this.poll_linger(cx);
                    return Poll::Ready(Ok(()));
                }
                Phase::Closed => return Poll::Ready(Ok(())),
                Phase::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
            // actix-http flushes on every turn, also while it is not reading (a handler
            // that does not read its body): deadlines are checked here too.
            if let Some(what) = this.poll_deadlines(cx) {
                this.expire(what);
                continue;
            }
            if let Some(poll) = this.flush_fast(cx) {
                if matches!(this.phase, Phase::Open) {
                    return poll;
                }
                continue;
            }
            return Pin::new(&mut this.io).poll_flush(cx);
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.phase, Phase::Open) {
            // Our own answers are out before the end.
            if let Some(poll) = this.flush_fast(cx) {
                if matches!(this.phase, Phase::Open) {
                    return poll;
                }
            }
        }
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            // Already shut down after our own answer, or the peer is gone: nothing to do.
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            other => other,
        }
    }
}
