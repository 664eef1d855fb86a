//! The wall clock for the simulation core: the sim is pure and event-driven, so something must feed it
//! `now` and hand each request its completion at the moment the modelled GPU finishes it.
//!
//! The driver waits for the sim's next completion. On Linux, inside an async runtime, it is a task
//! woken by a [`PreciseTimer`] armed for that completion: whoever changes what comes next re-arms
//! it (a system call that wakes nobody), and the completions it delivers wake their handlers on
//! the same worker. Elsewhere it is an OS thread that sleeps with its timer slack tightened (see
//! [`crate::timing`]) and is unparked for an earlier completion; either wakes late only by the
//! machine's wake-up latency. The events before a completion (copies, compute, batcher timeouts)
//! are the sim's own business: whoever advances it next processes them in order, so waking for
//! each would only cost a context switch. It never spins: on a small machine a spinning clock
//! takes the core that the served connections and a client on the same machine need. Request
//! handlers also advance the sim to `now` before they submit (the sim must see events in time
//! order), so whoever holds the lock delivers whatever is due; so do the served connections on
//! every read and write, through a [`Ticker`]. Delivery lateness (delivered − the sim's `finished_at`) is recorded: it is the
//! emulator's own error, reported by the benchmarks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use crate::emulator::sim::{Completion, GpuSetup, ModelId, ModelSetup, Nanos, Sim, SimError};
#[cfg(target_os = "linux")]
use crate::timing::timer::PreciseTimer;

/// With nothing scheduled, the driver still wakes this often to notice a shutdown.
const IDLE_PARK: Duration = Duration::from_millis(20);

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("the model's queue is at its max_queue_size")]
    QueueFull,
}

/// Percentiles of completion lateness since the emulator started, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulingError {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

struct State {
    sim: Sim,
    now: Nanos,
    next_token: u64,
    waiting: HashMap<u64, oneshot::Sender<Completion>>,
    out: Vec<Completion>,
    /// Kept with the sim so that delivering does not take a second lock.
    lateness_ns: Histogram<u64>,
    /// The completion the timer is armed for (`u64::MAX`: disarmed), so that it is re-armed only
    /// when what comes next changes.
    armed_for: Nanos,
}

struct Shared {
    epoch: Instant,
    state: Mutex<State>,
    /// Bumped whenever a change wakes the driver (an earlier completion than it sleeps towards).
    generation: AtomicU64,
    /// The sim's next completion (ns since the epoch; `u64::MAX` for none) as of the last change,
    /// so a finishing handler can tell without the lock whether anything has come due.
    next_due: AtomicU64,
    stop: AtomicBool,
    /// The driver thread, to unpark for an earlier completion.
    driver: OnceLock<Thread>,
    /// The driver task's timer, armed for the next completion under the lock.
    #[cfg(target_os = "linux")]
    timer: OnceLock<PreciseTimer>,
}

/// What advances the sim in real time.
enum Driver {
    Thread(JoinHandle<()>),
    Task(tokio::task::JoinHandle<()>),
}

/// The sim behind a lock, advanced in real time by its driver. Dropping it stops the driver.
pub(crate) struct RealTime {
    shared: Arc<Shared>,
    /// None in tests only: submissions and catch-ups alone deliver.
    driver: Option<Driver>,
    /// How a driver thread's deliveries reach handlers when the clock is started inside a runtime:
    /// woken from the thread directly, each would wake two workers (see
    /// [`crate::timing::doorbell`]).
    relay: Option<crate::timing::doorbell::Relay>,
}

impl RealTime {
    /// Starts the driver: a timer task on the current runtime where there is one (Linux), else a
    /// thread.
    pub(crate) fn start(gpu: GpuSetup) -> std::io::Result<RealTime> {
        let shared = Shared::new(gpu)?;
        #[cfg(target_os = "linux")]
        if tokio::runtime::Handle::try_current().is_ok() {
            let timer = PreciseTimer::new(shared.epoch)?;
            let _ = shared.timer.set(timer);
            let task = tokio::spawn(drive_on_timer(Arc::clone(&shared)));
            return Ok(RealTime {
                shared,
                driver: Some(Driver::Task(task)),
                relay: None,
            });
        }
        let for_driver = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name("perseus-emulator-clock".into())
            .spawn(move || drive(&for_driver))?;
        let _ = shared.driver.set(handle.thread().clone());
        let relay = tokio::runtime::Handle::try_current()
            .ok()
            .and_then(|_| crate::timing::doorbell::Relay::start().ok());
        Ok(RealTime {
            shared,
            driver: Some(Driver::Thread(handle)),
            relay,
        })
    }

