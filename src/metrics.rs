//! Request and store metrics, kept in Prometheus types so `/metrics` (text format) and
//! `/api/metrics` (JSON) read the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label set for responses: the status class (`2xx`, `4xx`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusClass {
    pub class: String,
}

/// Label set for notification deliveries: `delivered`, `failed` (a try), `paused`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyResult {
    pub result: String,
}

/// Label set for the Activity API stream's events: `post.create`, `post.delete`, `other`,
/// `malformed`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventType {
    pub event_type: String,
}

/// The Activity API stream's numbers, refreshed from its snapshot when metrics are read.
#[derive(Default)]
struct StreamGauges {
    connected: Gauge,
    reconnects: Gauge,
    events: Family<EventType, Gauge>,
    deletions: Gauge,
    subscriptions: Gauge,
    subscriptions_missing: Gauge,
}

/// The status classes `amber_http_responses_total` counts (each present from the start).
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// All metrics of the process.
pub struct Metrics {
    registry: Registry,
    responses: Family<StatusClass, Counter>,
    /// The family's counter of each class, `1xx` to `5xx`, looked up once: a lookup per
    /// request (a lock, a `String`, a hash) was a cost of every answer, the 429 included.
    classes: [Counter; 5],
    rate_limited: Counter,
    latency: Histogram,
    /// Store gauges, refreshed when metrics are read.
    pub posts: Gauge,
    pub leaders: Gauge,
    pub review_items: Gauge,
    /// Ingestion and Redis gauges, refreshed from the status board when metrics are read.
    pub ingest_runs: Gauge,
    pub last_ingest_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub breaker_open: Gauge,
    pub redis_up: Gauge,
    /// Client connections open now (`http::conn`).
    pub connections_open: Gauge,
    /// Connections refused at accept (per-address or global cap), never read.
    pub connections_refused: Counter,
    /// `GET /api/feed/events` streams open now, refreshed when metrics are read.
    pub feed_event_streams_open: Gauge,
    requests: AtomicU64,
    notifications: Family<NotifyResult, Counter>,
    stream: StreamGauges,
    /// Replication (`REPLICATION=redis`), refreshed when metrics are read.
    pub replication: ReplGauges,
}

