//! Perseus's own figures for Prometheus (`--metrics-listen`): per tenant and target, what only
//! the load generator knows — latency from the intended send, SLA attainment, goodput, drops,
//! late sends, errors by code — and the target's GPU figures and price, in OpenMetrics.
//!
//! It follows the engine's snapshot channel like any other consumer: a task of its own folds each
//! snapshot into [`Figures`], and a scrape encodes them. The engine never waits on either.

mod encode;
mod figures;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::vocab::snapshot::Snapshot;

pub use encode::{FAMILIES, exposition};
pub use figures::{
    Counters, DEFAULT_TARGET, Figures, Histogram, SeriesKey, TargetGauges, TenantGauges,
};

/// The content type of the OpenMetrics text format, which Prometheus asks for first.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `--metrics-listen` value that is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a listen address: give a PORT (served on 127.0.0.1) or IP:PORT, e.g. 9464 or 0.0.0.0:9464"
)]
pub struct ListenError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    #[error("cannot listen for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Parses `--metrics-listen`: a bare port means loopback, so the figures are exposed beyond this
/// machine only for an address given explicitly (as `perseus emulate` does).
pub fn parse_listen(s: &str) -> Result<SocketAddr, ListenError> {
    let s = s.trim();
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| ListenError(s.to_string()))
}

/// A bound metrics listener, not serving yet: binding first lets a bad address fail before the
/// run starts.
pub struct MetricsListener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    pub async fn bind(addr: SocketAddr) -> Result<Self, ExporterError> {
        let bind_error = |source| ExporterError::Bind { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(MetricsListener { listener, addr })
    }

    /// The address it serves on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The scrape URL, for the banner.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Serves `/metrics` from the snapshots of `snapshots` until the returned [`Exporter`] is shut
    /// down or dropped, labelled `target="default"`. Must be called within a tokio runtime.
    pub fn serve(self, snapshots: watch::Receiver<Arc<Snapshot>>) -> Exporter {
        self.serve_targets(vec![(DEFAULT_TARGET.to_string(), snapshots)])
    }

    /// Serves the figures of every target, each labelled with its name.
    pub fn serve_targets(self, targets: Vec<(String, watch::Receiver<Arc<Snapshot>>)>) -> Exporter {
        let figures = Arc::new(Mutex::new(Figures::default()));
        let registry = Arc::new(encode::registry(Arc::clone(&figures)));
        let cancel = CancellationToken::new();
        let mut tasks: Vec<JoinHandle<()>> = targets
            .into_iter()
            .map(|(name, rx)| tokio::spawn(follow(name, rx, Arc::clone(&figures), cancel.clone())))
            .collect();
        let router = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || scrape(Arc::clone(&registry))),
        );
        let stop = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(self.listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!("the metrics exporter stopped: {e}");
            }
        }));
        Exporter { cancel, tasks }
    }
}

/// A serving exporter. It keeps serving the last figures after the engine has finished, until it
/// is shut down or dropped.
pub struct Exporter {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Exporter {
    /// Stops serving and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn follow(
    target: String,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    figures: Arc<Mutex<Figures>>,
    cancel: CancellationToken,
) {
    loop {
        // The borrow is released at once: the engine's next send never waits on this task.
        let snap = Arc::clone(&snapshots.borrow_and_update());
        figures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .update_target(&target, &snap);
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            _ = cancel.cancelled() => return,
        }
    }
}

async fn scrape(registry: Arc<prometheus_client::registry::Registry>) -> Response {
    match exposition(&registry) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be encoded\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
