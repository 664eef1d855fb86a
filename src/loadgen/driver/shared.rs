//! What one tenant's send path shares between the clock, the request tasks and the engine.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use prost::Message;

use crate::measure::TenantRecorder;
use crate::proto::ModelInferRequest;
use crate::triton::{PreparedRequest, TritonClient};
use crate::vocab::snapshot::TenantId;

/// Bytes of requests one tenant may have in flight. A backlog of megabyte tensors is what takes a
/// generator that falls behind to gigabytes; at this bound a tenant still keeps tens of requests
/// at the server, more than a GPU's queue needs to stay busy.
pub const MAX_TENANT_IN_FLIGHT_BYTES: u64 = 64 << 20;
/// Bytes of requests all the tenants of a run may have in flight together.
pub const MAX_RUN_IN_FLIGHT_BYTES: u64 = 128 << 20;
/// What a request in flight holds beyond its two messages: its task, its HTTP/2 stream and their
/// buffers, on the client and on a server of this machine. An estimate on the high side, so that
/// requests whose tensors are in shared memory (a few hundred bytes on the wire) are bounded too.
pub const REQUEST_OVERHEAD_BYTES: u64 = 16 * 1024;

/// The in-flight bytes a whole run may hold, shared by its tenants.
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicU64,
    cap: u64,
}

impl ByteBudget {
    pub fn new(cap: u64) -> ByteBudget {
        ByteBudget {
            used: AtomicU64::new(0),
            cap,
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit, or unconditionally when `force` (a tenant's first request
    /// must always be able to go, or a request larger than the budget would never be sent).
    fn take(&self, n: u64, force: bool) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                (force || u.saturating_add(n) <= self.cap).then_some(u.saturating_add(n))
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// Everything the send path of one tenant needs, shared by the clock and the request tasks.
pub struct TenantShared {
    pub id: TenantId,
    pub model: String,
    pub(super) template: RwLock<Arc<PreparedRequest>>,
    clients: RwLock<Arc<Vec<TritonClient>>>,
    next_client: AtomicUsize,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    /// What one request is charged against the byte bounds: what it holds while in flight, on
    /// this machine (see [`TenantShared::charge_of`]).
    request_bytes: AtomicU64,
    /// Whether the charge includes the response's size yet (learnt from the first answer).
    response_sized: AtomicBool,
    in_flight_bytes: ByteBudget,
    run_bytes: Arc<ByteBudget>,
    /// Intended send times of arrivals waiting for an in-flight slot (bounded).
    backlog: Mutex<VecDeque<Instant>>,
    /// [`TenantSpec::BACKLOG_FACTOR`](crate::vocab::spec::TenantSpec::BACKLOG_FACTOR) × the
    /// requests the bounds let be in flight at once, so a backlog drains within a few round trips
    /// and an arrival beyond it is dropped rather than kept waiting for seconds.
    backlog_cap: AtomicUsize,
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
        let shared = TenantShared {
            id,
            model,
            request_bytes: AtomicU64::new(Self::charge_of(&template)),
            response_sized: AtomicBool::new(false),
            template: RwLock::new(Arc::new(PreparedRequest::new(template))),
            clients: RwLock::new(clients),
            next_client: AtomicUsize::new(0),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(max_in_flight.max(1)),
            in_flight_bytes: ByteBudget::new(MAX_TENANT_IN_FLIGHT_BYTES),
            run_bytes: Arc::new(ByteBudget::new(MAX_RUN_IN_FLIGHT_BYTES)),
            backlog: Mutex::new(VecDeque::new()),
            backlog_cap: AtomicUsize::new(0),
            deadline,
            recorder,
            paused: AtomicBool::new(false),
            connection_lost: AtomicBool::new(false),
            last_connection_error: Mutex::new(None),
            // Bounds that hdrhistogram accepts (1 µs to 60 s, 3 digits): never `None` in practice.
            send_errors_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).ok(),
            ),
        };
        shared.size_backlog();
        shared
    }

    /// A request's charge before its first answer: the message as encoded (the client's HTTP/2
    /// buffers hold it, and a server decodes it) and [`REQUEST_OVERHEAD_BYTES`]; the answer's
    /// size is added once known. Tensors in shared memory are not charged per request: the
    /// region holds them once and the server reads them in place, so a request does not copy
    /// them (the emulator, like Triton, keeps a reference until the batch executes).
    fn charge_of(template: &ModelInferRequest) -> u64 {
        template.encoded_len() as u64 + REQUEST_OVERHEAD_BYTES
    }

    /// Adds the size of the first answer to the charge (raw outputs come back in it over plain
    /// gRPC; a shared-memory answer is a few hundred bytes).
    pub(super) fn note_response_bytes(&self, bytes: usize) {
        if !self.response_sized.swap(true, Ordering::Relaxed) {
            self.request_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            self.size_backlog();
        }
    }

    /// Whether the answer's size is still to be learnt (cheap, checked on every answer).
    pub(super) fn wants_response_size(&self) -> bool {
        !self.response_sized.load(Ordering::Relaxed)
    }

    /// Charges this tenant's requests to `budget`, shared with the run's other tenants.
    pub fn with_run_budget(mut self, budget: Arc<ByteBudget>) -> Self {
        self.run_bytes = budget;
        self
    }

    /// Bytes of this tenant's requests in flight now.
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes.used()
    }

