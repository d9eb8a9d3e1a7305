//! The Redis lease that makes exactly one of several instances run ingestion at a time:
//! `SET amber:ingest:lease <instance> NX PX 60000` to take it, a compare-and-`PEXPIRE`
//! script to renew it while a run lasts, a compare-and-`DEL` script to release it. A lease
//! whose holder died expires by itself after [`LEASE_TTL`].

use std::time::Duration;

/// Lifetime of the lease; the holder renews it every third of it.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// Redis key of the ingestion lease.
pub const LEASE_KEY: &str = "amber:ingest:lease";
/// Time allowed for one Redis command of the lease.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis lease that makes one instance at a time run ingestion.
#[derive(Clone)]
pub struct Lease {
    conn: redis::aio::MultiplexedConnection,
    key: &'static str,
    token: String,
}

/// Redis key of the Activity API stream's lease: among several instances, the one
/// holding it holds X's stream and its subscriptions.
pub const STREAM_LEASE_KEY: &str = "amber:ingest:stream-lease";

const RENEW_SCRIPT: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE_SCRIPT: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

async fn with_timeout<T>(
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(REDIS_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("Redis did not answer in time".to_string()),
    }
}

impl Lease {
    /// Takes the lease if free; Ok(None) when another instance holds it.
    pub async fn acquire(url: &str, token: &str) -> Result<Option<Lease>, String> {
        Lease::acquire_key(url, LEASE_KEY, token).await
    }

    /// Takes the lease `key` if free; Ok(None) when another instance holds it.
    pub async fn acquire_key(
        url: &str,
        key: &'static str,
        token: &str,
    ) -> Result<Option<Lease>, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = with_timeout(client.get_multiplexed_async_connection()).await?;
        let set: Option<String> = with_timeout(
            redis::cmd("SET")
                .arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE_TTL.as_millis() as u64)
                .query_async(&mut conn),
        )
        .await?;
        Ok(set.map(|_| Lease {
            conn,
            key,
            token: token.to_string(),
        }))
    }

    /// Extends the lease by [`LEASE_TTL`] if this instance still holds it; an error when
    /// it expired and was taken (the run must stop) or Redis did not answer.
    pub async fn renew(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let renewed: i64 = with_timeout(
            redis::Script::new(RENEW_SCRIPT)
                .key(self.key)
                .arg(&self.token)
                .arg(LEASE_TTL.as_millis() as u64)
                .invoke_async(&mut conn),
        )
        .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err("the lease expired and was taken".to_string())
        }
    }

    /// Gives the lease up if this instance still holds it.
    pub async fn release(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let _: i64 = with_timeout(
            redis::Script::new(RELEASE_SCRIPT)
                .key(self.key)
                .arg(&self.token)
                .invoke_async(&mut conn),
        )
        .await?;
        Ok(())
    }
}
