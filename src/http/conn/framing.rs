//! Where each HTTP/1.1 request on a connection begins and ends, read from the raw bytes
//! before actix-http sees them. Pure: bytes in, bytes out, no IO and no clock.
//!
//! A request head is held back until it is complete, then checked with the rules of
//! actix-http's own decoder (same `httparse` call, same header rules) and limits that are
//! never looser than its ones. So actix-http only ever receives heads it accepts, and
//! every refusal of a head is ours to answer as SPEC JSON ([`Rejection`]), instead of the
//! empty 400/431 actix-http would write itself. Body bytes pass through as they come;
//! the framer follows `Content-Length` or the chunked encoding (the same state machine as
//! actix-http's) to know when the request has arrived in full, which is what the
//! connection's deadlines are measured against.

use actix_web::http::{Method, Uri};
use bytes::BytesMut;

/// Most header fields in one request: actix-http's own limit (`MAX_HEADERS`), so a head
/// we pass is never one it refuses.
pub const MAX_HEADERS: usize = 96;
/// Longest request line (method, target, version): a longer target is a 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head in bytes (actix-http allows 128 KiB; we are stricter).
pub const MAX_HEAD: usize = 32 * 1024;
/// How much of a request target is kept for logs and replies.
const LOGGED_PATH: usize = 200;

/// What is known of a request head, for log lines and for answering it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeadInfo {
    pub method: String,
    /// The request target, cut to a loggable length.
    pub path: String,
    /// The client's `X-Request-Id`, as sent (checked before it is echoed).
    pub request_id: Option<String>,
}

impl HeadInfo {
    /// True for `GET`/`HEAD` of a health endpoint (`/livez`, `/readyz`, `/api/health`).
    pub fn is_health_probe(&self) -> bool {
        let path = self.path.split('?').next().unwrap_or("");
        (self.method == "GET" || self.method == "HEAD")
            && matches!(path, "/livez" | "/readyz" | "/api/health")
    }
}

/// A request refused at the protocol level, to be answered with this status and code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The head, when it could be read far enough.
    pub head: Option<HeadInfo>,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            status,
            code,
            message: message.into(),
            head: None,
        }
    }

    fn bad(message: impl Into<String>) -> Rejection {
        Rejection::new(400, "bad_request", message)
    }
}

/// What one [`Framer::push`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Requests whose first byte arrived in this push.
    pub started: u32,
    /// Requests that arrived completely in this push (`answered` included).
    pub completed: u32,
    /// Of `completed`, those the caller answered itself ([`Framer::push_with`]): never
    /// passed on.
    pub answered: u32,
}

/// A complete request head that the connection layer may answer itself instead of
/// passing it on ([`Framer::push_with`]): `GET` in HTTP/1.1, no body (no
/// `Transfer-Encoding`, no `Content-Length` but `0`), and none of the headers that would
/// change how actix-http answers or who answers it (`Connection`, `Expect`, `Upgrade`)
/// or how the request is charged (`Origin`, `Authorization`); and nothing of the
/// connection has been passed on yet, so actix-http owes no answer that ours could
/// overtake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleGet<'a> {
    /// The request target's path (before any `?`), exactly as sent.
    pub path: &'a str,
    /// The whole request target, cut to a loggable length.
    pub target: &'a str,
    /// The client's `X-Request-Id`, as sent.
    pub request_id: Option<&'a str>,
}

/// Where the reader is in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between requests: no byte of the next one yet.
    Idle,
    /// Inside a head (held back in `held`).
    Head,
    /// `Content-Length` body: bytes still to come.
    Length(u64),
    /// Chunked body.
    Chunked(Chunk),
    /// A body that lasts until the client closes (`CONNECT`, a WebSocket upgrade).
    UntilEof,
}

