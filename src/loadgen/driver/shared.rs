//! What one tenant's send path shares between the clock thread, the request tasks and the engine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::measure::TenantRecorder;
use crate::proto::ModelInferRequest;
use crate::triton::{PreparedRequest, TritonClient};
use crate::vocab::snapshot::TenantId;

/// Everything the send path of one tenant needs, shared by the clock thread and the request tasks.
pub struct TenantShared {
    pub id: TenantId,
    pub model: String,
    pub(super) template: RwLock<Arc<PreparedRequest>>,
    clients: RwLock<Arc<Vec<TritonClient>>>,
    next_client: AtomicUsize,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    /// Intended send times of arrivals waiting for an in-flight slot (bounded).
    backlog: Mutex<VecDeque<Instant>>,
    backlog_cap: usize,
    pub(super) deadline: Duration,
    pub(super) recorder: TenantRecorder,
    paused: AtomicBool,
    /// Set when a request failed because the server could not be reached; the engine clears it
    /// after it starts reconnecting.
    pub(super) connection_lost: AtomicBool,
    pub(super) last_connection_error: Mutex<Option<String>>,
    /// Every send-time error, in µs, for the schedule-accuracy benchmark.
    pub(super) send_errors_us: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

impl TenantShared {
    pub fn new(
        id: TenantId,
        model: String,
        template: ModelInferRequest,
        clients: Arc<Vec<TritonClient>>,
        max_in_flight: u32,
        deadline: Duration,
        recorder: TenantRecorder,
    ) -> Self {
        TenantShared {
            id,
            model,
            template: RwLock::new(Arc::new(PreparedRequest::new(template))),
            clients: RwLock::new(clients),
            next_client: AtomicUsize::new(0),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(max_in_flight.max(1)),
            backlog: Mutex::new(VecDeque::new()),
            backlog_cap: (max_in_flight.max(1) as usize)
                .saturating_mul(crate::vocab::spec::TenantSpec::BACKLOG_FACTOR as usize),
            deadline,
            recorder,
            paused: AtomicBool::new(false),
            connection_lost: AtomicBool::new(false),
            last_connection_error: Mutex::new(None),
            // Bounds that hdrhistogram accepts (1 µs to 60 s, 3 digits): never `None` in practice.
            send_errors_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            ),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Arrivals waiting for an in-flight slot.
    pub fn backlog(&self) -> usize {
        self.backlog.lock().map(|b| b.len()).unwrap_or(0)
    }

    pub(super) fn try_acquire(&self) -> bool {
        let max = self.max_in_flight.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub(super) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn push_backlog(&self, intended: Instant) -> bool {
        match self.backlog.lock() {
            Ok(mut b) if b.len() < self.backlog_cap => {
                b.push_back(intended);
                true
            }
            _ => false,
        }
    }

    pub(super) fn pop_backlog(&self) -> Option<Instant> {
        self.backlog.lock().ok()?.pop_front()
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// New connections after a reconnect, or a rebuilt request after a reconfiguration.
    pub fn replace_clients(&self, clients: Arc<Vec<TritonClient>>) {
        if let Ok(mut c) = self.clients.write() {
            *c = clients;
        }
    }

    pub fn replace_template(&self, template: ModelInferRequest) {
        let prepared = Arc::new(PreparedRequest::new(template));
        if let Ok(mut t) = self.template.write() {
            *t = prepared;
        }
    }

    /// Takes the "connection lost" flag and the error that set it.
    pub fn take_connection_lost(&self) -> Option<String> {
        if self.connection_lost.swap(false, Ordering::Relaxed) {
            let msg = self
                .last_connection_error
                .lock()
                .ok()
                .and_then(|mut m| m.take());
            Some(msg.unwrap_or_else(|| "connection lost".to_string()))
        } else {
            None
        }
    }

    /// Send-time error quantiles (µs) since the last reset, and the number of sends.
    pub fn send_error_quantiles_us(&self, quantiles: &[f64]) -> (Vec<u64>, u64) {
        match self.send_errors_us.lock().as_deref() {
            Ok(Some(h)) => (
                quantiles.iter().map(|&q| h.value_at_quantile(q)).collect(),
                h.len(),
            ),
            _ => (vec![0; quantiles.len()], 0),
        }
    }

    pub fn reset_send_errors(&self) {
        if let Ok(mut guard) = self.send_errors_us.lock()
            && let Some(h) = guard.as_mut()
        {
            h.reset();
        }
    }

    pub(super) fn pick_client(&self) -> Option<TritonClient> {
        let clients = self.clients.read().ok()?.clone();
        if clients.is_empty() {
            return None;
        }
        let i = self.next_client.fetch_add(1, Ordering::Relaxed) % clients.len();
        Some(clients[i].clone())
    }
}
