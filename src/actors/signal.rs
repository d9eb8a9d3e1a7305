//! `StopSwitch` / `StopSignal`: how a run (or a refresh) is told to stop. The switch is
//! the scheduler's; every fetch holds a signal and checks it at leader boundaries, and
//! whatever waits (a breaker permit, a retry pause, a rate-limit reset) waits for the
//! signal too, so a stop ends the wait at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The sending side: fires once, for every signal taken from it. Clones share it.
#[derive(Debug, Clone)]
pub struct StopSwitch(Arc<watch::Sender<bool>>);

/// The receiving side (cheap to clone).
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl Default for StopSwitch {
    fn default() -> StopSwitch {
        StopSwitch(Arc::new(watch::channel(false).0))
    }
}

impl StopSwitch {
    /// A switch not fired yet.
    pub fn new() -> StopSwitch {
        StopSwitch::default()
    }

    /// A signal that fires with this switch.
    pub fn signal(&self) -> StopSignal {
        StopSignal(self.0.subscribe())
    }

    /// Fires: every signal reports stopped from now on.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Whether it has fired.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

impl StopSignal {
    /// A signal that never fires.
    pub fn never() -> StopSignal {
        let (tx, rx) = watch::channel(false);
        // Dropping the sender leaves the value false forever.
        drop(tx);
        StopSignal(rx)
    }

    /// Whether the switch has fired.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the switch fires (never, if it is dropped unfired).
    pub async fn stopped(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|stopped| *stopped).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `fut`, unless the switch fires first (then None).
    pub async fn unless_stopped<F: Future>(&self, fut: F) -> Option<F::Output> {
        if self.is_stopped() {
            return None;
        }
        tokio::select! {
            out = fut => Some(out),
            () = self.stopped() => None,
        }
    }

    /// Sleeps for `pause`; false when the switch fired first.
    pub async fn sleep(&self, pause: Duration) -> bool {
        self.unless_stopped(tokio::time::sleep(pause))
            .await
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fired_switch_ends_a_sleep_at_once_and_never_fires_by_itself() {
        let switch = StopSwitch::new();
        let signal = switch.signal();
        let sleeper = tokio::spawn({
            let signal = signal.clone();
            async move { signal.sleep(Duration::from_secs(60)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        switch.fire();
        let slept = tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke at once")
            .unwrap();
        assert!(!slept);
        assert!(signal.is_stopped());
        assert!(StopSignal::never().sleep(Duration::from_millis(5)).await);
        let dropped = StopSwitch::new();
        let orphan = dropped.signal();
        drop(dropped);
        assert!(
            orphan.sleep(Duration::from_millis(5)).await,
            "a dropped switch never fires"
        );
    }
}
