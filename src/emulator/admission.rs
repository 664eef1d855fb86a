//! The emulator's bound on what admitted, unanswered requests hold.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one request is charged beyond its tensors while it waits: the decoded message, its HTTP/2
/// stream, the handler's task and its completion channel. An estimate, deliberately on the high side,
/// so that a flood of tiny requests (`simple`'s are 128 bytes) is bounded too.
pub(crate) const REQUEST_OVERHEAD_BYTES: u64 = 16 * 1024;

/// The emulator's own bound on what admitted, unanswered requests hold, so an overloaded emulator
/// refuses work instead of growing without limit (Triton bounds only queues that have a policy).
#[derive(Debug)]
pub(crate) struct Admission {
    held: AtomicU64,
    pub limit: u64,
}

/// Bytes charged to one admitted request, returned when it is answered (or dropped).
pub(crate) struct Held<'a> {
    admission: &'a Admission,
    bytes: u64,
}

impl Admission {
    pub(crate) fn new(limit: u64) -> Admission {
        Admission {
            held: AtomicU64::new(0),
            limit,
        }
    }

    /// Charges `bytes`, or returns what is held now when that would pass the limit.
    pub(crate) fn admit(&self, bytes: u64) -> Result<Held<'_>, u64> {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let after = held.saturating_add(bytes);
            if after > self.limit {
                return Err(held);
            }
            match self
                .held
                .compare_exchange_weak(held, after, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Held {
                        admission: self,
                        bytes,
                    });
                }
                Err(now) => held = now,
            }
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.admission.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}