/// The chunked decoder of actix-http (`h1/chunked.rs`), state for state, so both agree
/// on where a chunked body ends and on what is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    SizeFirst,
    SizeRest(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Body(u64),
    BodyCr,
    BodyLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// Reads request framing from a connection's bytes; see the module docs.
#[derive(Debug)]
pub struct Framer {
    state: State,
    // Invariant: empty unless `state` is `Head`.
    held: Vec<u8>,
    /// How far `held` has been searched for the blank line that ends a head.
    scanned: usize,
    /// Checked bytes, in order, for actix-http.
    ready: BytesMut,
    last_head: Option<HeadInfo>,
    /// Something of this connection has been passed on (a head, body bytes).
    passed: bool,
}

impl Default for Framer {
    fn default() -> Framer {
        Framer {
            state: State::Idle,
            held: Vec::new(),
            scanned: 0,
            ready: BytesMut::new(),
            last_head: None,
            passed: false,
        }
    }
}

impl Framer {
    /// Takes bytes read from the client. Checked bytes are appended to [`Framer::ready`];
    /// a head that breaks a rule is a [`Rejection`] (the connection must then be closed:
    /// nothing after it can be framed).
    pub fn push(&mut self, data: &[u8]) -> Result<Progress, Rejection> {
        self.push_with(data, &mut |_| false)
    }

    /// [`Framer::push`], offering every [`SimpleGet`] head to `answer` first, while
    /// nothing of the connection has been passed on: `true` means the caller answered
    /// it, and its bytes are dropped instead of passed on (see [`Progress::answered`]).
    pub fn push_with(
        &mut self,
        mut data: &[u8],
        answer: &mut dyn FnMut(&SimpleGet<'_>) -> bool,
    ) -> Result<Progress, Rejection> {
        let mut progress = Progress::default();
        while !data.is_empty() {
            match self.state {
                State::Idle => {
                    progress.started += 1;
                    self.state = State::Head;
                }
                State::Head => {
                    let (taken, answered) = self.push_head(data, answer).inspect_err(|_| {
                        self.held.clear();
                    })?;
                    data = &data[taken..];
                    if self.state == State::Idle {
                        progress.completed += 1;
                        progress.answered += u32::from(answered);
                    }
                }
                State::Length(remaining) => {
                    let n = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(data.len());
                    self.ready.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        progress.completed += 1;
                        State::Idle
                    } else {
                        State::Length(left)
                    };
                }
                State::Chunked(chunk) => {
                    let (taken, next) = step_chunked(chunk, data)?;
                    self.ready.extend_from_slice(&data[..taken]);
                    data = &data[taken..];
                    self.state = match next {
                        Some(chunk) => State::Chunked(chunk),
                        None => {
                            progress.completed += 1;
                            State::Idle
                        }
                    };
                }
                State::UntilEof => {
                    self.ready.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(progress)
    }

    /// Checked bytes waiting to be handed to actix-http.
    pub fn ready(&mut self) -> &mut BytesMut {
        &mut self.ready
    }

    /// True while a request has begun and not yet arrived in full.
    pub fn in_request(&self) -> bool {
        self.state != State::Idle
    }

    /// True once the current request's head has been checked and passed on.
    pub fn head_done(&self) -> bool {
        !matches!(self.state, State::Idle | State::Head)
    }

    /// True once something of the connection has been passed on: from then on no head
    /// is offered to [`Framer::push_with`]'s caller.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// The most recent head that was read far enough to say what it asks for.
    pub fn last_head(&self) -> Option<&HeadInfo> {
        self.last_head.as_ref()
    }

    /// Holds head bytes until the blank line; returns how many bytes of `data` it took,
    /// and whether `answer` took the head (see [`Framer::push_with`]).
    fn push_head(
        &mut self,
        data: &[u8],
        answer: &mut dyn FnMut(&SimpleGet<'_>) -> bool,
    ) -> Result<(usize, bool), Rejection> {
        let start = self.held.len();
        // Take at most what could still belong to an allowed head, plus the overflow
        // byte that proves the head too large.
        let room = MAX_HEAD + 1 - start;
        let chunk = &data[..data.len().min(room)];
        self.held.extend_from_slice(chunk);
        loop {
            let Some(end) = find_head_end(&self.held, self.scanned) else {
                self.scanned = self.held.len().saturating_sub(2);
                self.check_partial()?;
                return Ok((chunk.len(), false));
            };
            match self.parse_head(end)? {
                Some((body, simple)) => {
                    // The head ends inside this chunk: what follows is the body (or the
                    // next request), not head bytes.
                    let head_len = end;
                    let taken = head_len - start;
                    let answered = simple && !self.passed && self.offer(answer);
                    if !answered {
                        self.ready.extend_from_slice(&self.held[..head_len]);
                        self.passed = true;
                    }
                    self.held.clear();
                    self.scanned = 0;
                    self.state = body;
                    return Ok((taken, answered));
                }
                // A blank line before the request line (leading empty lines, which
                // httparse skips): keep looking.
                None => self.scanned = end,
            }
        }
    }

    /// Offers the last head, a [`SimpleGet`], to `answer`.
    fn offer(&self, answer: &mut dyn FnMut(&SimpleGet<'_>) -> bool) -> bool {
        let Some(head) = &self.last_head else {
            return false;
        };
        answer(&SimpleGet {
            path: head.path.split('?').next().unwrap_or(""),
            target: &head.path,
            request_id: head.request_id.as_deref(),
        })
    }

    /// Limits that can be enforced before the head is complete.
    fn check_partial(&self) -> Result<(), Rejection> {
        let line_start = self
            .held
            .iter()
            .position(|b| *b != b'\r' && *b != b'\n')
            .unwrap_or(self.held.len());
        let line = &self.held[line_start..];
        let line_len = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
        if line_len > MAX_REQUEST_LINE {
            let mut r = Rejection::new(
                414,
                "uri_too_long",
                format!("the request line is longer than {MAX_REQUEST_LINE} bytes"),
            );
            r.head = Some(head_from_line(line));
            return Err(r);
        }
        if self.held.len() > MAX_HEAD {
            let mut r = Rejection::new(
                431,
                "headers_too_large",
                format!("the request head is larger than {MAX_HEAD} bytes"),
            );
            r.head = Some(head_from_line(line));
            return Err(r);
        }
        Ok(())
    }

    /// Parses `held[..end]` as a head: the body that follows it, and whether it is a
    /// [`SimpleGet`] (not counting whether something was passed on already). `Ok(None)`:
    /// not a head yet (only empty lines).
    ///
    /// A head that passes allocates nothing here: its method, target and request id are
    /// copied into the buffers of the last head, which every head of the connection
    /// reuses (BENCHMARKS.md, issue 14, hR). Only a refusal builds a [`HeadInfo`] of its
    /// own.
    fn parse_head(&mut self, end: usize) -> Result<Option<(State, bool)>, Rejection> {
        // Uninitialised slots: httparse writes the ones it fills (filling 96 empty
        // headers first was ~400 instructions a head, BENCHMARKS.md issue 14).
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let held = &self.held[..end];
        let parsed = req.parse_with_uninit_headers(held, &mut headers);
        let method = req.method.unwrap_or("");
        let path = req.path.unwrap_or("");
        let refused = |r: Rejection, request_id: Option<&str>| {
            let mut info = HeadInfo::default();
            fill_head(&mut info, method, path, request_id);
            // httparse gives no headers for a head it refused; the id is looked up raw.
            info.request_id = info
                .request_id
                .or_else(|| raw_header(held, b"x-request-id"));
            Rejection {
                head: Some(info),
                ..r
            }
        };
        match parsed {
            Ok(httparse::Status::Partial) => {
                self.check_partial()?;
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refused(
                    Rejection::new(
                        431,
                        "headers_too_large",
                        format!("a request may have at most {MAX_HEADERS} header fields"),
                    ),
                    None,
                ))
            }
            Err(e) => {
                return Err(refused(
                    Rejection::bad(format!("malformed request head: {e}")),
                    None,
                ))
            }
            Ok(httparse::Status::Complete(_)) => {}
        }
        let request_id = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("x-request-id"))
            .and_then(|h| std::str::from_utf8(h.value).ok());
        fill_head(
            self.last_head.get_or_insert_with(HeadInfo::default),
            method,
            path,
            request_id,
        );
        if Method::from_bytes(method.as_bytes()).is_err() {
            return Err(refused(Rejection::bad("invalid method"), request_id));
        }
        if !is_uri(path) {
            return Err(refused(
                Rejection::bad("the request target is not a valid URI"),
                request_id,
            ));
        }
        let http11 = req.version == Some(1);
        let body = body_of(method, http11, req.headers)
            .map_err(|message| refused(Rejection::bad(message), request_id))?;
        let simple = http11
            && method == "GET"
            && body == State::Idle
            && !req.headers.iter().any(|h| {
                [
                    "connection",
                    "expect",
                    "upgrade",
                    "transfer-encoding",
                    "origin",
                    "authorization",
                ]
                .iter()
                .any(|name| h.name.eq_ignore_ascii_case(name))
            });
        Ok(Some((body, simple)))
    }
}

/// Overwrites `info` with a head's method and target (cut to loggable lengths) and
/// request id, reusing its buffers.
fn fill_head(info: &mut HeadInfo, method: &str, path: &str, request_id: Option<&str>) {
    info.method.clear();
    info.method.push_str(first_chars(method, 16));
    info.path.clear();
    info.path.push_str(first_chars(path, LOGGED_PATH));
    match (request_id, &mut info.request_id) {
        (Some(sent), Some(id)) => {
            id.clear();
            id.push_str(sent);
        }
        (Some(sent), none) => *none = Some(sent.to_string()),
        (None, id) => *id = None,
    }
}

/// True when actix-http's `Uri::try_from` accepts `target`. Without asking it for the
/// usual target (a path and query of letters, digits and `/?&=,.-_~%` only, which it
/// always accepts): it copies the target into a fresh allocation to parse it (~900
/// instructions a request, BENCHMARKS.md issue 14).
fn is_uri(target: &str) -> bool {
    let plain = target.starts_with('/')
        && target.len() <= MAX_REQUEST_LINE
        && target.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'/' | b'?' | b'&' | b'=' | b',' | b'.' | b'-' | b'_' | b'~' | b'%'
                )
        });
    plain || Uri::try_from(target).is_ok()
}

/// The first `n` characters of `s`.
fn first_chars(s: &str, n: usize) -> &str {
    if s.len() <= n {
        // No more bytes than `n`, so no more characters.
        return s;
    }
    match s.char_indices().nth(n) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// The value of header `name` (lowercase) in a raw head, if a line carries it as text.
fn raw_header(head: &[u8], name: &[u8]) -> Option<String> {
    head.split(|b| *b == b'\n').find_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(name) {
            return None;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).ok()?;
        Some(value.trim().to_string())
    })
}

