//! `Notifier`: the delivery actor. It keeps one worker per target; a worker walks its
//! target's outbox (`Q` keys) oldest first, one delivery at a time (so a target sees
//! posts in the order they were stored), retries a failure with exponential backoff and
//! jitter (or the receiver's `Retry-After`), pauses the target after
//! `NOTIFY_PAUSE_AFTER` failures in a row (its queue is kept) and removes an entry only
//! once the receiver answered 2xx. A restart (or `kill -9`) starts every worker at the
//! head of its queue again: delivery is at least once, each carrying the post id as its
//! idempotency key. Workers only read the store and send small removals to `PostStore`,
//! with a bounded number of deliveries in flight and a timeout on each: a slow or dead
//! receiver delays neither ingestion nor the API, and no other target while fewer than
//! `concurrency` receivers hang at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::actors::store::{OutboxDone, SetNotifyPaused};
use crate::metrics::Metrics;
use crate::notify::message::{self, Request};
use crate::notify::target::{Paused, Target};
use crate::replication::Writes;
use crate::storage::StoreReader;

/// How deliveries are tried (`NOTIFY_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverySettings {
    /// The first retry's wait; each further one doubles, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Failures in a row after which a target is paused.
    pub pause_after: u32,
    /// The whole of one delivery (connect, send, answer).
    pub timeout: Duration,
    /// Deliveries in flight at once, over all targets.
    pub concurrency: usize,
}

impl Default for DeliverySettings {
    fn default() -> DeliverySettings {
        DeliverySettings {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            pause_after: 10,
            timeout: Duration::from_secs(10),
            concurrency: 4,
        }
    }
}

/// What status shows of one target's deliveries since the process started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryStatus {
    pub delivered: u64,
    /// Failed tries (each retry counts).
    pub failures: u64,
    pub consecutive_failures: u32,
    /// RFC 3339.
    pub last_delivery_at: Option<String>,
    /// Amber's id of the post last delivered.
    pub last_delivered_post_id: Option<String>,
    pub last_failure_at: Option<String>,
    /// Why the last try failed (`HTTP 503`, `timed out`, ...).
    pub last_error: Option<String>,
    /// When the next try is due, while retrying.
    pub next_try_at: Option<String>,
}

type Statuses = Arc<RwLock<HashMap<u64, DeliveryStatus>>>;

/// The handle the API holds: the actor's address and the status it publishes.
#[derive(Clone)]
pub struct Notifications {
    addr: Addr<Notifier>,
    status: Statuses,
}

impl Notifications {
    /// Starts the delivery actor (workers for every stored target). With replication
    /// only the instance whose turn it is delivers (`Replicator::delivery_turn`), and its
    /// removals and pauses go through the stream, so every instance's outbox follows.
    pub fn start(
        reader: StoreReader,
        store: Writes,
        metrics: Arc<Metrics>,
        settings: DeliverySettings,
    ) -> Notifications {
        let status: Statuses = Arc::default();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            // A webhook answers where it is; a redirect is a misconfigured URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("amber/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let worker = Worker {
            reader,
            turn: store.replicator().map(|r| r.delivery_turn()),
            store,
            client,
            metrics,
            status: status.clone(),
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
        };
        let addr = Notifier {
            worker,
            running: HashMap::new(),
        }
        .start();
        Notifications { addr, status }
    }

    /// Starts workers for new targets and stops those of deleted ones.
    pub fn targets_changed(&self) {
        self.addr.do_send(SyncTargets);
    }

    /// A target's delivery status (zero counts before its first try).
    pub fn status(&self, id: u64) -> DeliveryStatus {
        self.status.read().get(&id).cloned().unwrap_or_default()
    }

    /// Forgets a resumed target's run of failures.
    pub fn reset_failures(&self, id: u64) {
        if let Some(s) = self.status.write().get_mut(&id) {
            s.consecutive_failures = 0;
            s.next_try_at = None;
        }
    }
}

