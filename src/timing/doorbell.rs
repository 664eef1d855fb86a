//! Waking a task from a thread outside the async runtime through the runtime's own I/O driver.
//!
//! A task woken from such a thread (the load generator's clock) is scheduled from outside: tokio
//! unparks an idle worker, and that worker, on finding the task, unparks a second one to keep
//! searching, which finds nothing and parks again. On a small machine that is a wake-up, a futex
//! call and two context switches per request for nothing. Rung instead, a doorbell makes a byte
//! readable on a socket the task waits on: the worker asleep in the I/O driver wakes with the task
//! in its own queue, and no other worker is disturbed.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::io::{self, Write as _};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

thread_local! {
    static OUTSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as one that wakes tasks from outside the runtime.
pub(crate) fn mark_outside_runtime() {
    OUTSIDE.with(|o| o.set(true));
}

fn outside_runtime() -> bool {
    OUTSIDE.with(Cell::get)
}

/// A socket pair: rung from any thread, heard by a task of the runtime it was made in.
struct Doorbell {
    /// Set from the first ring until the task hears it, so a burst of rings writes one byte.
    rung: AtomicBool,
    bell: std::os::unix::net::UnixStream,
    ear: tokio::net::UnixStream,
}

impl Doorbell {
    /// Needs the runtime's context (the socket is registered with its I/O driver).
    fn new() -> io::Result<Doorbell> {
        let (bell, ear) = std::os::unix::net::UnixStream::pair()?;
        bell.set_nonblocking(true)?;
        ear.set_nonblocking(true)?;
        Ok(Doorbell {
            rung: AtomicBool::new(false),
            bell,
            ear: tokio::net::UnixStream::from_std(ear)?,
        })
    }

    fn ring(&self) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            // A full socket already holds a ring the task has not heard yet.
            let _ = (&self.bell).write(&[1]);
        }
    }

    /// Hears every ring so far and registers the task for the next one.
    fn listen(&self, cx: &mut Context<'_>) {
        while let Poll::Ready(Ok(())) = self.ear.poll_read_ready(cx) {
            let mut bytes = [0u8; 64];
            loop {
                match self.ear.try_read(&mut bytes) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return,
                }
            }
            // Cleared once the socket is empty, never before: a ring that found the flag set came
            // before this and its work is seen by the caller's poll that follows; one from now on
            // writes another byte.
            self.rung.store(false, Ordering::SeqCst);
        }
    }
}

/// The waker the guarded future sees: from a thread marked outside the runtime it rings the
/// doorbell, from anywhere else it wakes the task as usual.
struct Gate {
    doorbell: Doorbell,
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if outside_runtime() {
            self.doorbell.ring();
        } else {
            self.task.wake();
        }
    }
}

/// Runs `future`, a long-lived task's body (a connection), so that whatever wakes it from a thread
/// marked with [`mark_outside_runtime`] reaches it through a doorbell. Needs the runtime's context.
pub(crate) fn guarded<F: Future>(future: F) -> io::Result<impl Future<Output = F::Output>> {
    let gate = Arc::new(Gate {
        doorbell: Doorbell::new()?,
        task: AtomicWaker::new(),
    });
    Ok(async move {
        let waker = Waker::from(Arc::clone(&gate));
        let mut future = pin!(future);
        poll_fn(|cx| {
            gate.task.register(cx.waker());
            gate.doorbell.listen(cx);
            future.as_mut().poll(&mut Context::from_waker(&waker))
        })
        .await
    })
}

/// One doorbell for many short-lived waits (requests), and a task that hears it and wakes them:
/// a socket pair per wait would cost more than the wake-ups it saves.
pub(crate) struct Relay {
    inner: Arc<RelayInner>,
}

struct RelayInner {
    doorbell: Doorbell,
    /// Waits woken from outside the runtime since the relay task last ran.
    woken: std::sync::Mutex<Vec<Arc<Waiting>>>,
    stop: AtomicBool,
}

/// The waker one guarded wait's future sees.
struct Waiting {
    relay: std::sync::Weak<RelayInner>,
    task: AtomicWaker,
}

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self.relay.upgrade().filter(|_| outside_runtime()) {
            Some(relay) => {
                relay
                    .woken
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(Arc::clone(self));
                relay.doorbell.ring();
            }
            None => self.task.wake(),
        }
    }
}