/// The start of a request line as a head, for a rejection before the head is complete.
fn head_from_line(line: &[u8]) -> HeadInfo {
    let line = String::from_utf8_lossy(&line[..line.len().min(LOGGED_PATH + 32)]);
    let mut parts = line.split(' ');
    HeadInfo {
        method: parts.next().unwrap_or("").chars().take(16).collect(),
        path: parts
            .next()
            .unwrap_or("")
            .chars()
            .take(LOGGED_PATH)
            .collect(),
        request_id: None,
    }
}

/// The offset just past the first blank line (`\n\n` or `\n\r\n`) at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(newline) = next_newline(buf, i) {
        match buf.get(newline + 1) {
            Some(b'\n') => return Some(newline + 2),
            Some(b'\r') if buf.get(newline + 2) == Some(&b'\n') => return Some(newline + 3),
            _ => {}
        }
        i = newline + 1;
    }
    None
}

/// The offset of the first `\n` at or after `from`. Eight bytes at a time to the word
/// that holds one (a head is a few lines of tens of bytes: byte by byte was ~5
/// instructions a byte, BENCHMARKS.md issue 14), then byte by byte inside it.
fn next_newline(buf: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let mut at = from;
    while let Some(word) = buf
        .get(at..at + 8)
        .and_then(|chunk| <[u8; 8]>::try_from(chunk).ok())
    {
        // A byte of `x` is zero where `word` has a `\n`; the expression is non-zero
        // exactly when some byte of `x` is zero.
        let x = u64::from_ne_bytes(word) ^ NEWLINES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        at += 8;
    }
    buf.get(at..)?
        .iter()
        .position(|b| *b == b'\n')
        .map(|offset| at + offset)
}

