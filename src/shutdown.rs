//! Stop signals. SIGTERM and Ctrl-C (SIGINT) both stop the server gracefully, as SPEC
//! asks (actix-server's own handling would cut requests on SIGINT). The handlers are
//! installed while the server is built, before it reports that it is listening, so a
//! signal that arrives right after start-up is never met by the default action (death
//! without a flush).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals that stop the server, installed and listening.
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    /// Installs the handlers for SIGTERM and SIGINT. Needs a Tokio runtime.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next stop signal; its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