    /// Requests the count and byte bounds let this tenant have in flight at once.
    pub fn effective_max_in_flight(&self) -> u32 {
        let per_request = self.request_bytes.load(Ordering::Relaxed).max(1);
        let by_bytes = (MAX_TENANT_IN_FLIGHT_BYTES / per_request).max(1);
        let by_count = u64::from(self.max_in_flight.load(Ordering::Relaxed));
        u32::try_from(by_count.min(by_bytes)).unwrap_or(u32::MAX)
    }

    fn size_backlog(&self) {
        let cap = (self.effective_max_in_flight() as usize)
            .saturating_mul(crate::vocab::spec::TenantSpec::BACKLOG_FACTOR as usize);
        self.backlog_cap.store(cap, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Arrivals waiting for an in-flight slot.
    pub fn backlog(&self) -> usize {
        self.backlog.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Takes an in-flight slot if the count and both byte bounds allow; returns the bytes charged,
    /// which [`release`](Self::release) gives back.
    pub(super) fn try_acquire(&self) -> Option<u64> {
        let max = self.max_in_flight.load(Ordering::Relaxed);
        let before = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        let bytes = self.request_bytes.load(Ordering::Relaxed);
        let first = before == 0;
        if !self.in_flight_bytes.take(bytes, first) {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if !self.run_bytes.take(bytes, first) {
            self.in_flight_bytes.give(bytes);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(bytes)
    }

    pub(super) fn release(&self, bytes: u64) {
        self.run_bytes.give(bytes);
        self.in_flight_bytes.give(bytes);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn push_backlog(&self, intended: Instant) -> bool {
        match self.backlog.lock() {
            Ok(mut b) if b.len() < self.backlog_cap.load(Ordering::Relaxed) => {
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
        self.request_bytes
            .store(Self::charge_of(&template), Ordering::Relaxed);
        self.response_sized.store(false, Ordering::Relaxed);
        let prepared = Arc::new(PreparedRequest::new(template));
        if let Ok(mut t) = self.template.write() {
            *t = prepared;
        }
        self.size_backlog();
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

    /// The connections and the index of the next one to use, round robin. The client is borrowed
    /// from the shared list rather than cloned (a clone copies its address and two channel handles).
    pub(super) fn pick_client(&self) -> Option<(Arc<Vec<TritonClient>>, usize)> {
        let clients = Arc::clone(&*self.clients.read().ok()?);
        if clients.is_empty() {
            return None;
        }
        let i = self.next_client.fetch_add(1, Ordering::Relaxed) % clients.len();
        Some((clients, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::TenantMeter;
    use crate::vocab::spec::Sla;

    fn tenant(id: TenantId, tensor_bytes: usize, budget: &Arc<ByteBudget>) -> TenantShared {
        let request = ModelInferRequest {
            model_name: "resnet50".into(),
            raw_input_contents: vec![bytes::Bytes::from(vec![0u8; tensor_bytes])],
            ..ModelInferRequest::default()
        };
        let sla = Sla {
            latency_ms: 100.0,
            percentile: 95.0,
        };
        let tick = Duration::from_millis(250);
        let meter = TenantMeter::new(sla, Duration::from_secs(1), tick, Instant::now()).unwrap();
        TenantShared::new(
            id,
            "resnet50".into(),
            request,
            Arc::new(Vec::new()),
            1024,
            Duration::from_secs(10),
            meter.recorder(),
        )
        .with_run_budget(Arc::clone(budget))
    }

    #[test]
    fn big_requests_are_bounded_by_bytes_per_tenant_and_per_run() {
        let budget = Arc::new(ByteBudget::new(MAX_RUN_IN_FLIGHT_BYTES));
        // 20 MB a request: 3 fit a tenant's 64 MiB, though the count bound allows 1024.
        let a = tenant(0, 20_000_000, &budget);
        assert_eq!(a.effective_max_in_flight(), 3);
        let charges: Vec<u64> = (0..3).filter_map(|_| a.try_acquire()).collect();
        assert_eq!(charges.len(), 3);
        assert!(a.try_acquire().is_none(), "a fourth would pass 64 MiB");
        assert!(a.in_flight_bytes() <= MAX_TENANT_IN_FLIGHT_BYTES);
        // The backlog shrinks with the bound, so arrivals beyond it are dropped promptly.
        let queued = (0..100).filter(|_| a.push_backlog(Instant::now())).count();
        assert_eq!(queued, 12);
        // A second tenant fits what is left of the run's 128 MiB, no more.
        let b = tenant(1, 20_000_000, &budget);
        let more: Vec<u64> = (0..3).filter_map(|_| b.try_acquire()).collect();
        assert_eq!(more.len(), 3);
        let c = tenant(2, 20_000_000, &budget);
        // Nothing left, but a tenant with nothing in flight may always send one.
        let first = c.try_acquire();
        assert!(first.is_some());
        assert!(c.try_acquire().is_none());
        for n in charges {
            a.release(n);
        }
        assert_eq!((a.in_flight(), a.in_flight_bytes()), (0, 0));
        assert!(
            c.try_acquire().is_some(),
            "room again once a's requests completed"
        );
    }

    #[test]
    fn a_request_is_charged_what_it_holds_both_ways() {
        let budget = Arc::new(ByteBudget::new(MAX_RUN_IN_FLIGHT_BYTES));
        // A shared-memory request: a few hundred bytes on the wire, charged the fixed cost too.
        let small = tenant(0, 0, &budget);
        let first = small.try_acquire().unwrap();
        assert!(first >= REQUEST_OVERHEAD_BYTES, "{first}");
        assert_eq!(
            small.effective_max_in_flight(),
            1024,
            "the count bound binds"
        );
        // Over plain gRPC, 4 MiB of outputs come back in every answer: charged once learnt.
        small.note_response_bytes(4 << 20);
        small.note_response_bytes(4 << 20);
        let second = small.try_acquire().unwrap();
        assert_eq!(second, first + (4 << 20));
        assert_eq!(small.effective_max_in_flight(), 15);
        small.release(first);
        small.release(second);
        assert_eq!(small.in_flight_bytes(), 0);
        // A new request learns its answer's size afresh.
        small.replace_template(ModelInferRequest::default());
        assert!(small.wants_response_size());
        assert_eq!(small.try_acquire(), Some(REQUEST_OVERHEAD_BYTES));
    }

    #[test]
    fn a_request_larger_than_the_bound_still_goes_alone() {
        let budget = Arc::new(ByteBudget::new(MAX_RUN_IN_FLIGHT_BYTES));
        let huge = tenant(0, 80 << 20, &budget);
        assert_eq!(huge.effective_max_in_flight(), 1);
        let n = huge.try_acquire();
        assert!(n.is_some());
        assert!(huge.try_acquire().is_none());
    }
}