/// The actor: owns the workers.
pub struct Notifier {
    worker: Worker,
    running: HashMap<u64, tokio::task::JoinHandle<()>>,
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(SyncTargets);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, task) in self.running.drain() {
            task.abort();
        }
    }
}

/// Bring the workers in line with the stored targets.
#[derive(Message)]
#[rtype(result = "()")]
struct SyncTargets;

impl Handler<SyncTargets> for Notifier {
    type Result = ();
    fn handle(&mut self, _: SyncTargets, _: &mut Self::Context) {
        let targets = self.worker.reader.notify_targets();
        self.running.retain(|id, task| {
            let keep = targets.iter().any(|t| t.id == *id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        self.worker
            .status
            .write()
            .retain(|id, _| targets.iter().any(|t| t.id == *id));
        for t in targets {
            if !self.running.contains_key(&t.id) {
                let worker = self.worker.clone();
                self.running.insert(t.id, actix::spawn(worker.run(t.id)));
            }
        }
    }
}

/// Everything one target's worker needs (cheap clones).
#[derive(Clone)]
struct Worker {
    reader: StoreReader,
    store: Writes,
    /// With replication: true while this instance delivers for the cluster.
    turn: Option<tokio::sync::watch::Receiver<bool>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    status: Statuses,
    permits: Arc<Semaphore>,
    settings: DeliverySettings,
}

/// Why a try failed.
struct Failure {
    error: String,
    retry_after: Option<Duration>,
}

fn now_text() -> String {
    crate::shape::time::rfc3339(chrono::Utc::now().timestamp_millis())
}

/// How many delivered entries are removed in one store write.
const ACK_BATCH: usize = 32;

impl Worker {
    /// One target's loop; ends when the target is deleted.
    async fn run(self, id: u64) {
        let mut wake = self.reader.outbox_wake();
        // The last post delivered by this worker: entries up to it may still be in the
        // store until their removal is written.
        let mut after: Option<u64> = None;
        let mut done: Vec<u64> = Vec::new();
        let mut turn = self.turn.clone();
        loop {
            if let Some(turn) = &mut turn {
                if !*turn.borrow_and_update() {
                    // Another instance delivers: what it sends is removed from this
                    // outbox by its acknowledgements; start at the head when it is ours.
                    self.ack(id, &mut done).await;
                    after = None;
                    if turn.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
            }
            wake.borrow_and_update();
            let Some(target) = self.reader.notify_target(id) else {
                return;
            };
            let batch = if target.paused.is_some() {
                Vec::new()
            } else {
                match self.reader.outbox_after(id, after, 64) {
                    Ok(b) => b,
                    Err(err) => {
                        tracing::warn!(target_id = id, error = %err, "notification outbox unreadable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            if batch.is_empty() {
                self.ack(id, &mut done).await;
                if wake.changed().await.is_err() {
                    return;
                }
                continue;
            }
            for (post_id, event) in batch {
                match self.deliver(&target, post_id, event).await {
                    true => {
                        after = Some(post_id);
                        done.push(post_id);
                        if done.len() >= ACK_BATCH {
                            self.ack(id, &mut done).await;
                        }
                    }
                    // Paused (or deleted): back to the top, which waits.
                    false => {
                        self.ack(id, &mut done).await;
                        after = None;
                        break;
                    }
                }
            }
        }
    }

    /// Removes delivered entries from the store. A failed removal is only logged: the
    /// entries are delivered again after a restart (at least once).
    async fn ack(&self, id: u64, done: &mut Vec<u64>) {
        if done.is_empty() {
            return;
        }
        let posts = std::mem::take(done);
        match self
            .store
            .send(OutboxDone {
                target_id: id,
                post_ids: posts,
            })
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(target_id = id, error = %err, "delivered notifications not yet removed from the outbox")
            }
            Err(err) => {
                tracing::warn!(target_id = id, error = %err, "post store unreachable")
            }
        }
    }

    /// Delivers one post, retrying until it is delivered (true) or the target is paused
    /// or gone (false). A post deleted since it was queued counts as delivered.
    async fn deliver(
        &self,
        target: &Target,
        post_id: u64,
        event: crate::notify::target::Event,
    ) -> bool {
        let post = loop {
            match self.reader.post(post_id) {
                Ok(p) => break p,
                Err(err) => {
                    tracing::warn!(error = %err, "post unreadable for a notification; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let Some(post) = post else {
            return true;
        };
        let leader = self.reader.leader(post.leader_id);
        let request = message::build(target.spec.format, &post, leader.as_ref(), event);
        let mut failures = 0u32;
        loop {
            let outcome = {
                let _permit = self.permits.acquire().await;
                self.send(&target.spec.url, &request).await
            };
            match outcome {
                Ok(()) => {
                    self.metrics.notification("delivered");
                    let mut all = self.status.write();
                    let s = all.entry(target.id).or_default();
                    s.delivered += 1;
                    s.consecutive_failures = 0;
                    s.last_delivery_at = Some(now_text());
                    s.last_delivered_post_id = Some(post_id.to_string());
                    s.next_try_at = None;
                    return true;
                }
                Err(failure) => {
                    failures += 1;
                    self.metrics.notification("failed");
                    let wait = message::backoff(
                        failures,
                        self.settings.retry_base,
                        self.settings.retry_max,
                        failure.retry_after,
                        rand::random::<f64>(),
                    );
                    {
                        let mut all = self.status.write();
                        let s = all.entry(target.id).or_default();
                        s.failures += 1;
                        s.consecutive_failures = failures;
                        s.last_failure_at = Some(now_text());
                        s.last_error = Some(failure.error.clone());
                        s.next_try_at = Some(crate::shape::time::rfc3339(
                            chrono::Utc::now().timestamp_millis() + wait.as_millis() as i64,
                        ));
                    }
                    tracing::warn!(target_id = target.id, post_id, failures, error = %failure.error,
                        wait_ms = wait.as_millis() as u64, "notification not delivered; will retry");
                    if failures >= self.settings.pause_after {
                        self.pause(target.id, failures, &failure.error).await;
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                    match self.reader.notify_target(target.id) {
                        Some(t) if t.paused.is_none() => {}
                        _ => return false,
                    }
                }
            }
        }
    }

    async fn pause(&self, id: u64, failures: u32, error: &str) {
        self.metrics.notification("paused");
        if let Some(s) = self.status.write().get_mut(&id) {
            s.next_try_at = None;
        }
        let reason = format!("{failures} failed tries in a row; last: {error}");
        tracing::error!(target_id = id, reason = %reason, "notification target paused; resume it with POST /api/admin/notifications/{id}/resume");
        let paused = Paused {
            at_ms: chrono::Utc::now().timestamp_millis(),
            reason,
        };
        // If the pause cannot be written, the worker still stops this round (it looks
        // at the stored target next): wait a little before trying again.
        match self
            .store
            .send(SetNotifyPaused {
                id,
                paused: Some(paused),
            })
            .await
        {
            Ok(Ok(_)) => {}
            _ => tokio::time::sleep(self.settings.retry_max).await,
        }
    }

    /// One POST.
    async fn send(&self, url: &str, request: &Request) -> Result<(), Failure> {
        let mut builder = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, request.content_type)
            .body(request.body.clone());
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        match builder.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(Failure {
                error: format!("HTTP {}", resp.status().as_u16()),
                retry_after: resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| message::retry_after(v, chrono::Utc::now())),
            }),
            Err(err) => Err(Failure {
                // Never the URL: a webhook's secret is in it.
                error: if err.is_timeout() {
                    "timed out".to_string()
                } else if err.is_connect() {
                    "connection failed".to_string()
                } else {
                    err.without_url().to_string()
                },
                retry_after: None,
            }),
        }
    }
}
