//! The simulator's inputs, outputs and errors.

use std::collections::BTreeMap;

use crate::vocab::spec::DynamicBatching;

/// Nanoseconds since the simulation's epoch (virtual or real, the core does not care).
pub type Nanos = u64;
/// A loaded model: its slot in the GPU model and that slot's generation. Slots are reused after an
/// unload, so the table (which every event walks) stays as small as the set of resident models, and
/// the generation makes a stale id after unload miss rather than hit the slot's next tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
}

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.slot, self.generation)
    }
}

pub(crate) const MIB: u64 = 1024 * 1024;

/// Fixed cost of issuing a copy (driver call and DMA setup), so even `simple` shows non-zero compute_input.
pub const COPY_SETUP_NS: u64 = 2_000;

/// Interference between batches of two different models, where the research data has a figure for the pair;
/// other pairs of different models use the GPU's [`GpuSetup::gamma`].
#[derive(Debug, Clone, PartialEq)]
pub struct PairGamma {
    pub a: String,
    pub b: String,
    pub gamma: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuSetup {
    pub name: String,
    pub memory_total_bytes: u64,
    /// Memory taken before any model is loaded (the server's CUDA context).
    pub context_bytes: u64,
    pub tdp_w: f64,
    pub idle_w: f64,
    /// Interference between different models: a running batch slows by (1 + gamma · occupancy of the other
    /// models' batches). Batches of one model (its instances) share the SMs without it.
    pub gamma: f64,
    /// Per-pair interference that overrides `gamma` for those two models.
    pub pair_gamma: Vec<PairGamma>,
    pub sm_clock_mhz: u32,
    /// Host↔device bandwidth per direction. One copy engine per direction serves every instance and model
    /// in turn, so the link is a shared resource and copies overlap with compute.
    pub link_bytes_per_s: f64,
    /// At most this many batches compute at once on the whole GPU (hardware work queues); further batches
    /// wait with their inputs already on the GPU. Under MPS the bound is per model.
    pub max_resident: u32,
    /// `Some`: each model is its own process under CUDA MPS rather than a model of one Triton process.
    pub mps: Option<Mps>,
}

/// What MPS changes in this model, when every model runs in its own process on an MPS server:
/// - each process has its own hardware work queues, so [`GpuSetup::max_resident`] bounds each model's
///   batches rather than the GPU's (assumed: CUDA_DEVICE_MAX_CONNECTIONS is a per-process setting);
/// - a process may be confined to a share p of the SMs (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE): a batch's
///   per-image work then takes β·b/p, its fixed part α does not change, and it keeps at most p of the
///   SMs busy, so processes whose shares sum to at most 1 do not contend for SMs (iGniter's V100 rows at
///   10 % and 50 % of the SMs are the check);
/// - interference γ stays: MPS partitions SMs, not L2 or memory bandwidth (research §3), and the
///   Gpulet and iGniter figures behind γ were measured under MPS.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mps {
    /// Per model name, the share of SMs (0, 1] its process may use; unlisted models use them all.
    pub sm_shares: Vec<(String, f64)>,
}

impl Mps {
    /// The SM share of `model`'s process.
    pub fn share(&self, model: &str) -> f64 {
        self.sm_shares
            .iter()
            .find(|(m, _)| m == model)
            .map_or(1.0, |&(_, p)| p)
            .clamp(1e-3, 1.0)
    }
}

impl GpuSetup {
    /// γ between batches of models `a` and `b`: zero within one model, the pair's figure where there is one.
    pub fn gamma_between(&self, a: &str, b: &str) -> f64 {
        if a == b {
            return 0.0;
        }
        self.pair_gamma
            .iter()
            .find(|p| (p.a == a && p.b == b) || (p.a == b && p.b == a))
            .map_or(self.gamma, |p| p.gamma)
    }

