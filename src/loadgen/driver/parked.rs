//! Sends the load generator's clock thread has polled once and not yet handed to the runtime:
//! where the clock is a thread (off Linux), each send's first poll runs on it, and the rest of
//! the send moves to a worker only when its response first wakes it.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Wake, Waker};

use tokio::runtime::Handle;

/// A send as the clock thread holds it: boxed, so that one registry holds every tenant's.
pub(super) type SendFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The sends the clock thread has polled once and not yet handed to the runtime.
///
/// Spawning a send at once from the clock thread has a worker woken, across threads, only to poll
/// it and find no response yet; parked here, it is spawned by its first wake-up, from the worker
/// that saw the response. Only the clock thread holds this strongly, and a wake-up neither takes a
/// send out nor drops one: h2 wakes streams under its own lock, and dropping a send takes that lock
/// (a task handed to a runtime that is shutting down is dropped inside `spawn`). The task a wake-up
/// spawns holds only a [`Weak`] and a key, and takes the send out once a worker polls it.
pub(super) struct Parked {
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
    pub(super) fn new(runtime: Handle) -> Arc<Parked> {
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
    pub(super) fn start(self: &Arc<Self>, mut send: SendFuture) {
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
pub(super) struct ParkedGuard(pub(super) Arc<Parked>);

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

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::mpsc;
    use std::task::Poll;
    use std::thread;
    use std::time::Duration;

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
