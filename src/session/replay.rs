//! Replay: a recording fed to the dashboard in place of an engine.
//!
//! Snapshots are published on the same watch channel the engine would use, at the recorded pace
//! divided by the speed, with chart history rebuilt through [`History::push`] exactly as the engine
//! builds it (so a seek backwards replays history from the start rather than guessing).
//!
//! Lifetime: while someone can still send commands, the last snapshot is held (shown paused) so
//! the viewer can seek back or press play to start over. Once the command sender is dropped the
//! replay plays to the end and returns; it also returns as soon as nobody watches any more.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::recording::RecordingIndex;
use crate::vocab::command::ReplayCommand;
use crate::vocab::snapshot::{History, Notice, NoticeLevel, ReplayInfo, Snapshot};

/// The speeds [`ReplayCommand::CycleSpeed`] steps through.
pub const REPLAY_SPEEDS: [f64; 3] = [1.0, 2.0, 4.0];

struct Player {
    rec: RecordingIndex,
    /// Snapshots that can be shown: all of the index, or fewer once one could not be read again.
    len: usize,
    idx: usize,
    current: Snapshot,
    history: Arc<History>,
    speed: f64,
    paused: bool,
    start_s: f64,
    length_s: f64,
    /// Shown with every snapshot: what the index skipped, and any later failure to read.
    warnings: Vec<(NoticeLevel, String)>,
}

impl Player {
    fn elapsed_s(&self, idx: usize) -> f64 {
        self.rec.elapsed_s(idx).unwrap_or(self.start_s)
    }

    fn position_s(&self, idx: usize) -> f64 {
        (self.elapsed_s(idx) - self.start_s).max(0.0)
    }

    fn at_end(&self) -> bool {
        self.idx + 1 >= self.len
    }

    /// Recorded time to the next snapshot, at the current speed.
    fn gap(&self) -> Option<Duration> {
        if self.at_end() {
            return None;
        }
        let dt = (self.elapsed_s(self.idx + 1) - self.elapsed_s(self.idx)) / self.speed;
        Some(Duration::from_secs_f64(if dt.is_finite() {
            dt.clamp(0.0, 3600.0)
        } else {
            0.0
        }))
    }

    /// Reads snapshot `idx`; a file that changed under the replay ends it at the last good one.
    fn load(&mut self, idx: usize) -> Option<Snapshot> {
        match self.rec.load(idx) {
            Ok(s) => Some(s),
            Err(e) => {
                self.warnings.push((NoticeLevel::Error, e.to_string()));
                self.len = self.len.min(idx);
                None
            }
        }
    }

    fn advance(&mut self) {
        if let Some(next) = self.load(self.idx + 1) {
            self.idx += 1;
            Arc::make_mut(&mut self.history).push(&next);
            self.current = next;
        }
    }

    /// Moves to the last snapshot at or before `position_s`, rebuilding history from the start
    /// when that lies behind the current one.
    fn seek_to(&mut self, position_s: f64) {
        let target = position_s.clamp(0.0, self.length_s);
        let idx = (0..self.len)
            .rev()
            .find(|&i| self.elapsed_s(i) - self.start_s <= target + 1e-9)
            .unwrap_or(0);
        if idx < self.idx {
            let mut history = History::for_tick(self.rec.tick_s());
            let mut shown = None;
            for i in 0..=idx {
                let Some(s) = self.load(i) else {
                    break;
                };
                history.push(&s);
                shown = Some((i, s));
            }
            if let Some((i, s)) = shown {
                self.history = Arc::new(history);
                self.idx = i;
                self.current = s;
            }
        } else {
            while self.idx < idx && !self.at_end() {
                self.advance();
            }
        }
    }

    fn publish(&self, tx: &watch::Sender<Arc<Snapshot>>) {
        let mut snap = self.current.clone();
        snap.history = Arc::clone(&self.history);
        snap.replay = Some(ReplayInfo {
            position_s: self.position_s(self.idx),
            length_s: self.length_s,
            speed: self.speed,
            paused: self.paused || self.at_end(),
        });
        // Newest last, so the dashboard's notice line shows the damage without knowing about replay.
        snap.notices
            .extend(self.warnings.iter().map(|(level, text)| Notice {
                at_s: snap.elapsed_s,
                level: *level,
                text: text.clone(),
            }));
        tx.send_replace(Arc::new(snap));
    }
}

