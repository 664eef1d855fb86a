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

use super::recording::Recording;
use crate::vocab::command::ReplayCommand;
use crate::vocab::snapshot::{History, ReplayInfo, Snapshot};

/// The speeds [`ReplayCommand::CycleSpeed`] steps through.
pub const REPLAY_SPEEDS: [f64; 3] = [1.0, 2.0, 4.0];

struct Player {
    snaps: Vec<Snapshot>,
    idx: usize,
    history: Arc<History>,
    speed: f64,
    paused: bool,
    start_s: f64,
    length_s: f64,
}

impl Player {
    fn position_s(&self, idx: usize) -> f64 {
        (self.snaps[idx].elapsed_s - self.start_s).max(0.0)
    }

    fn at_end(&self) -> bool {
        self.idx + 1 >= self.snaps.len()
    }

    /// Recorded time to the next snapshot, at the current speed.
    fn gap(&self) -> Option<Duration> {
        let next = self.snaps.get(self.idx + 1)?;
        let dt = (next.elapsed_s - self.snaps[self.idx].elapsed_s) / self.speed;
        Some(Duration::from_secs_f64(if dt.is_finite() {
            dt.clamp(0.0, 3600.0)
        } else {
            0.0
        }))
    }

    fn fresh_history(&self) -> History {
        History::for_tick(self.snaps[0].tick_s)
    }

    fn advance(&mut self) {
        self.idx += 1;
        Arc::make_mut(&mut self.history).push(&self.snaps[self.idx]);
    }

    /// Moves to the last snapshot at or before `position_s`, rebuilding history from the start
    /// when that lies behind the current one.
    fn seek_to(&mut self, position_s: f64) {
        let target = position_s.clamp(0.0, self.length_s);
        let idx = self
            .snaps
            .iter()
            .rposition(|s| s.elapsed_s - self.start_s <= target + 1e-9)
            .unwrap_or(0);
        if idx < self.idx {
            let mut history = self.fresh_history();
            for s in &self.snaps[..=idx] {
                history.push(s);
            }
            self.history = Arc::new(history);
            self.idx = idx;
        } else {
            while self.idx < idx {
                self.advance();
            }
        }
    }

    fn publish(&self, tx: &watch::Sender<Arc<Snapshot>>) {
        let mut snap = self.snaps[self.idx].clone();
        snap.history = Arc::clone(&self.history);
        snap.replay = Some(ReplayInfo {
            position_s: self.position_s(self.idx),
            length_s: self.length_s,
            speed: self.speed,
            paused: self.paused || self.at_end(),
        });
        tx.send_replace(Arc::new(snap));
    }
}

/// Plays `rec` onto `tx`, obeying `ctrl`; see the module doc for when it returns.
pub async fn replay(
    rec: Recording,
    tx: watch::Sender<Arc<Snapshot>>,
    mut ctrl: mpsc::Receiver<ReplayCommand>,
) {
    let Some(first) = rec.snapshots.first() else {
        return;
    };
    let start_s = first.elapsed_s;
    let length_s = rec
        .snapshots
        .iter()
        .map(|s| s.elapsed_s - start_s)
        .fold(0.0_f64, f64::max);
    let mut p = Player {
        history: Arc::new(History::for_tick(first.tick_s)),
        snaps: rec.snapshots,
        idx: 0,
        speed: REPLAY_SPEEDS[0],
        paused: false,
        start_s,
        length_s,
    };
    Arc::make_mut(&mut p.history).push(&p.snaps[0]);
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
