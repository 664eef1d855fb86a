//! Per-tenant drivers and the one clock that schedules every open-loop tenant.
//!
//! Open-loop arrivals are timed by a dedicated OS thread rather than tokio's timer, whose 1 ms
//! granularity alone would exceed the send-time error budget (p99 ≤ 200 µs). The thread sleeps until
//! shortly before the earliest due arrival and spins the rest (see [`crate::timing`]). It then issues
//! the request itself — the first poll of the send runs on the clock thread, up to handing the request
//! to the gRPC channel — and only the wait for the response moves to the tokio runtime. Spawning
//! first would add a runtime worker's wake-up to every send, and on a busy small machine that wake-up,
//! not the clock, is what makes sends late. Latency is measured from the *intended* send time, so a
//! late client never hides queueing (no coordinated omission). Closed-loop tenants are tokio tasks
//! that keep N requests in flight.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::loadgen::arrival::ArrivalProcess;
use crate::measure::TenantRecorder;
use crate::proto::ModelInferRequest;
use crate::triton::TritonClient;
use crate::vocab::snapshot::TenantId;

/// A send later than this after its intended time counts as `late`.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(1);

/// How long before an arrival the clock thread stops sleeping and starts spinning. With the timer
/// slack tightened, a sleep overshoots by the wake-up latency alone (p50 under 10 µs here, with the
/// load running); the margin absorbs most of the tail and costs at most this much CPU per arrival.
const SPIN_MARGIN: Duration = Duration::from_micros(50);
/// The share of one core the clock thread may spin (see [`crate::timing`]). Sending on time is what
/// the load generator is for, so it gets more than the emulator's clock; past it, at thousands of
/// arrivals a second, it sleeps to each arrival instead.
const SPIN_SHARE: f64 = 0.15;

/// Everything the send path of one tenant needs, shared by the clock thread and the request tasks.
pub struct TenantShared {
    pub id: TenantId,
    pub model: String,
    template: RwLock<Arc<ModelInferRequest>>,
    clients: RwLock<Arc<Vec<TritonClient>>>,
    next_client: AtomicUsize,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    /// Intended send times of arrivals waiting for an in-flight slot (bounded).
    backlog: Mutex<VecDeque<Instant>>,
    backlog_cap: usize,
    deadline: Duration,
    recorder: TenantRecorder,
    paused: AtomicBool,
    /// Set when a request failed because the server could not be reached; the engine clears it
    /// after it starts reconnecting.
    connection_lost: AtomicBool,
    last_connection_error: Mutex<Option<String>>,
    /// Every send-time error, in µs, for the schedule-accuracy benchmark.
    send_errors_us: Mutex<hdrhistogram::Histogram<u64>>,
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
            template: RwLock::new(Arc::new(template)),
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
            send_errors_us: Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds are valid"),
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

