//! The recording, written on a blocking task of its own: the tick hands each snapshot over a
//! bounded channel and never waits for the disk. A write error stops the recording and is reported
//! back as an event; the snapshot then carries it, so a headless run can fail on it.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::error::PersistError;
use crate::engine::hooks::SnapshotSink;
use crate::engine::{Engine, Event};
use crate::vocab::snapshot::{NoticeLevel, Snapshot};

/// Snapshots that may wait for the disk (16 s of ticks at the default 250 ms) before the tick
/// starts skipping them.
const QUEUE: usize = 64;

/// A recording in progress.
pub(super) struct Recording {
    path: String,
    queue: mpsc::Sender<Arc<Snapshot>>,
    writer: JoinHandle<()>,
    /// Snapshots not recorded because the writer was behind.
    skipped: u64,
}

impl Recording {
    /// Starts the writer task for `sink`; failures come back on `events`.
    pub(super) fn start(mut sink: Box<dyn SnapshotSink>, events: mpsc::Sender<Event>) -> Self {
        let path = sink.path();
        let (queue, mut rx) = mpsc::channel::<Arc<Snapshot>>(QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            while let Some(snap) = rx.blocking_recv() {
                if let Err(e) = sink.write(&snap) {
                    let _ = events.blocking_send(Event::RecordingFailed(e));
                    return;
                }
            }
        });
        Recording {
            path,
            queue,
            writer,
            skipped: 0,
        }
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }
}

impl Engine {
    pub(super) fn set_recording(&mut self, on: bool) {
        if on == self.recording.is_some() {
            return;
        }
        if on {
            match self.cfg.persistence.start_recording(&self.current_spec()) {
                Ok(sink) => {
                    let rec = Recording::start(sink, self.events.clone());
                    self.notice(NoticeLevel::Info, format!("recording to {}", rec.path()));
                    self.recording_error = None;
                    self.recording = Some(rec);
                }
                Err(e) => self.notice(NoticeLevel::Error, format!("cannot record: {e}")),
            }
        } else if let Some(rec) = self.recording.take() {
            // Dropping the queue lets the writer finish what it holds and end.
            self.notice(NoticeLevel::Info, format!("recording saved: {}", rec.path));
        }
    }

    /// Hands a snapshot to the writer, skipping it (and counting) if the writer is behind.
    pub(super) fn record(&mut self, snap: &Arc<Snapshot>) {
        let Some(rec) = &mut self.recording else {
            return;
        };
        match rec.queue.try_send(Arc::clone(snap)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                rec.skipped += 1;
                if rec.skipped == 1 {
                    self.notice(
                        NoticeLevel::Warn,
                        "the disk is slower than the ticks: the recording skips snapshots",
                    );
                }
            }
            // The writer ended on an error, which arrives as its own event.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(super) fn recording_failed(&mut self, error: PersistError) {
        self.recording = None;
        let text = format!("recording stopped: {error}");
        self.notice(NoticeLevel::Error, text.clone());
        self.recording_error = Some(text);
    }

    /// Waits until the writer has written everything queued (the end of a run).
    pub(super) async fn close_recording(&mut self) {
        if let Some(rec) = self.recording.take() {
            drop(rec.queue);
            let _ = rec.writer.await;
        }
    }
}
