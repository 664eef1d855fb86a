//! Sending one arrival: take an in-flight slot or wait in the bounded backlog, send, record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::loadgen::driver::{LATE_THRESHOLD, TenantShared};

/// Sends one request whose intended send time was `intended`, and records the outcome.
///
/// Returns false when the arrival was dropped (in-flight bound and backlog both full). An arrival
/// that finds the bound reached waits in the backlog; whichever request frees a slot sends it, so
/// the wait shows in latency from the intended time but not in service latency.
pub async fn send_one(shared: Arc<TenantShared>, intended: Instant) -> bool {
    // How far behind its ideal clock the generator is, before any wait for a slot: the
    // client-bound rule's evidence (a slow server makes arrivals wait, never dispatch late).
    let lag = Instant::now().saturating_duration_since(intended);
    shared.recorder.record_dispatch(intended, lag);
    if let Some(bytes) = shared.try_acquire() {
        run_slot(&shared, intended, bytes).await;
        return true;
    }
    if !shared.push_backlog(intended) {
        shared.recorder.record_drop(intended);
        return false;
    }
    // A slot may have freed while this arrival queued: then nobody else will pick it up.
    if let Some(bytes) = shared.try_acquire() {
        match shared.pop_backlog() {
            Some(next) => run_slot(&shared, next, bytes).await,
            None => shared.release(bytes),
        }
    }
    true
}

/// Holds one in-flight slot (`bytes` charged to the byte bounds): sends, then keeps sending from
/// the backlog until it is empty.
async fn run_slot(shared: &Arc<TenantShared>, mut intended: Instant, mut bytes: u64) {
    loop {
        send_and_record(shared, intended).await;
        if let Some(next) = shared.pop_backlog() {
            intended = next;
            continue;
        }
        shared.release(bytes);
        // An arrival may have queued between the pop and the release.
        if shared.backlog() > 0
            && let Some(b) = shared.try_acquire()
        {
            bytes = b;
            match shared.pop_backlog() {
                Some(next) => {
                    intended = next;
                    continue;
                }
                None => shared.release(bytes),
            }
        }
        break;
    }
}

async fn send_and_record(shared: &TenantShared, intended: Instant) {
    let request = match shared.template.read() {
        Ok(t) => Arc::clone(&t),
        Err(_) => return,
    };
    // The send time decides whether the request counts in the measured period (see the meter).
    let sent = Instant::now();
    shared.recorder.record_sent(sent);
    let Some((clients, i)) = shared.pick_client() else {
        shared.recorder.record_error(sent, "UNAVAILABLE");
        return;
    };
    let client = &clients[i];
    let send_error = sent.saturating_duration_since(intended);
    if let Ok(mut guard) = shared.send_errors_us.lock()
        && let Some(h) = guard.as_mut()
    {
        h.saturating_record(send_error.as_micros() as u64);
    }
    shared
        .recorder
        .record_lateness(sent, send_error, LATE_THRESHOLD);
    let result = client.infer_prepared(&request, shared.deadline).await;
    let done = Instant::now();
    match result {
        Ok(response_bytes) => {
            if shared.wants_response_size() {
                shared.note_response_bytes(response_bytes);
            }
            shared.recorder.record_ok(
                sent,
                done.saturating_duration_since(intended),
                done.saturating_duration_since(sent),
            )
        }
        Err(e) => {
            if e.is_connection_error() {
                if let Ok(mut last) = shared.last_connection_error.lock() {
                    *last = Some(e.to_string());
                }
                shared.connection_lost.store(true, Ordering::Relaxed);
            }
            shared
                .recorder
                .record_error_message(sent, e.code_name(), || {
                    e.server_message()
                        .map_or_else(|| e.to_string(), str::to_owned)
                });
        }
    }
}