    fn try_acquire(&self) -> bool {
        let max = self.max_in_flight.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn push_backlog(&self, intended: Instant) -> bool {
        match self.backlog.lock() {
            Ok(mut b) if b.len() < self.backlog_cap => {
                b.push_back(intended);
                true
            }
            _ => false,
        }
    }

    fn pop_backlog(&self) -> Option<Instant> {
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
        if let Ok(mut t) = self.template.write() {
            *t = Arc::new(template);
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
        match self.send_errors_us.lock() {
            Ok(h) => (
                quantiles.iter().map(|&q| h.value_at_quantile(q)).collect(),
                h.len(),
            ),
            Err(_) => (vec![0; quantiles.len()], 0),
        }
    }

    pub fn reset_send_errors(&self) {
        if let Ok(mut h) = self.send_errors_us.lock() {
            h.reset();
        }
    }

    fn pick_client(&self) -> Option<TritonClient> {
        let clients = self.clients.read().ok()?.clone();
        if clients.is_empty() {
            return None;
        }
        let i = self.next_client.fetch_add(1, Ordering::Relaxed) % clients.len();
        Some(clients[i].clone())
    }
}

/// Sends one request whose intended send time was `intended`, and records the outcome.
///
/// Returns false when the arrival was dropped (in-flight bound and backlog both full). An arrival
/// that finds the bound reached waits in the backlog; whichever request frees a slot sends it, so
/// the wait shows in latency from the intended time but not in service latency.
pub async fn send_one(shared: Arc<TenantShared>, intended: Instant) -> bool {
    if shared.try_acquire() {
        run_slot(&shared, intended).await;
        return true;
    }
    if !shared.push_backlog(intended) {
        shared.recorder.record_drop();
        return false;
    }
    // A slot may have freed while this arrival queued: then nobody else will pick it up.
    if shared.try_acquire() {
        match shared.pop_backlog() {
            Some(next) => run_slot(&shared, next).await,
            None => shared.release(),
        }
    }
    true
}

/// Holds one in-flight slot: sends, then keeps sending from the backlog until it is empty.
async fn run_slot(shared: &Arc<TenantShared>, mut intended: Instant) {
    loop {
        send_and_record(shared, intended).await;
        if let Some(next) = shared.pop_backlog() {
            intended = next;
            continue;
        }
        shared.release();
        // An arrival may have queued between the pop and the release.
        if shared.backlog() > 0 && shared.try_acquire() {
            match shared.pop_backlog() {
                Some(next) => {
                    intended = next;
                    continue;
                }
                None => shared.release(),
            }
        }
        break;
    }
}

async fn send_and_record(shared: &TenantShared, intended: Instant) {
    let request = match shared.template.read() {
        Ok(t) => ModelInferRequest::clone(&t),
        Err(_) => return,
    };
    shared.recorder.record_sent();
    let Some(client) = shared.pick_client() else {
        shared.recorder.record_error("UNAVAILABLE");
        return;
    };
    let sent = Instant::now();
    let send_error = sent.saturating_duration_since(intended);
    if let Ok(mut h) = shared.send_errors_us.lock() {
        h.saturating_record(send_error.as_micros() as u64);
    }
    if send_error > LATE_THRESHOLD {
        shared.recorder.record_late();
    }
    let result = client.infer_within(request, shared.deadline).await;
    let done = Instant::now();
    match result {
        Ok(_) => shared.recorder.record_ok(
            done.saturating_duration_since(intended),
            done.saturating_duration_since(sent),
        ),
        Err(e) => {
            if e.is_connection_error() {
                if let Ok(mut last) = shared.last_connection_error.lock() {
                    *last = Some(e.to_string());
                }
                shared.connection_lost.store(true, Ordering::Relaxed);
            }
            shared.recorder.record_error(e.code_name());
        }
    }
}

enum ClockMsg {
    Add {
        shared: Arc<TenantShared>,
        process: Box<ArrivalProcess>,
    },
    Remove(TenantId),
    SetRate(TenantId, f64),
    /// Re-anchors a tenant's schedule at now (after a resume), so a pause is never caught up.
    Reanchor(TenantId),
    Stop,
}

/// The open-loop clock: one thread for every rate-driven tenant of a run.
pub struct Clock {
    tx: mpsc::Sender<ClockMsg>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Clock {
    /// Starts the clock thread; requests are spawned onto `runtime`.
    pub fn start(runtime: Handle) -> std::io::Result<Clock> {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("perseus-clock".into())
            .spawn(move || clock_loop(rx, runtime))?;
        Ok(Clock {
            tx,
            thread: Some(thread),
        })
    }

    pub fn add(&self, shared: Arc<TenantShared>, process: ArrivalProcess) {
        let _ = self.tx.send(ClockMsg::Add {
            shared,
            process: Box::new(process),
        });
    }

    pub fn remove(&self, id: TenantId) {
        let _ = self.tx.send(ClockMsg::Remove(id));
    }

    pub fn set_rate(&self, id: TenantId, per_s: f64) {
        let _ = self.tx.send(ClockMsg::SetRate(id, per_s));
    }

    pub fn reanchor(&self, id: TenantId) {
        let _ = self.tx.send(ClockMsg::Reanchor(id));
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        let _ = self.tx.send(ClockMsg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Scheduled {
    shared: Arc<TenantShared>,
    process: ArrivalProcess,
    next: Instant,
}

/// Issues one arrival from the clock thread: polls the send once here, which takes it up to the
/// gRPC channel (or into the backlog), and spawns the rest — the wait for the response — onto the
/// runtime. Polling with a no-op waker is sound: the spawned task polls again at once, registering
/// its real waker, and every future involved re-checks readiness on each poll.
fn dispatch(runtime: &Handle, shared: Arc<TenantShared>, intended: Instant) {
    let mut send: Pin<Box<dyn Future<Output = bool> + Send>> = Box::pin(send_one(shared, intended));
    let mut cx = Context::from_waker(Waker::noop());
    if send.as_mut().poll(&mut cx).is_pending() {
        runtime.spawn(send);
    }
}

fn clock_loop(rx: mpsc::Receiver<ClockMsg>, runtime: Handle) {
    crate::timing::tighten_timer_slack();
    // The first poll of a send (see `dispatch`) needs the runtime's context for its timers and I/O.
    let _runtime_context = runtime.enter();
    let mut budget = crate::timing::SpinBudget::new(SPIN_SHARE);
    let mut tenants: HashMap<TenantId, Scheduled> = HashMap::new();
    loop {
        // Apply every pending message first: a rate change takes effect before the next arrival.
        loop {
            match rx.try_recv() {
                Ok(msg) => {
                    if !apply(&mut tenants, msg) {
                        return;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let next = tenants
            .values()
            .filter(|s| !s.shared.is_paused())
            .map(|s| s.next)
            .min();
        let now = Instant::now();
        match next {
            None => match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(msg) => {
                    if !apply(&mut tenants, msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            },
            Some(due) if due > now => {
                // Sleep, but wake for messages (a rate change must not wait for a slow arrival);
                // spin the last stretch when the budget allows, else sleep all the way.
                if due <= now + SPIN_MARGIN && budget.spin_until(due, || true) {
                    continue;
                }
                let margin = if due > now + SPIN_MARGIN {
                    SPIN_MARGIN
                } else {
                    Duration::ZERO
                };
                let wait = (due - now - margin).min(Duration::from_millis(50));
                match rx.recv_timeout(wait) {
                    Ok(msg) => {
                        if !apply(&mut tenants, msg) {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            Some(_) => {
                let now = Instant::now();
                for s in tenants.values_mut() {
                    if s.shared.is_paused() {
                        continue;
                    }
                    // Every arrival that is due goes out now with its own intended time; a clock
                    // that fell behind sends them late (and they are counted late), never skips.
                    let mut guard = 0;
                    while s.next <= now && guard < 10_000 {
                        dispatch(&runtime, Arc::clone(&s.shared), s.next);
                        s.next += s.process.next_gap();
                        guard += 1;
                    }
                }
            }
        }
    }
}

fn apply(tenants: &mut HashMap<TenantId, Scheduled>, msg: ClockMsg) -> bool {
    match msg {
        ClockMsg::Add {
            shared,
            mut process,
        } => {
            let next = Instant::now() + process.next_gap();
            tenants.insert(
                shared.id,
                Scheduled {
                    shared,
                    process: *process,
                    next,
                },
            );
        }
        ClockMsg::Remove(id) => {
            tenants.remove(&id);
        }
        ClockMsg::SetRate(id, per_s) => {
            if let Some(s) = tenants.get_mut(&id) {
                s.process.set_rate(per_s);
                // Re-anchor at now: the new rate starts here, with no burst to catch up.
                s.next = Instant::now() + s.process.next_gap();
            }
        }
        ClockMsg::Reanchor(id) => {
            if let Some(s) = tenants.get_mut(&id) {
                s.next = Instant::now() + s.process.next_gap();
            }
        }
        ClockMsg::Stop => return false,
    }
    true
}

/// A closed-loop tenant: `target` worker tasks, each sending its next request when the previous one
/// completes. Changing the concurrency adds workers or lets the surplus ones exit.
pub struct ClosedLoop {
    shared: Arc<TenantShared>,
    target: Arc<AtomicU32>,
    running: Arc<AtomicU32>,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
}

impl ClosedLoop {
    pub fn start(shared: Arc<TenantShared>, n: u32) -> ClosedLoop {
        let cl = ClosedLoop {
            shared,
            target: Arc::new(AtomicU32::new(0)),
            running: Arc::new(AtomicU32::new(0)),
            wake: Arc::new(Notify::new()),
            stopped: Arc::new(AtomicBool::new(false)),
        };
        cl.set_concurrency(n);
        cl
    }

    pub fn set_concurrency(&self, n: u32) {
        self.target.store(n, Ordering::Relaxed);
        while self.running.load(Ordering::Relaxed) < n {
            let index = self.running.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(closed_worker(
                index,
                Arc::clone(&self.shared),
                Arc::clone(&self.target),
                Arc::clone(&self.running),
                Arc::clone(&self.wake),
                Arc::clone(&self.stopped),
            ));
        }
        self.wake.notify_waiters();
    }

    /// Wakes paused workers after a resume.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }
}

impl Drop for ClosedLoop {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.wake.notify_waiters();
    }
}

async fn closed_worker(
    index: u32,
    shared: Arc<TenantShared>,
    target: Arc<AtomicU32>,
    running: Arc<AtomicU32>,
    wake: Arc<Notify>,
    stopped: Arc<AtomicBool>,
) {
    loop {
        if stopped.load(Ordering::Relaxed) || index >= target.load(Ordering::Relaxed) {
            break;
        }
        if shared.is_paused() {
            let notified = wake.notified();
            // Re-check after registering, then wait with a timeout so a missed wake-up cannot
            // strand the worker.
            if shared.is_paused() {
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
            continue;
        }
        let sent = send_one(Arc::clone(&shared), Instant::now()).await;
        if !sent || shared.connection_lost.load(Ordering::Relaxed) {
            // Do not spin against a server that is down.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    running.fetch_sub(1, Ordering::Relaxed);
}
