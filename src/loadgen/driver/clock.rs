//! The open-loop clock: one task or thread that issues every rate-driven tenant's arrivals on time.
//!
//! On Linux it is a task on the runtime woken by a [`PreciseTimer`] armed for the next arrival: the
//! worker the timer wakes sends the request itself, so an arrival costs one wake-up. Elsewhere, and
//! for the client-cost benchmark's baseline, it is an OS thread that sleeps to each arrival with its
//! timer slack tightened (see [`crate::timing`]) and hands the request to the runtime. Neither
//! spins: a spin takes a core that, on a small machine, the requests it times and the server they
//! go to need, and those would then be late for want of CPU.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::loadgen::arrival::ArrivalProcess;
use crate::loadgen::driver::parked::{Parked, ParkedGuard, SendFuture};
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
