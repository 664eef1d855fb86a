//! The open-loop clock: one task or thread that issues every rate-driven tenant's arrivals on time.
//!
//! On Linux it is a task on the runtime woken by a [`PreciseTimer`] armed for the next arrival: the
//! worker the timer wakes sends the request itself, so an arrival costs one wake-up. Elsewhere, and
//! for the client-cost benchmark's baseline, it is an OS thread that sleeps to each arrival with its
//! timer slack tightened (see [`crate::timing`]) and hands the request to the runtime. Neither
//! spins: a spin takes a core that, on a small machine, the requests it times and the server they
//! go to need, and those would then be late for want of CPU.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::loadgen::arrival::ArrivalProcess;
use crate::loadgen::driver::{TenantShared, send_one};
#[cfg(target_os = "linux")]
use crate::timing::timer::PreciseTimer;
use crate::vocab::snapshot::TenantId;

/// The longest the clock sleeps without looking at its messages or its tenants again.
const MAX_SLEEP: Duration = Duration::from_millis(50);

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

/// The open-loop clock: one task or thread for every rate-driven tenant of a run.
pub struct Clock {
    inner: Inner,
}

enum Inner {
    Thread {
        tx: mpsc::Sender<ClockMsg>,
        thread: Option<thread::JoinHandle<()>>,
    },
    #[cfg(target_os = "linux")]
    Task {
        tx: tokio::sync::mpsc::UnboundedSender<ClockMsg>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Clock {
    /// Starts the clock on `runtime`: on Linux a timer task whose worker sends each request. With
    /// `deferred` false, or elsewhere, a thread: with `deferred` false it spawns each request onto
    /// the runtime at once, as the load generator first shipped did (the client-cost benchmark's
    /// baseline keeps that measurable); otherwise it sends each itself and hands it to the runtime
    /// when its response first wakes it ([`Parked`]).
    pub fn start(runtime: Handle, deferred: bool) -> std::io::Result<Clock> {
        #[cfg(target_os = "linux")]
        if deferred {
            let timer = {
                let _context = runtime.enter();
                PreciseTimer::new(Instant::now())?
            };
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let task = runtime.spawn(clock_task(rx, timer));
            return Ok(Clock {
                inner: Inner::Task { tx, task },
            });
        }
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("perseus-clock".into())
            .spawn(move || clock_loop(rx, runtime, deferred))?;
        Ok(Clock {
            inner: Inner::Thread {
                tx,
                thread: Some(thread),
            },
        })
    }

    fn send(&self, msg: ClockMsg) {
        match &self.inner {
            Inner::Thread { tx, .. } => {
                let _ = tx.send(msg);
            }
            #[cfg(target_os = "linux")]
            Inner::Task { tx, .. } => {
                let _ = tx.send(msg);
            }
        }
    }

    pub fn add(&self, shared: Arc<TenantShared>, process: ArrivalProcess) {
        self.send(ClockMsg::Add {
            shared,
            process: Box::new(process),
        });
    }

    pub fn remove(&self, id: TenantId) {
        self.send(ClockMsg::Remove(id));
    }

    pub fn set_rate(&self, id: TenantId, per_s: f64) {
        self.send(ClockMsg::SetRate(id, per_s));
    }

    pub fn reanchor(&self, id: TenantId) {
        self.send(ClockMsg::Reanchor(id));
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        self.send(ClockMsg::Stop);
        match &mut self.inner {
            Inner::Thread { thread, .. } => {
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            // Requests already sent run on as their own tasks; the clock only stops issuing.
            #[cfg(target_os = "linux")]
            Inner::Task { task, .. } => task.abort(),
        }
    }
}

/// The clock as a task: sleeps on its timer to the earliest due arrival (or a message), then sends
/// every arrival that is due, each as a task of its own on this worker.
#[cfg(target_os = "linux")]
async fn clock_task(mut rx: tokio::sync::mpsc::UnboundedReceiver<ClockMsg>, timer: PreciseTimer) {
    let epoch = timer.epoch();
    let mut tenants: HashMap<TenantId, Scheduled> = HashMap::new();
    // The arrival the timer is armed for; None once it has fired (a one-shot timer is then
    // disarmed) or before it is first armed.
    let mut armed_for = None;
    loop {
        // Apply every pending message first: a rate change takes effect before the next arrival.
        if !apply_pending(&mut tenants, &mut rx) {
            return;
        }
        let now = Instant::now();
        let next = tenants
            .values()
            .filter(|s| !s.shared.is_paused())
            .map(|s| s.next)
            .min();
        match next {
            Some(due) if due <= now => {
                send_due(&mut tenants, now, |shared, intended| {
                    tokio::spawn(send_one(shared, intended));
                });
                continue;
            }
            Some(due) if armed_for != Some(due) => {
                let at = u64::try_from(due.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
                if let Err(e) = timer.arm_at(at) {
                    tracing::error!("the load generator's timer failed, so it stops sending: {e}");
                    return;
                }
                armed_for = Some(due);
            }
            // Armed for it already, or nothing to arm for.
            Some(_) | None => {}
        }
        // Wake for the arrival or a message; with none due soon, also to look at pauses again.
        let idle = next.is_none_or(|due| due > now + MAX_SLEEP);
        tokio::select! {
            fired = timer.fired(), if next.is_some() => {
                if let Err(e) = fired {
                    tracing::error!("the load generator's timer failed, so it stops sending: {e}");
                    return;
                }
                armed_for = None;
            }
            msg = rx.recv() => {
                if !msg.is_some_and(|msg| apply(&mut tenants, msg)) {
                    return;
                }
            }
            () = tokio::time::sleep(MAX_SLEEP), if idle => {}
        }
    }
}

/// Issues every arrival that is due by `now` with its own intended time; a clock that fell behind
/// sends them late (and they are counted late), never skips.
fn send_due(
    tenants: &mut HashMap<TenantId, Scheduled>,
    now: Instant,
    mut issue: impl FnMut(Arc<TenantShared>, Instant),
) {
    for s in tenants.values_mut() {
        if s.shared.is_paused() {
            continue;
        }
        let mut guard = 0;
        while s.next <= now && guard < 10_000 {
            issue(Arc::clone(&s.shared), s.next);
            s.next += s.process.next_gap();
            guard += 1;
        }
    }
}

struct Scheduled {
    shared: Arc<TenantShared>,
    process: ArrivalProcess,
    next: Instant,
}

/// Issues one arrival from the clock thread: polls the send once here, which takes it up to the
/// gRPC connection (or into the backlog), and leaves the rest — the wait for the response — parked
/// in `parked` until the response (or the deadline) wakes it (see [`Parked`]).
fn dispatch(
    parked: Option<&Arc<Parked>>,
    runtime: &Handle,
    shared: Arc<TenantShared>,
    intended: Instant,
) {
    let mut send: SendFuture = Box::pin(send_one(shared, intended));
    match parked {
        Some(parked) => parked.start(send),
        // As first shipped: the spawned task polls again at once, registering its real waker,
        // and every future involved re-checks readiness on each poll, so a no-op waker is sound.
        None => {
            if send
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_pending()
            {
                runtime.spawn(send);
            }
        }
    }
}

type SendFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The sends the clock thread has polled once and not yet handed to the runtime.
///
/// Spawning a send at once from the clock thread has a worker woken, across threads, only to poll
/// it and find no response yet; parked here, it is spawned by its first wake-up, from the worker
/// that saw the response. Only the clock thread holds this strongly, and a wake-up neither takes a
/// send out nor drops one: h2 wakes streams under its own lock, and dropping a send takes that lock
/// (a task handed to a runtime that is shutting down is dropped inside `spawn`). The task a wake-up
/// spawns holds only a [`Weak`] and a key, and takes the send out once a worker polls it.
struct Parked {
    runtime: Handle,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// Keys are never reused, so a stale waker can only miss, never wake another send.
    next_key: u64,
    sends: HashMap<u64, Stage>,
}

enum Stage {
    /// The clock thread is polling it; the send is on that thread's stack.
    Polling,
    /// Woken during the clock thread's poll: the clock thread spawns it when the poll returns.
    WokenEarly,
    /// Pending, waiting for its first wake-up.
    Waiting(SendFuture),
    /// Woken: a task that takes it out is on its way to a worker.
    Handed(SendFuture),
}

impl Parked {
    fn new(runtime: Handle) -> Arc<Parked> {
        Arc::new(Parked {
            runtime,
            entries: Mutex::new(Entries::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Polls `send` once on this thread and parks it if it is pending. Called on the clock thread,
    /// which holds no other lock, so a send spawned (or dropped) here is dropped safely.
    fn start(self: &Arc<Self>, mut send: SendFuture) {
        let key = {
            let mut entries = self.lock();
            let key = entries.next_key;
            entries.next_key += 1;
            entries.sends.insert(key, Stage::Polling);
            key
        };
        let waker = Waker::from(Arc::new(ParkedWaker {
            parked: Arc::downgrade(self),
            key,
        }));
        let ready = send
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_ready();
        let mut entries = self.lock();
        if ready {
            entries.sends.remove(&key);
            return;
        }
        match entries.sends.remove(&key) {
            Some(Stage::WokenEarly) => {
                drop(entries);
                self.runtime.spawn(send);
            }
            _ => {
                entries.sends.insert(key, Stage::Waiting(send));
            }
        }
    }

    /// Spawns every send still parked, from the clock thread as it stops: each is polled again on
    /// a worker with the runtime's own waker, so a request in flight still completes and is counted.
    fn hand_over_all(&self) {
        let sends = std::mem::take(&mut self.lock().sends);
        for (_, stage) in sends {
            if let Stage::Waiting(send) | Stage::Handed(send) = stage {
                self.runtime.spawn(send);
            }
        }
    }
}

/// The clock thread's strong hold on the parked sends: dropped (on return or unwind), it hands
/// every send still parked to the runtime before the registry can be freed.
struct ParkedGuard(Arc<Parked>);

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        self.0.hand_over_all();
    }
}

/// A parked send's waker: a weak reference and a key, so that dropping it never drops a send.
struct ParkedWaker {
    parked: Weak<Parked>,
    key: u64,
}

impl Wake for ParkedWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Gone: the clock thread has stopped and handed every send over already.
        let Some(parked) = self.parked.upgrade() else {
            return;
        };
        let hand_over = {
            let mut entries = parked.lock();
            let Some(stage) = entries.sends.get_mut(&self.key) else {
                return;
            };
            match std::mem::replace(stage, Stage::WokenEarly) {
                Stage::Polling => false,
                Stage::Waiting(send) => {
                    *stage = Stage::Handed(send);
                    true
                }
                // Already woken: put it back as it was, dropping nothing.
                other => {
                    *stage = other;
                    false
                }
            }
        };
        if hand_over {
            // Dropped inside `spawn` by a runtime shutting down, this task owns no send.
            let weak = Weak::clone(&self.parked);
            let key = self.key;
            parked.runtime.spawn(async move {
                let send = weak.upgrade().and_then(|p| p.lock().sends.remove(&key));
                if let Some(Stage::Handed(send)) = send {
                    send.await;
                }
            });
        }
        // While the clock thread runs it holds the registry, and once stopped it has emptied it,
        // so this reference, even the last one, never drops a send.
        drop(parked);
    }
}

fn clock_loop(mut rx: mpsc::Receiver<ClockMsg>, runtime: Handle, deferred: bool) {
    crate::timing::tighten_timer_slack();
    // What the first poll of a send wakes (its connection) hears of it through a doorbell.
    crate::timing::doorbell::mark_outside_runtime();
    // The first poll of a send (see `dispatch`) needs the runtime's context for its timers and I/O.
    let _runtime_context = runtime.enter();
    let parked = ParkedGuard(Parked::new(runtime.clone()));
    let mut tenants: HashMap<TenantId, Scheduled> = HashMap::new();
    loop {
        // Apply every pending message first: a rate change takes effect before the next arrival.
        if !apply_pending(&mut tenants, &mut rx) {
            return;
        }
        let next = tenants
            .values()
            .filter(|s| !s.shared.is_paused())
            .map(|s| s.next)
            .min();
        let now = Instant::now();
        match next {
            None => match rx.recv_timeout(MAX_SLEEP) {
                Ok(msg) => {
                    if !apply(&mut tenants, msg) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            },
            Some(due) if due > now => {
                // Sleep, but wake for messages: a rate change must not wait for a slow arrival.
                match rx.recv_timeout((due - now).min(MAX_SLEEP)) {
                    Ok(msg) => {
                        if !apply(&mut tenants, msg) {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            Some(_) => send_due(&mut tenants, Instant::now(), |shared, intended| {
                dispatch(deferred.then_some(&parked.0), &runtime, shared, intended);
            }),
        }
    }
}

/// Where a clock's messages wait: the thread's channel or the task's.
trait Inbox {
    /// The next message already waiting (`Ok(None)`: none), or `Err` once the handle is gone.
    fn next_waiting(&mut self) -> Result<Option<ClockMsg>, ()>;
}

impl Inbox for mpsc::Receiver<ClockMsg> {
    fn next_waiting(&mut self) -> Result<Option<ClockMsg>, ()> {
        match self.try_recv() {
            Ok(msg) => Ok(Some(msg)),
            Err(mpsc::TryRecvError::Empty) => Ok(None),
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        }
    }
}

#[cfg(target_os = "linux")]
impl Inbox for tokio::sync::mpsc::UnboundedReceiver<ClockMsg> {
    fn next_waiting(&mut self) -> Result<Option<ClockMsg>, ()> {
        use tokio::sync::mpsc::error::TryRecvError;
        match self.try_recv() {
            Ok(msg) => Ok(Some(msg)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(()),
        }
    }
}

/// Applies every message already waiting; false when the clock must stop (a `Stop`, or its handle
/// gone).
fn apply_pending(tenants: &mut HashMap<TenantId, Scheduled>, inbox: &mut impl Inbox) -> bool {
    loop {
        match inbox.next_waiting() {
            Ok(Some(msg)) => {
                if !apply(tenants, msg) {
                    return false;
                }
            }
            Ok(None) => return true,
            Err(()) => return false,
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::task::Poll;

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime")
    }

    thread_local! {
        /// Set while a test stands in for h2 waking, or dropping the waker of, a stream under its
        /// lock: a send dropped then would have deadlocked there.
        static UNDER_FOREIGN_LOCK: Cell<bool> = const { Cell::new(false) };
    }

    fn under_foreign_lock(f: impl FnOnce()) {
        UNDER_FOREIGN_LOCK.with(|l| l.set(true));
        f();
        UNDER_FOREIGN_LOCK.with(|l| l.set(false));
    }

    const ALIVE: u8 = 0;
    const DROPPED: u8 = 1;
    const DROPPED_UNDER_LOCK: u8 = 2;

    /// Records where the send that owns it was dropped.
    struct DropProbe(Arc<AtomicU8>);

    impl Drop for DropProbe {
        fn drop(&mut self) {
            let at = if UNDER_FOREIGN_LOCK.with(Cell::get) {
                DROPPED_UNDER_LOCK
            } else {
                DROPPED
            };
            self.0.store(at, Ordering::SeqCst);
        }
    }

    /// A send that hands out its first waker and stays pending until `release` fires.
    /// A registry on `runtime` with one send parked in it after its first poll: the registry,
    /// that poll's waker, what releases the send's response, where it reports finishing, and its
    /// drop probe.
    fn parked_send(
        runtime: &tokio::runtime::Runtime,
    ) -> (
        ParkedGuard,
        Waker,
        tokio::sync::oneshot::Sender<()>,
        mpsc::Receiver<&'static str>,
        Arc<AtomicU8>,
    ) {
        let parked = ParkedGuard(Parked::new(runtime.handle().clone()));
        let (waker_tx, waker_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(ALIVE));
        parked.0.start(pending_send(
            waker_tx,
            release_rx,
            done_tx,
            DropProbe(Arc::clone(&state)),
        ));
        let waker = waker_rx.recv().expect("polled once");
        (parked, waker, release_tx, done_rx, state)
    }

    fn pending_send(
        wakers: mpsc::Sender<Waker>,
        release: tokio::sync::oneshot::Receiver<()>,
        done: mpsc::Sender<&'static str>,
        probe: DropProbe,
    ) -> SendFuture {
        let mut release = Box::pin(release);
        let mut first = true;
        Box::pin(std::future::poll_fn(move |cx| {
            let _probe = &probe;
            if first {
                first = false;
                let _ = wakers.send(cx.waker().clone());
            }
            match release.as_mut().poll(cx) {
                Poll::Ready(_) => {
                    let _ = done.send("released");
                    Poll::Ready(true)
                }
                Poll::Pending => Poll::Pending,
            }
        }))
    }

    #[test]
    fn a_send_woken_during_its_first_poll_or_later_still_finishes() {
        let runtime = runtime();
        let parked = ParkedGuard(Parked::new(runtime.handle().clone()));
        let (done_tx, done_rx) = mpsc::channel();

        // Woken from inside the clock thread's poll: the wake must not be lost.
        let early_tx = done_tx.clone();
        let mut polled = false;
        parked.0.start(Box::pin(std::future::poll_fn(move |cx| {
            if polled {
                let _ = early_tx.send("early");
                return Poll::Ready(true);
            }
            polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        })));

        // Woken from another thread once the clock thread has let go of it.
        let (wake_tx, wake_rx) = tokio::sync::oneshot::channel::<()>();
        parked.0.start(Box::pin(async move {
            let _ = wake_rx.await;
            let _ = done_tx.send("late");
            true
        }));
        thread::spawn(move || wake_tx.send(()));

        let mut seen: Vec<&str> = (0..2)
            .map(|_| {
                done_rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("both sends finish")
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, ["early", "late"]);
        assert!(parked.0.lock().sends.is_empty(), "nothing left parked");
    }

    #[test]
    fn sends_still_parked_when_the_clock_stops_are_handed_over_and_finish() {
        let runtime = runtime();
        let (parked, first_waker, release_tx, done_rx, state) = parked_send(&runtime);
        assert_eq!(parked.0.lock().sends.len(), 1);

        // The clock stops with the send still waiting for its response.
        let weak = Arc::downgrade(&parked.0);
        drop(parked);
        assert!(
            weak.upgrade().is_none(),
            "the clock thread held the only strong reference"
        );
        assert_eq!(
            state.load(Ordering::SeqCst),
            ALIVE,
            "handed over, not dropped"
        );

        // The stale waker now does nothing; the response still reaches the send on a worker.
        first_waker.wake();
        release_tx.send(()).expect("the send is alive");
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok("released")
        );
    }

    #[test]
    fn neither_a_wake_nor_dropping_the_waker_drops_a_send() {
        let runtime = runtime();
        let (parked, waker, _release_tx, _done_rx, state) = parked_send(&runtime);

        // A runtime that has shut down drops at once, inside `spawn`, any task it is handed.
        runtime.shutdown_timeout(Duration::from_secs(10));
        under_foreign_lock(|| {
            waker.wake_by_ref();
            drop(waker);
        });
        assert_eq!(state.load(Ordering::SeqCst), ALIVE, "still parked");

        // The clock thread stops and hands it over: the runtime, shut down, drops it there, under
        // no lock of anyone's.
        drop(parked);
        assert_eq!(state.load(Ordering::SeqCst), DROPPED);
    }
}