    /// The clock with nobody watching it: only submissions and catch-ups deliver, so a test can see
    /// what one of those does on its own.
    #[cfg(test)]
    pub(crate) fn without_driver(gpu: GpuSetup) -> std::io::Result<RealTime> {
        Ok(RealTime {
            shared: Shared::new(gpu)?,
            driver: None,
            relay: None,
        })
    }

    /// Runs `f` on the sim after advancing it to now (and delivering what became due), so whatever
    /// `f` reads — counters, memory, utilization — is current.
    pub(crate) fn with_sim<R>(&self, f: impl FnOnce(&mut Sim, Nanos) -> R) -> R {
        // `f` may change what comes next (a load changes interference).
        self.shared.change(|state, now| f(&mut state.sim, now))
    }

    pub(crate) fn load(&self, setup: ModelSetup) -> Result<ModelId, SimError> {
        self.with_sim(|sim, _| sim.load(setup))
    }

    /// Unloads a model; its queued requests complete as failures, as Triton fails them.
    pub(crate) fn unload(&self, id: ModelId) -> Result<(), SimError> {
        self.shared
            .change(|state, now| state.sim.unload(id, now, &mut state.out))
    }

    /// Queues `batch` images for model `id` at the current instant; the receiver resolves when the
    /// modelled GPU finishes them. With `max_queued` > 0 a request that finds that many already
    /// waiting is refused, as Triton's queue policy refuses it; the check and the submission happen
    /// under one lock, so concurrent requests cannot overshoot the bound.
    pub(crate) fn submit(
        &self,
        id: ModelId,
        batch: u32,
        max_queued: u32,
    ) -> Result<oneshot::Receiver<Completion>, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.shared.change(|state, now| {
            if max_queued > 0 {
                let queued = state.sim.queued(id).ok_or(SimError::UnknownModel(id))?;
                if queued >= max_queued as usize {
                    return Err(SubmitError::QueueFull);
                }
            }
            let token = state.next_token;
            state.next_token += 1;
            state.sim.submit(now, id, batch, token)?;
            state.waiting.insert(token, tx);
            Ok(rx)
        })
    }

    /// Waits for a completion that [`RealTime::submit`] promised, through the relay if there is one.
    pub(crate) async fn completion(
        &self,
        done: oneshot::Receiver<Completion>,
    ) -> Result<Completion, oneshot::error::RecvError> {
        match &self.relay {
            Some(relay) => relay.guard(done).await,
            None => done.await,
        }
    }

    /// Delivers whatever has come due (see [`Ticker::catch_up`]). Request handlers call it as they
    /// finish.
    pub(crate) fn catch_up(&self) {
        self.shared.catch_up();
    }

    /// A handle for the served connections, which pass by the sim more often than anything else.
    pub(crate) fn ticker(&self) -> Ticker {
        Ticker {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Wall-clock instant of the sim's epoch, to turn sim times into Unix times.
    pub(crate) fn epoch(&self) -> Instant {
        self.shared.epoch
    }

    pub(crate) fn scheduling_error(&self) -> SchedulingError {
        let state = self.shared.lock();
        let hist = &state.lateness_ns;
        let us = |ns: u64| ns as f64 / 1_000.0;
        SchedulingError {
            count: hist.len(),
            p50_us: us(hist.value_at_quantile(0.50)),
            p99_us: us(hist.value_at_quantile(0.99)),
            max_us: us(hist.max()),
        }
    }
}

/// Lets code on the serving path deliver what has come due without owning the clock. Under a
/// saturating load every core is busy and the driver waits its turn for one, so completions are
/// delivered by whoever passes by the sim; a handler passes only as its request starts and ends,
/// a connection on every read and write. Cheap to clone: one per connection.
#[derive(Clone)]
pub(crate) struct Ticker {
    shared: Arc<Shared>,
}

impl Ticker {
    /// Delivers whatever has come due, unless someone holds the lock (and is delivering anyway).
    /// With nothing due it costs a clock read and an atomic load.
    pub(crate) fn catch_up(&self) {
        self.shared.catch_up();
    }
}

impl Drop for RealTime {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        match self.driver.take() {
            Some(Driver::Thread(handle)) => {
                handle.thread().unpark();
                let _ = handle.join();
            }
            Some(Driver::Task(task)) => {
                task.abort();
                // Whoever still waits gets no completion: their receivers see the sender dropped.
                self.shared.lock().waiting.clear();
            }
            None => {}
        }
    }
}

