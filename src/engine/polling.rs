//! What the engine asks the server every tick or few: cumulative statistics (diffed into the
//! server-side window) and the model repository (for the model picker).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::error::PollError;
use crate::engine::{Engine, Event};
use crate::triton::{Extension, ModelStats, TritonError};
use crate::vocab::snapshot::{NoticeLevel, RepoModel};

/// Repository refresh period.
const REPO_EVERY: Duration = Duration::from_secs(2);

impl Engine {
    pub(super) fn poll_stats(&mut self, at: Instant) {
        if self.stats_in_flight {
            return;
        }
        let Some(control) = self.link.as_ref().map(|l| Arc::clone(&l.control)) else {
            return;
        };
        // A server without ModelStatistics was told once (see `on_stats`); asking again every
        // tick would only repeat its UNIMPLEMENTED.
        if control.supports(Extension::Statistics) == Some(false) {
            return;
        }
        self.stats_in_flight = true;
        let tx = self.events.clone();
        let timeout = self.cfg.spec.tick * 4;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, control.statistics()).await {
                Ok(r) => r.map_err(PollError::from),
                Err(_) => Err(PollError::TimedOut(timeout)),
            };
            let _ = tx.send(Event::Stats(at, result)).await;
        });
    }

    pub(super) fn on_stats(&mut self, at: Instant, result: Result<Vec<ModelStats>, PollError>) {
        self.stats_in_flight = false;
        let all = match result {
            Ok(all) => all,
            Err(PollError::Failed(e @ TritonError::Unsupported { .. })) => {
                self.notice(
                    NoticeLevel::Info,
                    format!("server breakdown (queue, compute) not reported: {e}"),
                );
                return;
            }
            Err(e) => {
                tracing::debug!("statistics: {e}");
                return;
            }
        };
        let window = self.window;
        let mut restarted = Vec::new();
        for t in &mut self.tenants {
            if let Some(s) = all.iter().find(|s| s.name == t.spec.model)
                && t.push_stats(at, s.clone(), window)
            {
                restarted.push(t.spec.model.clone());
            }
        }
        for model in restarted {
            self.notice(
                NoticeLevel::Warn,
                format!("the server's statistics for '{model}' went back: counting afresh"),
            );
        }
    }

    pub(super) fn refresh_repository(&mut self, now: Instant) {
        if self
            .last_repo
            .is_some_and(|t| now.duration_since(t) < REPO_EVERY)
        {
            return;
        }
        self.last_repo = Some(now);
        let Some(control) = self.link.as_ref().map(|l| Arc::clone(&l.control)) else {
            return;
        };
        if control.supports(Extension::ModelRepository) == Some(false) {
            return;
        }
        let knowledge = Arc::clone(&self.cfg.knowledge);
        let gpu = self.cfg.telemetry.view();
        let free = match (gpu.memory_total_bytes, gpu.memory_used_bytes) {
            (Some(t), Some(u)) => Some((t.value - u.value).max(0.0) as u64),
            _ => None,
        };
        let tx = self.events.clone();
        tokio::spawn(async move {
            let Ok(index) = control.repository_index().await else {
                return;
            };
            let models = index
                .into_iter()
                .map(|m| {
                    let loaded = m.state == "READY";
                    let memory_bytes = knowledge.model_memory(&m.name);
                    let fits = match (loaded, memory_bytes, free) {
                        (true, _, _) => Some(true),
                        (false, Some(need), Some(free)) => Some(need <= free),
                        _ => None,
                    };
                    RepoModel {
                        name: m.name,
                        state: m.state,
                        loaded,
                        memory_bytes,
                        fits,
                    }
                })
                .collect();
            let _ = tx.send(Event::Repo(models)).await;
        });
    }
}