/// Replication as `/metrics` shows it; all 0 with replication off.
#[derive(Default)]
pub struct ReplGauges {
    pub up: Gauge,
    pub applied: Gauge,
    pub lag_entries: Gauge,
    pub lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("amber");
        let responses = Family::<StatusClass, Counter>::default();
        let rate_limited = Counter::default();
        let latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
        ]);
        let posts = Gauge::default();
        let leaders = Gauge::default();
        let review_items = Gauge::default();
        let ingest_runs = Gauge::default();
        let last_ingest_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let breaker_open = Gauge::default();
        let redis_up = Gauge::default();
        let connections_open = Gauge::default();
        let connections_refused = Counter::default();
        let feed_event_streams_open = Gauge::default();
        registry.register(
            "feed_event_streams_open",
            "Live feed event streams (GET /api/feed/events) open now",
            feed_event_streams_open.clone(),
        );
        registry.register(
            "http_connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections refused at accept by the per-address or global cap",
            connections_refused.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status class",
            responses.clone(),
        );
        registry.register(
            "http_rate_limited",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        registry.register("posts", "Posts stored", posts.clone());
        registry.register("leaders", "Leaders stored", leaders.clone());
        registry.register("review_items", "Review items stored", review_items.clone());
        registry.register(
            "ingest_runs",
            "Ingestion runs finished since start",
            ingest_runs.clone(),
        );
        registry.register(
            "last_ingest_duration_seconds",
            "Duration of the last ingestion run",
            last_ingest_seconds.clone(),
        );
        registry.register(
            "circuit_breaker_open",
            "1 when the X circuit breaker is open or half-open",
            breaker_open.clone(),
        );
        registry.register(
            "redis_up",
            "1 when Redis sync is healthy, 0 when unavailable or not configured",
            redis_up.clone(),
        );
        let notifications = Family::<NotifyResult, Counter>::default();
        registry.register(
            "notifications",
            "Notification delivery tries by result (delivered, failed, paused)",
            notifications.clone(),
        );
        let stream = StreamGauges::default();
        registry.register(
            "activity_stream_connected",
            "1 while the X Activity API stream is open",
            stream.connected.clone(),
        );
        registry.register(
            "activity_stream_reconnects",
            "Activity API stream connections opened after the first, since start",
            stream.reconnects.clone(),
        );
        registry.register(
            "activity_stream_events",
            "Activity API stream events read since start, by event type",
            stream.events.clone(),
        );
        registry.register(
            "activity_stream_deletions",
            "Stored posts removed because X reported them deleted, since start",
            stream.deletions.clone(),
        );
        registry.register(
            "activity_subscriptions",
            "Activity API subscriptions Amber holds at X",
            stream.subscriptions.clone(),
        );
        registry.register(
            "activity_subscriptions_missing",
            "Activity API subscriptions the leaders call for but X does not hold (cap, errors)",
            stream.subscriptions_missing.clone(),
        );
        let replication = ReplGauges::default();
        for (name, help, gauge) in [
            (
                "replication_up",
                "1 while the replication stream answers",
                &replication.up,
            ),
            (
                "replication_applied_entries",
                "Replication entries applied (the stream number of the last)",
                &replication.applied,
            ),
            (
                "replication_lag_entries",
                "Replication entries appended but not applied here",
                &replication.lag_entries,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "replication_lag_seconds",
            "Time the replication entries not applied here span",
            replication.lag_seconds.clone(),
        );
        Metrics {
            replication,
            stream,
            notifications,
            registry,
            classes: CLASSES.map(|class| {
                responses
                    .get_or_create(&StatusClass {
                        class: class.to_string(),
                    })
                    .clone()
            }),
            responses,
            rate_limited,
            latency,
            posts,
            leaders,
            review_items,
            ingest_runs,
            last_ingest_seconds,
            breaker_open,
            redis_up,
            connections_open,
            connections_refused,
            feed_event_streams_open,
            requests: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one notification delivery try (or a pause) by its result.
    pub fn notification(&self, result: &str) {
        self.notifications
            .get_or_create(&NotifyResult {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts one answered request.
    pub fn observe_request(&self, status: u16, elapsed: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            _ => 4,
        };
        self.classes[class].inc();
        if status == 429 {
            self.rate_limited.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Requests answered since start.
    pub fn requests_total(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Responses of one status class since start.
    pub fn responses(&self, class: &str) -> u64 {
        self.responses
            .get_or_create(&StatusClass {
                class: class.to_string(),
            })
            .get()
    }

    /// Takes the Activity API stream's numbers from its snapshot.
    pub fn observe_stream(&self, s: &crate::status::StreamSnapshot) {
        let g = &self.stream;
        g.connected
            .set(i64::from(s.state == crate::status::StreamState::Connected));
        g.reconnects.set(s.reconnects as i64);
        for (name, n) in [
            ("post.create", s.events_post_create),
            ("post.delete", s.events_post_delete),
            ("other", s.events_other),
            ("malformed", s.malformed),
        ] {
            g.events
                .get_or_create(&EventType {
                    event_type: name.to_string(),
                })
                .set(n as i64);
        }
        g.deletions.set(s.deletions as i64);
        g.subscriptions.set(s.subscriptions.held as i64);
        g.subscriptions_missing.set(s.subscriptions.missing as i64);
    }

    /// Requests refused by the rate limiter since start.
    pub fn rate_limited_total(&self) -> u64 {
        self.rate_limited.get()
    }

    /// The OpenMetrics text exposition of every metric (`application/openmetrics-text`).
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`) of every metric, for
    /// scrapers and `curl | grep` runbooks that do not ask for OpenMetrics.
    pub fn render_prometheus(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus(&self.render()?))
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4: no `# EOF` or `# UNIT` lines, and a
/// counter family is named as its samples are (`x_total`), since 0.0.4 has no suffix rule.
pub fn openmetrics_to_prometheus(open: &str) -> String {
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_as_their_samples_and_has_no_eof() {
        let m = Metrics::default();
        m.observe_request(200, Duration::from_millis(3));
        let open = m.render().unwrap();
        assert!(
            open.contains("# TYPE amber_http_responses counter"),
            "{open}"
        );
        assert!(open.trim_end().ends_with("# EOF"), "{open}");
        let text = m.render_prometheus().unwrap();
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains("# TYPE amber_http_responses_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# HELP amber_http_responses_total HTTP responses"),
            "{text}"
        );
        assert!(
            text.contains("amber_http_responses_total{class=\"2xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE amber_posts gauge"), "{text}");
        assert!(
            text.contains("amber_http_request_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        // Every sample's family is declared under its own name.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .into_iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{line}\n{text}"
            );
        }
    }
}