impl Shared {
    fn new(gpu: GpuSetup) -> std::io::Result<Arc<Shared>> {
        let lateness = Histogram::new_with_bounds(1, 60_000_000_000, 3)
            .map_err(|e| std::io::Error::other(format!("lateness histogram: {e}")))?;
        Ok(Arc::new(Shared {
            epoch: Instant::now(),
            state: Mutex::new(State {
                sim: Sim::new(gpu),
                now: 0,
                next_token: 0,
                waiting: HashMap::new(),
                out: Vec::new(),
                lateness_ns: lateness,
                armed_for: u64::MAX,
            }),
            generation: AtomicU64::new(0),
            next_due: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            driver: OnceLock::new(),
            #[cfg(target_os = "linux")]
            timer: OnceLock::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the sim in whatever state it was; serving on is better
        // than failing every later request.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a change to the sim at the current instant: advances to now, applies `f`, delivers what
    /// it completed, and publishes the next completion. The driver is woken only if that comes
    /// before the one it is waiting for: under load most submissions join a batcher or a queue
    /// behind a completion already planned, and waking it for those would only cost a futex call
    /// and a context switch. The wake comes after the lock is released, so the woken driver does
    /// not find it held.
    fn change<R>(&self, f: impl FnOnce(&mut State, Nanos) -> R) -> R {
        let mut state = self.lock();
        // What the driver sleeps towards; looking ahead once, after `f`, is enough.
        let planned = self.next_due.load(Ordering::Acquire);
        let now = self.advance_to_now(&mut state);
        let result = f(&mut state, now);
        self.deliver(&mut state);
        let earlier = self.publish_next_due(&mut state) < planned;
        drop(state);
        if earlier {
            self.generation.fetch_add(1, Ordering::Release);
            if let Some(driver) = self.driver.get() {
                driver.unpark();
            }
        }
        result
    }

    /// A driver that has lost its core for a scheduler slice must not hold every completion back with
    /// it, so anyone passing by delivers what is due; if the lock is taken, its holder delivers.
    fn catch_up(&self) {
        if self.now() < self.next_due.load(Ordering::Acquire) {
            return;
        }
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        self.advance(&mut state);
    }

    fn now(&self) -> Nanos {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Advances the sim to the current instant (never backwards), delivers what finished, and
    /// publishes the next completion.
    fn advance(&self, state: &mut State) -> Nanos {
        let now = self.advance_to_now(state);
        self.publish_next_due(state);
        now
    }

    /// [`Shared::advance`] without publishing, for a caller that changes the sim next.
    fn advance_to_now(&self, state: &mut State) -> Nanos {
        let now = self.now().max(state.now);
        state.now = now;
        let state_ref = &mut *state;
        state_ref.sim.advance(now, &mut state_ref.out);
        self.deliver(state_ref);
        now
    }

    /// Returns what it published. Re-arms the driver's timer (under the lock, so that two changes
    /// cannot leave it armed for the older one) when that has changed.
    fn publish_next_due(&self, state: &mut State) -> Nanos {
        let next = state.sim.next_completion().unwrap_or(u64::MAX);
        self.next_due.store(next, Ordering::Release);
        #[cfg(target_os = "linux")]
        if let Some(timer) = self.timer.get()
            && next != state.armed_for
        {
            // A timerfd that cannot be set is a broken process; catch-ups still deliver.
            if timer.arm_at(next).is_ok() {
                state.armed_for = next;
            }
        }
        next
    }

    fn deliver(&self, state: &mut State) {
        if state.out.is_empty() {
            return;
        }
        let delivered = self.now();
        for completion in state.out.drain(..) {
            // Failures at unload are not scheduled events; only real finishes measure the clock.
            if completion.ok {
                let _ = state
                    .lateness_ns
                    .record(delivered.saturating_sub(completion.finished_at).max(1));
            }
            if let Some(tx) = state.waiting.remove(&completion.token) {
                // The requester may have gone (client cancelled); nothing to do then.
                let _ = tx.send(completion);
            }
        }
    }
}

/// The driver loop: advance, then sleep until the next completion, or until a submission that may
/// have made an earlier one wakes it.
fn drive(shared: &Shared) {
    crate::timing::tighten_timer_slack();
    crate::timing::doorbell::mark_outside_runtime();
    while !shared.stop.load(Ordering::Acquire) {
        // Under load the handlers deliver most completions themselves (`catch_up`, `submit`), so the
        // driver takes the lock only when something is due, rather than queueing behind them.
        if shared.now() >= shared.next_due.load(Ordering::Acquire) {
            let mut state = shared.lock();
            shared.advance(&mut state);
        }
        let sleep = match shared.next_due.load(Ordering::Acquire) {
            u64::MAX => IDLE_PARK,
            due => Duration::from_nanos(due.saturating_sub(shared.now())),
        };
        if !sleep.is_zero() {
            // A wake-up that comes early (an unpark, or a spurious one) only goes round again.
            thread::park_timeout(sleep);
        }
    }
    // Whoever still waits gets no completion: their receivers see the sender dropped.
    let mut state = shared.lock();
    state.waiting.clear();
}

/// The driver as a task: delivers what is due each time its timer fires. The timer is armed for the
/// next completion by whoever publishes it ([`Shared::publish_next_due`]), so a submission with an
/// earlier completion needs no wake-up of its own.
#[cfg(target_os = "linux")]
async fn drive_on_timer(shared: Arc<Shared>) {
    let Some(timer) = shared.timer.get() else {
        return;
    };
    while !shared.stop.load(Ordering::Acquire) {
        if timer.fired().await.is_err() {
            return;
        }
        let mut state = shared.lock();
        // Fired for what an earlier catch-up already delivered: this only re-arms.
        state.armed_for = u64::MAX;
        shared.advance(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::vocab::spec::DynamicBatching;

    fn t4() -> RealTime {
        let catalog = Catalog::embedded().expect("embedded catalog");
        RealTime::start(crate::emulator::sim::gpu_setup(
            catalog.gpu("t4").expect("t4"),
        ))
        .expect("driver starts")
    }

    /// A slow model, one instance: a second request queues behind the first.
    fn slow_model(dynamic_batching: Option<DynamicBatching>) -> ModelSetup {
        ModelSetup {
            name: "slow".into(),
            alpha_ms: 5_000.0,
            beta_ms: 1.0,
            max_batch: 8,
            instances: 1,
            dynamic_batching,
            memory_bytes: 0,
            input_bytes_per_image: 0,
            output_bytes_per_image: 0,
        }
    }

    fn next_due(clock: &RealTime) -> Nanos {
        clock.shared.next_due.load(Ordering::Acquire)
    }

    #[test]
    fn the_driver_is_woken_only_for_an_earlier_completion() {
        let clock = t4();
        let id = clock.load(slow_model(None)).expect("fits");
        let generation = || clock.shared.generation.load(Ordering::Acquire);

        let before = generation();
        let _first = clock.submit(id, 1, 0).expect("submits");
        assert!(
            generation() > before,
            "an idle driver must hear of the first completion"
        );
        // Its finish, 5 s out, is what the driver sleeps towards: the copy in before it is no
        // reason to wake.
        let finish = next_due(&clock);
        assert!(
            (5_000_000_000..u64::MAX).contains(&finish),
            "the first request's finish, not its copy in: {finish}"
        );

        // The second is staged behind the first and cannot finish before it.
        let before = generation();
        let _second = clock.submit(id, 1, 0).expect("submits");
        assert_eq!(generation(), before);
        assert_eq!(next_due(&clock), finish);
        // Nor does a third, queued behind both: the driver's plan stands and waking it would be
        // wasted.
        let before = generation();
        let _third = clock.submit(id, 1, 0).expect("submits");
        assert_eq!(generation(), before);
        assert_eq!(next_due(&clock), finish);
    }

    #[test]
    fn the_driver_alone_delivers_a_completion_once_it_is_due() {
        // Nothing else passes by the sim: only the driver's timed sleep can deliver this.
        let clock = t4();
        let id = clock
            .load(ModelSetup {
                alpha_ms: 20.0,
                ..slow_model(None)
            })
            .expect("fits");
        let submitted = Instant::now();
        let completion = clock
            .submit(id, 1, 0)
            .expect("submits")
            .blocking_recv()
            .expect("the request is answered");
        delivered_on_time(&clock, &completion, submitted);
    }

    /// The only completion so far: a success, delivered no earlier than the modelled GPU finished
    /// it, with its lateness recorded.
    fn delivered_on_time(clock: &RealTime, completion: &Completion, submitted: Instant) {
        assert!(completion.ok);
        let due = clock.epoch() + Duration::from_nanos(completion.finished_at);
        assert!(
            Instant::now() >= due && due >= submitted,
            "delivered before the modelled GPU finished"
        );
        assert_eq!(
            clock.scheduling_error().count,
            1,
            "its lateness is recorded"
        );
    }

    #[test]
    fn on_a_runtime_the_timer_task_alone_delivers_an_earlier_completion_on_time() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let clock = t4();
            #[cfg(target_os = "linux")]
            assert!(
                matches!(clock.driver, Some(Driver::Task(_))),
                "inside a runtime the driver is a timer task"
            );
            let slow = clock.load(slow_model(None)).expect("fits");
            let fast = clock
                .load(ModelSetup {
                    name: "fast".into(),
                    alpha_ms: 20.0,
                    ..slow_model(None)
                })
                .expect("fits");
            // The timer is armed for this one's finish, seconds out ...
            let _held = clock.submit(slow, 1, 0).expect("submits");
            let submitted = Instant::now();
            // ... and must be brought forward for this one: nothing else passes by the sim.
            let rx = clock.submit(fast, 1, 0).expect("submits");
            let completion = tokio::time::timeout(Duration::from_secs(3), clock.completion(rx))
                .await
                .expect("delivered at its own finish, not the slow one's")
                .expect("the request is answered");
            delivered_on_time(&clock, &completion, submitted);
        });
    }

    #[test]
    fn unloading_publishes_what_now_comes_next() {
        // A request held by the batcher waiting for a fuller batch: it finishes after its timeout.
        let batching = DynamicBatching {
            max_queue_delay_us: 60_000_000,
            preferred_batch_sizes: vec![8],
        };
        let clock = t4();
        let id = clock.load(slow_model(Some(batching))).expect("fits");
        let rx = clock.submit(id, 1, 0).expect("submits");
        assert_ne!(next_due(&clock), u64::MAX);
        clock.unload(id).expect("unloads");
        // The driver reads only this figure before sleeping: a stale one would have it wake for
        // an event that no longer exists.
        assert_eq!(next_due(&clock), u64::MAX);
        let completion = rx.blocking_recv().expect("the request is answered");
        assert!(
            !completion.ok,
            "a request queued on an unloaded model fails"
        );
    }

    #[test]
    fn catch_up_under_the_lock_returns_rather_than_deadlocking() {
        // A handler may finish while another holds the sim; it must move on, not wait.
        let clock = t4();
        clock.with_sim(|_, _| {
            // Something "due", so the lock-free pre-check lets it through to the lock.
            clock.shared.next_due.store(0, Ordering::Release);
            clock.catch_up();
        });
    }
}