/// The body that follows a head, by actix-http's rules (`h1/decoder.rs`): the same
/// requests are refused, with a message saying why.
fn body_of(method: &str, http11: bool, headers: &[httparse::Header<'_>]) -> Result<State, String> {
    let mut content_length: Option<u64> = None;
    let mut seen_te = false;
    let mut seen_host = false;
    let mut chunked = false;
    let mut websocket = false;
    let mut te_value: Option<&str> = None;
    for h in headers {
        let value = std::str::from_utf8(h.value).map_err(|_| "a header value is not text")?;
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err("more than one Content-Length".into());
            }
            let v = value.trim();
            if v.starts_with('+') {
                return Err(format!("invalid Content-Length {v:?}"));
            }
            content_length = Some(
                v.parse::<u64>()
                    .map_err(|_| format!("invalid Content-Length {v:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if seen_te {
                return Err("more than one Transfer-Encoding".into());
            }
            te_value = Some(value);
            if http11 {
                seen_te = true;
                let v = value.trim();
                if v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else if !v.eq_ignore_ascii_case("identity") {
                    return Err(format!("unsupported Transfer-Encoding {v:?}"));
                }
            }
        } else if name.eq_ignore_ascii_case("host") {
            if seen_host {
                return Err("more than one Host".into());
            }
            seen_host = true;
        } else if name.eq_ignore_ascii_case("upgrade")
            && value.trim().eq_ignore_ascii_case("websocket")
        {
            websocket = true;
        }
    }
    if http11 && !seen_host {
        return Err("an HTTP/1.1 request needs a Host header".into());
    }
    if let Some(te) = te_value {
        if !http11 {
            return Err("Transfer-Encoding is not allowed in HTTP/1.0".into());
        }
        let last_is_chunked = te
            .rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        if !last_is_chunked {
            return Err("a request's Transfer-Encoding must end in chunked".into());
        }
        if content_length.is_some() {
            return Err("both Content-Length and Transfer-Encoding".into());
        }
    }
    let has_length = chunked || websocket || content_length.is_some();
    if !http11 && method == "POST" && !has_length {
        return Err("an HTTP/1.0 POST needs a Content-Length".into());
    }
    Ok(if chunked {
        State::Chunked(Chunk::SizeFirst)
    } else if websocket {
        State::UntilEof
    } else {
        match content_length {
            Some(0) | None if method == "CONNECT" => State::UntilEof,
            Some(0) | None => State::Idle,
            Some(n) => State::Length(n),
        }
    })
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Runs the chunked decoder over `data`: (bytes taken, next state or `None` at the end).
fn step_chunked(mut chunk: Chunk, data: &[u8]) -> Result<(usize, Option<Chunk>), Rejection> {
    let malformed = |what: &str| Rejection::bad(format!("malformed chunked body: {what}"));
    let mut i = 0;
    while i < data.len() {
        if let Chunk::Body(rem) = chunk {
            let n = usize::try_from(rem)
                .unwrap_or(usize::MAX)
                .min(data.len() - i);
            i += n;
            let left = rem - n as u64;
            chunk = if left == 0 {
                Chunk::BodyCr
            } else {
                Chunk::Body(left)
            };
            continue;
        }
        let b = data[i];
        i += 1;
        chunk = match chunk {
            Chunk::SizeFirst => Chunk::SizeRest(hex(b).ok_or_else(|| malformed("chunk size"))?),
            Chunk::SizeRest(size) => match b {
                b'\t' | b' ' => Chunk::SizeLws(size),
                b';' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                _ => {
                    let digit = hex(b).ok_or_else(|| malformed("chunk size"))?;
                    Chunk::SizeRest(
                        size.checked_mul(16)
                            .and_then(|s| s.checked_add(digit))
                            .ok_or_else(|| malformed("chunk size too big"))?,
                    )
                }
            },
            Chunk::SizeLws(size) => match b {
                b'\t' | b' ' => Chunk::SizeLws(size),
                b';' => Chunk::Extension(size),
                b'\r' => Chunk::SizeLf(size),
                _ => return Err(malformed("chunk size")),
            },
            Chunk::Extension(size) => match b {
                b'\r' => Chunk::SizeLf(size),
                0x00..=0x08 | 0x0a..=0x1f | 0x7f => return Err(malformed("chunk extension")),
                _ => Chunk::Extension(size),
            },
            Chunk::SizeLf(size) => match b {
                b'\n' if size > 0 => Chunk::Body(size),
                b'\n' => Chunk::EndCr,
                _ => return Err(malformed("chunk size line")),
            },
            Chunk::Body(_) => unreachable!("handled above"),
            Chunk::BodyCr => match b {
                b'\r' => Chunk::BodyLf,
                _ => return Err(malformed("chunk data longer than its size")),
            },
            Chunk::BodyLf => match b {
                b'\n' => Chunk::SizeFirst,
                _ => return Err(malformed("chunk data longer than its size")),
            },
            Chunk::Trailer => match b {
                b'\r' => Chunk::TrailerLf,
                _ => Chunk::Trailer,
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::EndCr,
                _ => return Err(malformed("trailer")),
            },
            Chunk::EndCr => match b {
                b'\r' => Chunk::EndLf,
                _ => Chunk::Trailer,
            },
            Chunk::EndLf => match b {
                b'\n' => return Ok((i, None)),
                _ => return Err(malformed("end of body")),
            },
        };
    }
    Ok((i, Some(chunk)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `data` in pieces of `step` bytes; returns what was passed on, or the error.
    fn run(data: &[u8], step: usize) -> (Result<Progress, Rejection>, Vec<u8>, Framer) {
        let mut f = Framer::default();
        let mut total = Progress::default();
        for piece in data.chunks(step.max(1)) {
            match f.push(piece) {
                Ok(p) => {
                    total.started += p.started;
                    total.completed += p.completed;
                }
                Err(e) => return (Err(e), f.ready().to_vec(), f),
            }
        }
        let out = f.ready().to_vec();
        (Ok(total), out, f)
    }

    const GET: &[u8] = b"GET /api/health HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn a_head_is_held_back_until_complete_then_passed_on_whole() {
        let mut f = Framer::default();
        let p = f.push(&GET[..10]).unwrap();
        assert_eq!(p.started, 1);
        assert!(f.ready().is_empty());
        assert!(f.in_request() && !f.head_done());
        let p = f.push(&GET[10..]).unwrap();
        assert_eq!(p.completed, 1);
        assert_eq!(f.ready().as_ref(), GET);
        assert!(!f.in_request());
        assert_eq!(f.last_head().unwrap().path, "/api/health");
        assert!(f.last_head().unwrap().is_health_probe());
    }

    #[test]
    fn a_content_length_body_ends_the_request_at_its_length() {
        let req = b"POST /api/posts HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let (p, out, f) = run(req, 3);
        assert_eq!(p.unwrap().completed, 1);
        assert_eq!(out, req);
        assert!(!f.in_request());
        // Four bytes of a hundred: the request is still arriving.
        let (p, _, f) = run(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabcd",
            7,
        );
        assert_eq!(p.unwrap().completed, 0);
        assert!(f.in_request() && f.head_done());
    }

    #[test]
    fn pipelined_requests_are_framed_one_after_the_other() {
        let two = [
            GET,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
            GET,
        ]
        .concat();
        for step in [1, 5, 1000] {
            let (p, out, f) = run(&two, step);
            let p = p.unwrap();
            assert_eq!((p.started, p.completed), (3, 3), "step {step}");
            assert_eq!(out, two);
            assert!(!f.in_request());
        }
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let req = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        for step in [1, 2, 9, 1000] {
            let (p, out, f) = run(req, step);
            assert_eq!(p.unwrap().completed, 1, "step {step}");
            assert_eq!(out, req);
            assert!(!f.in_request());
        }
        let (p, _, f) = run(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            4,
        );
        assert_eq!(p.unwrap().completed, 0);
        assert!(f.in_request());
    }

    #[test]
    fn a_malformed_chunked_body_is_a_400() {
        for body in ["z\r\n", "5\r\nhelloX", "5\nhello\r\n", "1\r\na\r\n0\r\n\rX"] {
            let req =
                format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
            let (res, _, _) = run(req.as_bytes(), 3);
            assert_eq!(res.unwrap_err().status, 400, "{body:?}");
        }
    }

    #[test]
    fn heads_actix_would_refuse_are_rejections_with_a_reason() {
        let cases: &[(&[u8], u16)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
            (b"POST / HTTP/1.0\r\n\r\n", 400),
            (b"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        ];
        for (req, status) in cases {
            let (res, out, _) = run(req, 1000);
            let err = res.expect_err(&String::from_utf8_lossy(req));
            assert_eq!(err.status, *status, "{}", String::from_utf8_lossy(req));
            assert!(out.is_empty(), "nothing of a refused head is passed on");
        }
    }

    #[test]
    fn too_many_headers_is_a_431_and_the_limit_itself_passes() {
        let head = |n: usize| {
            let mut h = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
            for i in 1..n {
                h.push_str(&format!("X-H{i}: v\r\n"));
            }
            h.push_str("\r\n");
            h
        };
        assert!(run(head(MAX_HEADERS).as_bytes(), 1000).0.is_ok());
        let err = run(head(100).as_bytes(), 1000).0.unwrap_err();
        assert_eq!((err.status, err.code), (431, "headers_too_large"));
    }

    #[test]
    fn a_long_target_is_a_414_and_a_large_head_a_431_before_they_complete() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100 * 1024));
        let (res, _, f) = run(long.as_bytes(), 4096);
        let err = res.unwrap_err();
        assert_eq!(err.status, 414);
        assert_eq!(err.head.unwrap().method, "GET");
        drop(f);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n",
            "b".repeat(MAX_HEAD)
        );
        assert_eq!(run(big.as_bytes(), 4096).0.unwrap_err().status, 431);
    }

    #[test]
    fn leading_empty_lines_are_part_of_the_next_request() {
        let req = [b"\r\n\r\n".as_slice(), GET].concat();
        let (p, out, f) = run(&req, 1);
        assert_eq!(p.unwrap().completed, 1);
        assert_eq!(out, req);
        assert!(!f.in_request());
    }

    #[test]
    fn connect_and_websocket_bodies_last_until_the_client_closes() {
        let (_, _, f) = run(b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\n\r\nxyz", 1000);
        assert!(f.in_request() && f.head_done());
        let (_, _, f) = run(
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            1000,
        );
        assert!(f.in_request());
    }

    #[test]
    fn the_last_head_is_cut_to_loggable_lengths_and_forgets_an_earlier_id() {
        let long = format!("/{}", "a".repeat(300));
        let req = format!(
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: first\r\n\r\nGET {long} HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let (p, _, f) = run(req.as_bytes(), 1000);
        assert_eq!(p.unwrap().completed, 2);
        let head = f.last_head().unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path.chars().count(), LOGGED_PATH);
        assert!(long.starts_with(&head.path));
        assert_eq!(head.request_id, None, "the second head sent no id");
        assert_eq!(first_chars("abc", 5), "abc");
        assert_eq!(first_chars("aéc", 2), "aé");
    }

    #[test]
    fn the_client_request_id_is_read_from_the_head() {
        let (_, _, f) = run(
            b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-1\r\n\r\n",
            1000,
        );
        assert_eq!(f.last_head().unwrap().request_id.as_deref(), Some("abc-1"));
        // Also from a head that is refused.
        let (res, _, _) = run(
            b"GET /x HTTP/1.1\r\nX-Request-Id: abc-2\r\nBad\x01: x\r\n\r\n",
            1000,
        );
        let err = res.unwrap_err();
        assert_eq!(err.head.unwrap().request_id.as_deref(), Some("abc-2"));
    }

    /// Feeds `data` in pieces of `step` bytes through `push_with`, answering every
    /// offered head: the targets offered, what was passed on, the totals.
    fn run_answering(data: &[u8], step: usize) -> (Vec<String>, Vec<u8>, Progress) {
        let mut f = Framer::default();
        let mut offered = Vec::new();
        let mut total = Progress::default();
        for piece in data.chunks(step.max(1)) {
            let mut answer = |head: &SimpleGet<'_>| {
                offered.push(format!("{} {:?}", head.target, head.request_id));
                assert_eq!(head.path, head.target.split('?').next().unwrap());
                true
            };
            let p = f.push_with(piece, &mut answer).unwrap();
            total.started += p.started;
            total.completed += p.completed;
            total.answered += p.answered;
        }
        (offered, f.ready().to_vec(), total)
    }

    #[test]
    fn simple_gets_are_offered_until_something_is_passed_on() {
        let a = b"GET /api/feed?x=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: r1\r\n\r\n".as_slice();
        let b = b"GET /api/feed HTTP/1.1\r\nHost: a\r\n\r\n".as_slice();
        let passed = b"GET /api/feed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".as_slice();
        for step in [1, 7, 1000] {
            // Two simple heads, then one that is passed on, then a simple one again:
            // the last is passed on too (an answer of ours could overtake actix-http's).
            let stream = [a, b, passed, b].concat();
            let (offered, out, p) = run_answering(&stream, step);
            assert_eq!(
                offered,
                ["/api/feed?x=1 Some(\"r1\")", "/api/feed None"],
                "step {step}"
            );
            assert_eq!(out, [passed, b].concat(), "step {step}");
            assert_eq!((p.started, p.completed, p.answered), (4, 4, 2));
        }
    }

    /// The byte-by-byte search [`find_head_end`] replaced.
    fn find_head_end_bytewise(buf: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        while i < buf.len() {
            if buf[i] == b'\n' {
                match buf.get(i + 1) {
                    Some(b'\n') => return Some(i + 2),
                    Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
                    _ => {}
                }
            }
            i += 1;
        }
        None
    }

    #[test]
    fn the_end_of_a_head_is_found_where_a_byte_by_byte_search_finds_it() {
        // Every text of up to 11 bytes over `a`, `\r`, `\n` (so every placement of
        // them around and across an eight-byte word), from every offset.
        let alphabet = [b'a', b'\r', b'\n'];
        let mut buf = Vec::new();
        for len in 0..=11u32 {
            for mut n in 0..3usize.pow(len) {
                buf.clear();
                for _ in 0..len {
                    buf.push(alphabet[n % 3]);
                    n /= 3;
                }
                for from in 0..=buf.len() + 1 {
                    assert_eq!(
                        find_head_end(&buf, from),
                        find_head_end_bytewise(&buf, from),
                        "{buf:?} from {from}"
                    );
                }
            }
        }
        let head = b"GET /api/feed?page=2 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        for from in 0..head.len() {
            assert_eq!(
                find_head_end(head, from),
                find_head_end_bytewise(head, from)
            );
        }
        assert_eq!(find_head_end(head, 0), Some(55));
    }

    #[test]
    fn a_target_is_a_uri_exactly_when_actix_http_says_so() {
        let mut targets: Vec<String> = vec![
            "/".into(),
            "*".into(),
            "".into(),
            "/api/feed?page_size=20&leaders=1,2,3&page=7".into(),
            "/api/feed?before=1735689600000-42&kinds=post%2Cquote".into(),
            "http://example.com/a?b".into(),
            "example.com:80".into(),
            format!("/{}", "a".repeat(MAX_REQUEST_LINE)),
            "/caf\u{e9}".into(),
        ];
        for c in (0u8..=127).map(char::from).chain(['\u{e9}', '\u{1F600}']) {
            for template in ["/{c}", "/p{c}q", "/p?{c}", "/p?q{c}r", "{c}/p", "/p#{c}"] {
                targets.push(template.replace("{c}", &c.to_string()));
            }
        }
        for target in &targets {
            assert_eq!(
                is_uri(target),
                Uri::try_from(target.as_str()).is_ok(),
                "{target:?}"
            );
        }
    }

    #[test]
    fn the_first_characters_of_a_text_are_cut_at_a_character() {
        assert_eq!(first_chars("abc", 3), "abc");
        assert_eq!(first_chars("abcd", 3), "abc");
        assert_eq!(first_chars("\u{e9}\u{e9}", 3), "\u{e9}\u{e9}");
        assert_eq!(
            first_chars("\u{e9}\u{e9}\u{e9}\u{e9}", 3),
            "\u{e9}\u{e9}\u{e9}"
        );
        assert_eq!(first_chars("", 0), "");
    }

    #[test]
    fn heads_that_are_not_simple_gets_are_never_offered() {
        let cases: &[&[u8]] = &[
            b"HEAD /api/feed HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /api/feed HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            b"GET /api/feed HTTP/1.0\r\n\r\n",
            b"GET /api/feed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nconnection: keep-alive\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nOrigin: http://x\r\n\r\n",
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\n\r\n",
            b"get /api/feed HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for req in cases {
            let (offered, out, p) = run_answering(req, 1000);
            let what = String::from_utf8_lossy(req);
            assert!(offered.is_empty(), "{what}");
            assert_eq!(out, *req, "passed on whole: {what}");
            assert_eq!(p.answered, 0, "{what}");
        }
        // A `Content-Length: 0` GET has no body: it is simple.
        let (offered, out, _) = run_answering(
            b"GET /api/feed HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            1000,
        );
        assert_eq!(offered.len(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn a_head_the_caller_declines_is_passed_on_and_ends_the_offers() {
        let b = b"GET /api/feed HTTP/1.1\r\nHost: a\r\n\r\n".as_slice();
        let mut f = Framer::default();
        let mut offers = 0;
        let stream = [b, b].concat();
        let p = f
            .push_with(&stream, &mut |_| {
                offers += 1;
                false
            })
            .unwrap();
        assert_eq!(offers, 1, "nothing is offered once a head was passed on");
        assert_eq!((p.completed, p.answered), (2, 0));
        assert!(f.passed());
        assert_eq!(f.ready().as_ref(), stream.as_slice());
    }

    proptest! {
        /// However the bytes are split, the same requests are framed and every byte is
        /// passed on in order.
        #[test]
        fn framing_does_not_depend_on_how_bytes_are_split(
            bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
            chunked in any::<bool>(),
            step in 1usize..64,
        ) {
            let mut stream = Vec::new();
            for body in &bodies {
                if chunked {
                    stream.extend_from_slice(b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
                    for piece in body.chunks(7) {
                        stream.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        stream.extend_from_slice(piece);
                        stream.extend_from_slice(b"\r\n");
                    }
                    stream.extend_from_slice(b"0\r\n\r\n");
                } else {
                    stream.extend_from_slice(format!("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
                    stream.extend_from_slice(body);
                }
            }
            let (p, out, f) = run(&stream, step);
            let p = p.unwrap();
            prop_assert_eq!(p.completed as usize, bodies.len());
            prop_assert_eq!(out, stream);
            prop_assert!(!f.in_request());
        }
    }
}
