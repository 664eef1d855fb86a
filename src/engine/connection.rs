//! Connecting to the server, and getting it back: backoff before the first connection, liveness
//! polls with backoff after a loss, and re-setting-up every tenant when the server is back (a
//! restarted server may have lost its models and reset its statistics).

use std::time::{Duration, Instant};

use crate::engine::error::ConnectError;
use crate::engine::server::Link;
use crate::engine::{Engine, Event};
use crate::triton::Extension;
use crate::vocab::snapshot::{ConnState, NoticeLevel, TenantId};

/// Reconnect backoff bounds.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The wait before attempt `retries + 1`: doubling from [`BACKOFF_MIN`], capped at [`BACKOFF_MAX`].
pub(super) fn backoff(retries: u32) -> Duration {
    (BACKOFF_MIN * 2u32.saturating_pow(retries.min(5))).min(BACKOFF_MAX)
}

impl Engine {
    pub(super) fn spawn_connect(&mut self, delay: Duration) {
        let connector = std::sync::Arc::clone(&self.connector);
        let tx = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let ev = match connector.connect().await {
                Ok(link) => match link.control.server_live().await {
                    Ok(true) => {
                        let version = link.control.server_version().await.ok();
                        Event::Connected(link, version)
                    }
                    Ok(false) => Event::ConnectFailed(ConnectError::NotLive),
                    Err(e) => Event::ConnectFailed(e.into()),
                },
                Err(e) => Event::ConnectFailed(e.into()),
            };
            let _ = tx.send(ev).await;
        });
    }

    /// Polls liveness with backoff until the server answers again.
    pub(super) fn spawn_reconnect(&mut self) {
        if self.reconnecting {
            return;
        }
        let Some(control) = self
            .link
            .as_ref()
            .map(|l| std::sync::Arc::clone(&l.control))
        else {
            return;
        };
        self.reconnecting = true;
        let tx = self.events.clone();
        tokio::spawn(async move {
            let mut retries = 0;
            loop {
                tokio::time::sleep(backoff(retries)).await;
                let failure = match control.server_live().await {
                    Ok(true) => {
                        let _ = tx.send(Event::Live).await;
                        return;
                    }
                    Ok(false) => ConnectError::NotLive,
                    Err(e) => e.into(),
                };
                if tx.send(Event::ConnectFailed(failure)).await.is_err() {
                    return;
                }
                retries += 1;
            }
        });
    }

    pub(super) fn disconnected(&mut self, error: String) {
        if self.conn.state != ConnState::Disconnected {
            self.notice(NoticeLevel::Error, format!("lost the server: {error}"));
        }
        self.conn.state = ConnState::Disconnected;
        self.conn.last_error = Some(error);
        self.spawn_reconnect();
    }

    pub(super) fn on_connected(&mut self, link: Link, version: Option<String>) {
        self.link = Some(link);
        self.server_version = version;
        self.conn.state = ConnState::Connected;
        self.conn.retries = 0;
        self.notice(
            NoticeLevel::Info,
            format!("connected to {}", self.cfg.target.address),
        );
        for id in self.tenant_ids() {
            self.spawn_setup(id);
        }
        self.refresh_repository(Instant::now());
    }

    pub(super) fn on_connect_failed(&mut self, error: ConnectError) {
        self.conn.retries += 1;
        self.conn.last_error = Some(error.to_string());
        if self.link.is_none() {
            // Never connected yet: keep trying with backoff, saying why.
            self.conn.state = ConnState::Connecting;
            self.spawn_connect(backoff(self.conn.retries));
        } else {
            self.conn.state = ConnState::Disconnected;
        }
    }

    pub(super) fn on_live(&mut self) {
        self.reconnecting = false;
        self.conn.state = ConnState::Connected;
        self.conn.retries = 0;
        self.notice(NoticeLevel::Info, "server is back");
        // A restarted server may have lost its models or reset its statistics.
        for id in self.tenant_ids() {
            if let Some(t) = self.tenant_mut(id) {
                t.clear_stats();
            }
            self.spawn_setup(id);
        }
    }

    /// Whether models can be loaded and unloaded: the target allows it and the server has not
    /// shown that it lacks Triton's model repository extension.
    pub(super) fn model_control(&self) -> bool {
        self.no_model_control().is_none()
    }

    /// Why models cannot be loaded and unloaded on this target, when they cannot.
    pub(super) fn no_model_control(&self) -> Option<&'static str> {
        if !self.cfg.target.model_control {
            return Some("the target does not allow model control");
        }
        let missing = self
            .link
            .as_ref()
            .is_some_and(|l| l.control.supports(Extension::ModelRepository) == Some(false));
        missing.then_some("the server has no model repository extension (a KServe-v2 server)")
    }

    pub(super) fn tenant_ids(&self) -> Vec<TenantId> {
        self.tenants.iter().map(|t| t.id).collect()
    }
}