impl Relay {
    /// Spawns the relay task on the current runtime; it ends when the relay is dropped.
    pub(crate) fn start() -> io::Result<Relay> {
        let inner = Arc::new(RelayInner {
            doorbell: Doorbell::new()?,
            woken: Default::default(),
            stop: AtomicBool::new(false),
        });
        let task = Arc::clone(&inner);
        tokio::spawn(poll_fn(move |cx| {
            task.doorbell.listen(cx);
            let woken = std::mem::take(
                &mut *task
                    .woken
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            for waiting in woken {
                waiting.task.wake();
            }
            if task.stop.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        Ok(Relay { inner })
    }

    /// Runs `future` so that a wake from a thread marked with [`mark_outside_runtime`] reaches
    /// its task through the relay.
    pub(crate) fn guard<F: Future>(&self, future: F) -> impl Future<Output = F::Output> + use<F> {
        let waiting = Arc::new(Waiting {
            relay: Arc::downgrade(&self.inner),
            task: AtomicWaker::new(),
        });
        async move {
            let waker = Waker::from(Arc::clone(&waiting));
            let mut future = pin!(future);
            poll_fn(|cx| {
                waiting.task.register(cx.waker());
                future.as_mut().poll(&mut Context::from_waker(&waker))
            })
            .await
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.doorbell.ring();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Pending until `release` is set, handing out each waker it is polled with.
    fn waiting(
        release: Arc<AtomicBool>,
        wakers: Arc<Mutex<Vec<Waker>>>,
    ) -> impl Future<Output = ()> {
        poll_fn(move |cx| {
            wakers.lock().expect("lock").push(cx.waker().clone());
            if release.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    /// Counts the wakes that reach it directly.
    struct Counting(std::sync::atomic::AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn outside_the_runtime_a_wake_rings_and_inside_it_wakes_the_task() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _context = runtime.enter();
        let gate = Arc::new(Gate {
            doorbell: Doorbell::new().expect("socket"),
            task: AtomicWaker::new(),
        });
        let task = Arc::new(Counting(Default::default()));
        let waker = Waker::from(Arc::clone(&gate));

        gate.task.register(&Waker::from(Arc::clone(&task)));
        let outside = waker.clone();
        std::thread::spawn(move || {
            mark_outside_runtime();
            outside.wake();
        })
        .join()
        .expect("the waking thread ran");
        assert_eq!(task.0.load(Ordering::SeqCst), 0, "not woken directly");
        assert!(gate.doorbell.rung.load(Ordering::Acquire), "rung instead");

        waker.wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "woken directly");
    }

    /// A two-worker runtime and a relay started in it.
    fn runtime_with_relay() -> (tokio::runtime::Runtime, Relay) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let relay = {
            let _context = runtime.enter();
            Relay::start().expect("socket")
        };
        (runtime, relay)
    }

    #[test]
    fn a_relayed_wait_woken_from_outside_the_runtime_finishes() {
        let (runtime, relay) = runtime_with_relay();
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let waiting = runtime.spawn(relay.guard(rx));
        std::thread::spawn(move || {
            mark_outside_runtime();
            // Early or late, the send's wake must reach the task.
            std::thread::sleep(Duration::from_millis(20));
            let _ = tx.send(7);
        });
        let got = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), waiting).await })
            .expect("woken in time")
            .expect("the task ran");
        assert_eq!(got.ok(), Some(7));
        assert!(
            relay.inner.woken.lock().expect("lock").is_empty(),
            "the relay task took the wait it woke"
        );
    }

    #[test]
    fn many_relayed_waits_woken_from_outside_all_finish() {
        let (runtime, relay) = runtime_with_relay();
        let (senders, waits): (Vec<_>, Vec<_>) = (0..20_000u32)
            .map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
                (tx, runtime.spawn(relay.guard(rx)))
            })
            .unzip();
        // Several threads at once, so that rings race with the relay task hearing them.
        let mut senders: Vec<_> = senders.into_iter().enumerate().collect();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mine: Vec<_> = senders.extract_if(.., |(i, _)| *i % 4 == t).collect();
                std::thread::spawn(move || {
                    mark_outside_runtime();
                    for (i, tx) in mine {
                        let _ = tx.send(i as u32);
                        if i % 97 == 0 {
                            std::thread::sleep(Duration::from_micros(20));
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a sending thread ran");
        }
        runtime.block_on(async {
            for (i, wait) in waits.into_iter().enumerate() {
                let got = tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .unwrap_or_else(|_| panic!("wait {i} was never woken"))
                    .expect("the task ran");
                assert_eq!(got.ok(), Some(i as u32));
            }
        });
    }

    #[test]
    fn a_wake_from_outside_the_runtime_and_one_from_inside_both_reach_the_task() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        for outside in [true, false] {
            let release = Arc::new(AtomicBool::new(false));
            let wakers = Arc::new(Mutex::new(Vec::new()));
            let task = {
                let _context = runtime.enter();
                let guarded =
                    guarded(waiting(Arc::clone(&release), Arc::clone(&wakers))).expect("socket");
                runtime.spawn(guarded)
            };
            while wakers.lock().expect("lock").is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let waker = wakers.lock().expect("lock")[0].clone();
            release.store(true, Ordering::Release);
            if outside {
                std::thread::spawn(move || {
                    mark_outside_runtime();
                    // A burst of rings is one byte on the socket, and still wakes the task.
                    waker.wake_by_ref();
                    waker.wake();
                })
                .join()
                .expect("the waking thread ran");
            } else {
                runtime.spawn(async move { waker.wake() });
            }
            runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
                .expect("woken in time")
                .expect("the task ran");
        }
    }
}
