//! The wall clock for the simulation core: the sim is pure and event-driven, so something must feed it
//! `now` and hand each request its completion at the moment the modelled GPU finishes it.
//!
//! One dedicated OS thread (the driver) sleeps until the sim's next completion, with its timer
//! slack tightened (see [`crate::timing`]), so it wakes late only by the machine's wake-up latency.
//! The events before a completion (copies, compute, batcher timeouts) are the sim's own business:
//! whoever advances it next processes them in order, so waking for each would only cost a context
//! switch. It never spins: on a small machine a spinning clock takes the core that the served
//! connections and a client on the same machine need. Request handlers also advance the sim to
//! `now` before they submit (the sim must see events in time order), so whoever holds the lock
//! delivers whatever is due; so do the served connections on every read and write, through a
//! [`Ticker`]. Delivery lateness (delivered − the sim's `finished_at`) is recorded: it is the
//! emulator's own error, reported by the benchmarks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use crate::emulator::sim::{Completion, GpuSetup, ModelId, ModelSetup, Nanos, Sim, SimError};

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
    driver: OnceLock<Thread>,
}

/// The sim behind a lock, advanced in real time by its driver thread. Dropping it stops the driver.
pub(crate) struct RealTime {
    shared: Arc<Shared>,
    driver: Option<JoinHandle<()>>,
    /// How the driver's deliveries reach handlers when the clock is started inside a runtime:
    /// woken from the driver thread directly, each would wake two workers (see
    /// [`crate::timing::doorbell`]).
    relay: Option<crate::timing::doorbell::Relay>,
}

impl RealTime {
    pub(crate) fn start(gpu: GpuSetup) -> std::io::Result<RealTime> {
        let shared = Shared::new(gpu)?;
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
            driver: Some(handle),
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
        if let Some(handle) = self.driver.take() {
            handle.thread().unpark();
            let _ = handle.join();
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
            }),
            generation: AtomicU64::new(0),
            next_due: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            driver: OnceLock::new(),
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
        let earlier = self.publish_next_due(&state) < planned;
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

    /// Returns what it published.
    fn publish_next_due(&self, state: &State) -> Nanos {
        let next = state.sim.next_completion().unwrap_or(u64::MAX);
        self.next_due.store(next, Ordering::Release);
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
        assert!(completion.ok);
        let due = clock.epoch() + Duration::from_nanos(completion.finished_at);
        assert!(
            Instant::now() >= due && due >= submitted,
            "delivered before the modelled GPU finished"
        );
        let error = clock.scheduling_error();
        assert_eq!(error.count, 1, "its lateness is recorded");
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