    /// Time the copy engine is busy moving `bytes` one way.
    pub fn copy_ns(&self, bytes: u64) -> u64 {
        let bw = if self.link_bytes_per_s > 0.0 {
            self.link_bytes_per_s
        } else {
            f64::INFINITY
        };
        COPY_SETUP_NS + (bytes as f64 * 1e9 / bw).round() as u64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSetup {
    pub name: String,
    /// Solo batch latency L(b) = alpha + beta·b; alpha is time that leaves the SMs idle (launches, framework).
    pub alpha_ms: f64,
    pub beta_ms: f64,
    pub max_batch: u32,
    /// At most this many batches of the model execute at once.
    pub instances: u32,
    /// `None`: each request executes alone, as Triton does without a dynamic batcher.
    pub dynamic_batching: Option<DynamicBatching>,
    pub memory_bytes: u64,
    /// Bytes per image the engine takes in / gives out (its input binding follows the engine's precision),
    /// which is what crosses the host link in compute_input / compute_output.
    pub input_bytes_per_image: u64,
    pub output_bytes_per_image: u64,
}

impl ModelSetup {
    /// A request of `batch` images fits this model: at least one, at most its max batch.
    pub(crate) fn check_batch(&self, batch: u32) -> Result<(), SimError> {
        if batch == 0 || batch > self.max_batch {
            return Err(SimError::BatchTooLarge {
                model: self.name.clone(),
                batch,
                max: self.max_batch,
            });
        }
        Ok(())
    }
}

impl ModelSetup {
    /// L(b) in nanoseconds: how long a batch of `batch` images takes with the GPU to itself.
    pub fn solo_latency_ns(&self, batch: u32) -> f64 {
        (self.alpha_ms + self.beta_ms * f64::from(batch)) * 1e6
    }

    /// L(b) and u(b) for a process confined to `share` of the SMs (MPS): the per-image work slows by
    /// 1/share, and the batch keeps at most `share` of the SMs busy.
    pub fn confined(&self, batch: u32, share: f64) -> (f64, f64) {
        if share >= 1.0 {
            return (self.solo_latency_ns(batch), self.occupancy(batch));
        }
        let work = self.beta_ms * f64::from(batch) / share;
        let l = (self.alpha_ms + work) * 1e6;
        let u = if l <= 0.0 {
            share
        } else {
            (work * 1e6 * share / l).clamp(0.0, share)
        };
        (l, u)
    }

    /// u(b) = β·b / L(b): the share of the GPU's SMs a batch keeps busy when it runs alone.
    pub fn occupancy(&self, batch: u32) -> f64 {
        let l = self.solo_latency_ns(batch);
        if l <= 0.0 {
            1.0
        } else {
            (self.beta_ms * f64::from(batch) * 1e6 / l).clamp(0.0, 1.0)
        }
    }

    /// Time to copy a batch's inputs to the GPU over `gpu`'s link when the copy engine is free.
    pub fn compute_input_ns(&self, batch: u32, gpu: &GpuSetup) -> u64 {
        gpu.copy_ns(self.input_bytes_per_image * u64::from(batch))
    }

    /// Time to copy a batch's outputs back when the copy engine is free.
    pub fn compute_output_ns(&self, batch: u32, gpu: &GpuSetup) -> u64 {
        gpu.copy_ns(self.output_bytes_per_image * u64::from(batch))
    }

    /// The largest batch the dynamic batcher forms: the largest preferred size, else max batch.
    pub fn batch_cap(&self) -> u32 {
        self.dynamic_batching
            .as_ref()
            .and_then(|b| {
                b.preferred_batch_sizes
                    .iter()
                    .copied()
                    .filter(|&p| p <= self.max_batch)
                    .max()
            })
            .unwrap_or(self.max_batch)
            .max(1)
    }

    /// Upper bound on the model's throughput in images/s on an otherwise idle `gpu`: every instance running
    /// the largest batch it can form back to back, bounded by the SMs (1/β) and the link.
    pub fn capacity_images_per_s(&self, request_batch: u32, gpu: &GpuSetup) -> f64 {
        let b = if self.dynamic_batching.is_some() {
            self.batch_cap().max(request_batch)
        } else {
            request_batch
        };
        let copy_in = self.compute_input_ns(b, gpu) as f64;
        let copy_out = self.compute_output_ns(b, gpu) as f64;
        let stage = self.solo_latency_ns(b).max(copy_in).max(copy_out);
        let share = gpu.mps.as_ref().map_or(1.0, |m| m.share(&self.name));
        let (latency, _) = self.confined(b, share);
        let stage = stage.max(latency);
        let computing = f64::from(self.instances.min(gpu.max_resident.max(1)));
        let by_instances = computing * f64::from(b) * 1e9 / stage;
        let by_sms = share * 1e3 / self.beta_ms;
        by_instances.min(by_sms)
    }

    pub(crate) fn validate(&self) -> Result<(), SimError> {
        let bad = |reason: &str| {
            Err(SimError::InvalidSetup {
                model: self.name.clone(),
                reason: reason.to_string(),
            })
        };
        if self.name.is_empty() {
            return bad("name is empty");
        }
        if !(self.alpha_ms.is_finite() && self.alpha_ms >= 0.0) {
            return bad("alpha_ms must be finite and ≥ 0");
        }
        if !(self.beta_ms.is_finite() && self.beta_ms > 0.0) {
            return bad("beta_ms must be finite and > 0");
        }
        if self.max_batch == 0 {
            return bad("max_batch must be at least 1");
        }
        if self.instances == 0 {
            return bad("instances must be at least 1");
        }
        let bad_preferred = self.dynamic_batching.as_ref().is_some_and(|b| {
            b.preferred_batch_sizes
                .iter()
                .any(|&p| p == 0 || p > self.max_batch)
        });
        if bad_preferred {
            return bad("preferred batch sizes must lie between 1 and max_batch");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error(
        "model '{model}' needs {need_mib} MiB of GPU memory but only {free_mib} MiB of {total_mib} MiB are free"
    )]
    DoesNotFit {
        model: String,
        need_mib: u64,
        free_mib: u64,
        total_mib: u64,
    },
    #[error("no loaded model has id {0}")]
    UnknownModel(ModelId),
    #[error(
        "request of batch {batch} for model '{model}' must be between 1 and its max batch {max}"
    )]
    BatchTooLarge { model: String, batch: u32, max: u32 },
    #[error("model '{model}' is already loaded")]
    AlreadyLoaded { model: String },
    #[error("invalid setup for model '{model}': {reason}")]
    InvalidSetup { model: String, reason: String },
}

/// The fate of one request, with the server-side times Triton's statistics report for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub token: u64,
    pub model: ModelId,
    /// Images in the executed batch this request was part of (0 when it never executed).
    pub batch: u32,
    /// False when the request failed (its model was unloaded while it queued).
    pub ok: bool,
    pub queue_ns: u64,
    pub compute_input_ns: u64,
    pub compute_infer_ns: u64,
    pub compute_output_ns: u64,
    /// When the request reached the server's queue: with `finished_at`, its whole time at the
    /// server, which the four durations above do not add up to (a batch whose inputs are in can
    /// wait for its instance's previous batch to finish computing).
    pub arrived: Nanos,
    pub finished_at: Nanos,
}

