//! The open-loop clock: one OS thread that issues every rate-driven tenant's arrivals on time.
//!
//! It sleeps to each arrival with its timer slack tightened (see [`crate::timing`]) and never spins:
//! a spin takes a core that, on a small machine, the requests it times and the server they go to
//! need, and those would then be late for want of CPU.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::task::{Context, Waker};
use std::thread;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::loadgen::arrival::ArrivalProcess;
use crate::loadgen::driver::{TenantShared, send_one};
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
