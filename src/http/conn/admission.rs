//! Which connections are served: a cap per client address and one for the process, both
//! below the open-file limit, with the last slots kept for health probes.
//!
//! A slow or idle connection costs a file descriptor until its deadline; without caps a
//! few addresses can hold every descriptor and nothing answers at all, health included
//! ("Too many open files"). So, at accept:
//! - an address (an IPv6 client: its /64) holds at most `per_address` connections;
//!   trusted proxies (`TRUSTED_PROXIES`) are exempt, since they carry many clients;
//! - the process holds at most `max`, which is derived from `RLIMIT_NOFILE` with room
//!   left for the store, Redis, outgoing X calls and the refusals themselves;
//! - the last `health_reserve` of those slots only serve health probes
//!   (`GET`/`HEAD` of `/livez`, `/readyz`, `/api/health`), one request each.
//!
//! A refused connection gets one JSON answer (429 or 503, `Retry-After: 1`) and is closed
//! at once; it never holds a slot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::rate_limit::key::IpKey;

/// File descriptors kept back from connections at the smallest open-file limits.
const MIN_FD_RESERVE: u64 = 64;
/// Largest default connection cap: beyond this, memory (not descriptors) runs out first
/// on a small machine. `MAX_CONNECTIONS` raises it.
const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The caps, as derived at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// All connections at once, health-only slots included.
    pub max: usize,
    /// Of `max`, the slots only health probes get.
    pub health_reserve: usize,
    /// Connections one address may hold.
    pub per_address: usize,
    /// Addresses without a per-address cap (trusted proxies).
    pub exempt: Vec<IpNet>,
}

impl ConnLimits {
    /// The caps for an open-file limit of `nofile`: an eighth of it (at least 64) is kept
    /// for everything that is not a client connection; `configured` (`MAX_CONNECTIONS`)
    /// may lower the rest, never raise it past what the descriptors allow.
    pub fn for_nofile(
        nofile: u64,
        configured: Option<usize>,
        per_address: usize,
        exempt: Vec<IpNet>,
    ) -> ConnLimits {
        let reserve = (nofile / 8).max(MIN_FD_RESERVE);
        let available = usize::try_from(nofile.saturating_sub(reserve))
            .unwrap_or(usize::MAX)
            .max(8);
        let max = configured
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .min(available)
            .max(2);
        ConnLimits {
            max,
            health_reserve: (max / 16).clamp(1, 64),
            per_address: per_address.max(1),
            exempt,
        }
    }
}

/// How an admitted connection may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Anything.
    Full,
    /// One health probe, then closed (the process is near its cap).
    HealthOnly,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address holds its share already.
    PerAddress,
    /// The process holds all it may.
    Full,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpKey, usize>,
}

/// Counts open connections; shared by every worker.
pub struct Admission {
    limits: ConnLimits,
    counts: Mutex<Counts>,
    open: Gauge,
    refused: Counter,
}

impl Admission {
    /// Starts counting under `limits`, reporting into the two metrics.
    pub fn new(limits: ConnLimits, open: Gauge, refused: Counter) -> Arc<Admission> {
        Arc::new(Admission {
            limits,
            counts: Mutex::default(),
            open,
            refused,
        })
    }

    /// The caps in force.
    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Admits a connection from `peer`, or says why not. The permit frees the slot when
    /// dropped (when the connection ends).
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<(Permit, Grant), Refusal> {
        let key = peer
            .filter(|ip| !self.limits.exempt.iter().any(|net| net.contains(ip)))
            .map(IpKey::from_addr);
        let mut counts = self.counts.lock();
        if counts.total >= self.limits.max {
            drop(counts);
            self.refused.inc();
            return Err(Refusal::Full);
        }
        if let Some(key) = key {
            let n = counts.per_address.entry(key).or_insert(0);
            if *n >= self.limits.per_address {
                drop(counts);
                self.refused.inc();
                return Err(Refusal::PerAddress);
            }
            *n += 1;
        }
        counts.total += 1;
        let grant = if counts.total > self.limits.max - self.limits.health_reserve {
            Grant::HealthOnly
        } else {
            Grant::Full
        };
        drop(counts);
        self.open.inc();
        Ok((
            Permit {
                admission: self.clone(),
                key,
            },
            grant,
        ))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().total
    }
}

/// One admitted connection's slot.
pub struct Permit {
    admission: Arc<Admission>,
    key: Option<IpKey>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.admission.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.key {
            if let Some(n) = counts.per_address.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.per_address.remove(&key);
                }
            }
        }
        drop(counts);
        self.admission.open.dec();
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (systemd's default soft limit is
/// 1024 while the hard one is far higher) and returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(err) => {
            let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((1024, 1024));
            tracing::warn!(error = %err, soft, "could not raise the open-file limit");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max: usize, per_address: usize, exempt: &str) -> Arc<Admission> {
        let exempt = exempt
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        Admission::new(
            ConnLimits {
                max,
                health_reserve: 2,
                per_address,
                exempt,
            },
            Gauge::default(),
            Counter::default(),
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_it_back_when_one_closes() {
        let a = admission(100, 3, "");
        let held: Vec<_> = (0..3).map(|_| a.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Refusal::PerAddress));
        let _other = a
            .admit(ip("10.0.0.2"))
            .expect("another address is not affected");
        drop(held);
        let _again = a.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(a.open(), 2);
    }

    #[test]
    fn an_ipv6_client_is_one_address_per_slash_64() {
        let a = admission(100, 2, "");
        let _one = a.admit(ip("2001:db8:1:2::1")).unwrap();
        let _two = a.admit(ip("2001:db8:1:2::ffff")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2::7")).err(),
            Some(Refusal::PerAddress)
        );
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn trusted_proxies_have_no_per_address_cap() {
        let a = admission(100, 1, "10.0.0.0/8");
        let held: Vec<_> = (0..10).map(|_| a.admit(ip("10.1.2.3")).unwrap()).collect();
        assert_eq!(held.len(), 10);
        let _x = a.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(a.admit(ip("192.0.2.1")).err(), Some(Refusal::PerAddress));
    }

    #[test]
    fn the_last_slots_are_health_only_and_beyond_max_is_refused() {
        let a = admission(10, 100, "");
        let mut held = Vec::new();
        for i in 0..10 {
            let (permit, grant) = a.admit(ip(&format!("10.0.0.{i}"))).unwrap();
            let expected = if i < 8 {
                Grant::Full
            } else {
                Grant::HealthOnly
            };
            assert_eq!(grant, expected, "connection {i}");
            held.push(permit);
        }
        assert_eq!(a.admit(ip("10.0.1.1")).err(), Some(Refusal::Full));
        held.pop();
        assert_eq!(a.admit(ip("10.0.1.1")).unwrap().1, Grant::HealthOnly);
    }

    #[test]
    fn limits_stay_below_the_open_file_limit() {
        let l = ConnLimits::for_nofile(1024, None, 32, Vec::new());
        assert_eq!(l.max, 896);
        assert_eq!(l.health_reserve, 56);
        assert_eq!(
            ConnLimits::for_nofile(1_048_576, None, 32, Vec::new()).max,
            4096
        );
        assert_eq!(
            ConnLimits::for_nofile(1_048_576, Some(20_000), 32, Vec::new()).max,
            20_000
        );
        assert_eq!(
            ConnLimits::for_nofile(1024, Some(5000), 32, Vec::new()).max,
            896
        );
        let tiny = ConnLimits::for_nofile(20, None, 32, Vec::new());
        assert!(tiny.max >= 2 && tiny.health_reserve >= 1);
    }
}