/// Per executed batch size, as Triton's `batch_stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounters {
    pub count: u64,
    pub compute_input_ns: u64,
    pub compute_infer_ns: u64,
    pub compute_output_ns: u64,
}

/// Cumulative, as Triton's ModelStatistics: never reset while loaded. Counts are per request except
/// `inference_count` (images) and `execution_count` (batches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCounters {
    pub success_count: u64,
    pub success_ns: u64,
    pub fail_count: u64,
    pub fail_ns: u64,
    pub queue_count: u64,
    pub queue_ns: u64,
    pub compute_input_count: u64,
    pub compute_input_ns: u64,
    pub compute_infer_count: u64,
    pub compute_infer_ns: u64,
    pub compute_output_count: u64,
    pub compute_output_ns: u64,
    pub inference_count: u64,
    pub execution_count: u64,
    pub last_inference_ns: Nanos,
    pub batch_stats: BTreeMap<u32, BatchCounters>,
    /// Requests queued or executing now.
    pub pending: u64,
}

/// Cumulative GPU figures from which NVML-like rates are differences over a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuCounters {
    /// Time any kernel ran (NVML's utilization is the share of a window this covers).
    pub busy_ns: u64,
    /// ∫ min(1, U) dt: SM activity in nanoseconds.
    pub sm_active_ns: f64,
    pub energy_j: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}