/// Plays `rec` onto `tx`, obeying `ctrl`; see the module doc for when it returns. Only the
/// snapshot on show is in memory: the rest are read from the file as the replay reaches them.
pub async fn replay(
    mut rec: RecordingIndex,
    tx: watch::Sender<Arc<Snapshot>>,
    mut ctrl: mpsc::Receiver<ReplayCommand>,
) {
    let Some(start_s) = rec.elapsed_s(0) else {
        return;
    };
    let Ok(first) = rec.load(0) else {
        return;
    };
    let length_s = (0..rec.len())
        .filter_map(|i| rec.elapsed_s(i))
        .map(|e| e - start_s)
        .fold(0.0_f64, f64::max);
    let warnings = rec
        .damage()
        .map(|d| {
            let text = format!("{} is damaged, {d}", rec.path().display());
            vec![(NoticeLevel::Warn, text)]
        })
        .unwrap_or_default();
    let mut history = History::for_tick(rec.tick_s());
    history.push(&first);
    let mut p = Player {
        len: rec.len(),
        rec,
        idx: 0,
        current: first,
        history: Arc::new(history),
        speed: REPLAY_SPEEDS[0],
        paused: false,
        start_s,
        length_s,
        warnings,
    };
    p.publish(&tx);

    let mut ctrl_open = true;
    // When the next snapshot is due; `None` while paused or at the end.
    let mut next_at = p.gap().map(|g| Instant::now() + g);
    // While paused: how much of the gap to the next snapshot was left.
    let mut remaining = Duration::ZERO;
    loop {
        if p.at_end() && !ctrl_open {
            return;
        }
        let deadline = next_at;
        let due = async move {
            match deadline {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = tx.closed() => return,
            cmd = ctrl.recv(), if ctrl_open => {
                let Some(cmd) = cmd else {
                    ctrl_open = false;
                    if p.paused {
                        p.paused = false;
                        next_at = p.gap().map(|g| Instant::now() + g.min(remaining));
                    }
                    continue;
                };
                let now = Instant::now();
                match cmd {
                    ReplayCommand::TogglePause if p.at_end() => {
                        // Play again from the start.
                        p.seek_to(0.0);
                        p.paused = false;
                        next_at = p.gap().map(|g| now + g);
                    }
                    ReplayCommand::TogglePause if p.paused => {
                        p.paused = false;
                        next_at = p.gap().map(|g| now + g.min(remaining));
                    }
                    ReplayCommand::TogglePause => {
                        p.paused = true;
                        remaining = next_at.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                        next_at = None;
                    }
                    ReplayCommand::Seek(delta) => {
                        let delta = if delta.is_finite() { delta } else { 0.0 };
                        p.seek_to(p.position_s(p.idx) + delta);
                        remaining = p.gap().unwrap_or_default();
                        next_at = if p.paused { None } else { p.gap().map(|g| now + g) };
                    }
                    ReplayCommand::CycleSpeed => {
                        let old = p.speed;
                        let i = REPLAY_SPEEDS.iter().position(|s| *s == old).unwrap_or(0);
                        p.speed = REPLAY_SPEEDS[(i + 1) % REPLAY_SPEEDS.len()];
                        let scale = old / p.speed;
                        if let Some(t) = next_at {
                            next_at = Some(now + t.saturating_duration_since(now).mul_f64(scale));
                        }
                        remaining = remaining.mul_f64(scale);
                    }
                }
                p.publish(&tx);
            }
            () = due => {
                p.advance();
                p.publish(&tx);
                // Scheduled from the previous due time, so pacing does not drift with publishing.
                next_at = match (next_at, p.gap()) {
                    (Some(t), Some(g)) => Some(t + g),
                    _ => None,
                };
            }
        }
    }
}
