//! Closed-loop tenants: N requests always in flight, each worker sending when its last completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::loadgen::driver::{TenantShared, send_one};

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
    // A closed loop means to send each request as its predecessor's response comes back, so that
    // moment is the intended send time: the client's gap between the two is its lateness, part of
    // each cycle (and of the latency from the intended time).
    let mut intended = Instant::now();
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
            intended = Instant::now();
            continue;
        }
        let sent = send_one(Arc::clone(&shared), intended).await;
        if !sent || shared.connection_lost.load(Ordering::Relaxed) {
            // Do not spin against a server that is down.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        intended = Instant::now();
    }
    running.fetch_sub(1, Ordering::Relaxed);
}
