//! The emulated model repository: which catalog models exist for this GPU, how each is configured
//! (max batch, instances, dynamic batcher — the knobs Triton's model configuration exposes), and which
//! are resident in the sim.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::catalog::{Catalog, GpuSpec};
use crate::emulator::sim::{ModelId, ModelSetup};
use crate::emulator::tensors::Signature;
use crate::vocab::spec::DynamicBatching;

/// Most instances one model may have. Triton sets no limit, but no GPU runs more batches of one
/// model at once than it has SMs (132 on an H100), and a count near `u32::MAX` is a typo or an attack.
pub(crate) const MAX_INSTANCES: u32 = 1024;
/// Longest dynamic-batcher queue delay the emulator accepts (one minute, 6e7 µs). Triton multiplies
/// the delay by 1,000 in 64 bits without a check, so a huge value wraps there; here a request held
/// that long has outlived any client's deadline, and the modelled batcher would hold every request.
pub(crate) const MAX_QUEUE_DELAY_US: u64 = 60_000_000;
/// Largest `max_batch_size` accepted: it bounds the batch sums in the batcher.
pub(crate) const MAX_BATCH_SIZE: u32 = 1 << 16;

/// What a model configuration controls in the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelSettings {
    /// 0 means the model takes no batch dimension, as in Triton.
    pub max_batch: u32,
    pub instances: u32,
    pub dynamic_batching: Option<DynamicBatching>,
    /// Triton's `dynamic_batching.default_queue_policy.max_queue_size`: requests that find this many
    /// already queued are refused with UNAVAILABLE. 0 means unbounded, as in Triton.
    pub max_queue_size: u32,
}

/// The calibrated figures of a (model, GPU, profile) triple.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Perf {
    pub alpha_ms: f64,
    pub beta_ms: f64,
    pub memory_bytes: u64,
    pub max_batch: u32,
    pub profile: String,
    /// What the engine copies per image in and out (its input follows the profile's precision).
    pub copy_bytes_per_image: (u64, u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelState {
    Ready(ModelId),
    /// Not resident; the reason is what RepositoryIndex reports.
    Unavailable(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub signature: Arc<Signature>,
    pub perf: Perf,
    /// The configuration in the repository (Triton's `config.pbtxt`): every load starts from it.
    pub defaults: ModelSettings,
    /// The configuration of the current (or last) load.
    pub settings: ModelSettings,
    pub state: ModelState,
}

impl Entry {
    pub(crate) fn ready_id(&self) -> Option<ModelId> {
        match self.state {
            ModelState::Ready(id) => Some(id),
            ModelState::Unavailable(_) => None,
        }
    }

    /// Default configuration: the model's max batch (the profile's unless the model's configuration
    /// says otherwise), one instance, and Triton's `dynamic_batching {}` for the CNNs (Triton's example
    /// models ship without a dynamic batcher).
    fn default_settings(spec: &crate::catalog::ModelSpec, perf: &Perf) -> ModelSettings {
        let max_batch = spec.max_batch_size.unwrap_or(perf.max_batch);
        let placeholder = spec.compute == crate::catalog::Compute::Placeholder;
        let dynamic_batching = (placeholder && max_batch > 1).then(|| DynamicBatching {
            max_queue_delay_us: 0,
            preferred_batch_sizes: Vec::new(),
        });
        ModelSettings {
            max_batch,
            instances: 1,
            dynamic_batching,
            max_queue_size: 0,
        }
    }

    /// The sim's view of this model. Every instance holds its own copy of the weights, as Triton's do.
    pub(crate) fn setup(&self) -> ModelSetup {
        ModelSetup {
            name: self.signature.name.clone(),
            alpha_ms: self.perf.alpha_ms,
            beta_ms: self.perf.beta_ms,
            max_batch: self.settings.max_batch.max(1),
            instances: self.settings.instances,
            dynamic_batching: self.settings.dynamic_batching.clone(),
            memory_bytes: self
                .perf
                .memory_bytes
                .saturating_mul(u64::from(self.settings.instances)),
            input_bytes_per_image: self.perf.copy_bytes_per_image.0,
            output_bytes_per_image: self.perf.copy_bytes_per_image.1,
        }
    }
}

/// Every catalog model that has a performance entry for the emulated GPU.
#[derive(Debug, Clone)]
pub(crate) struct Repository {
    pub models: BTreeMap<String, Entry>,
}

impl Repository {
    /// Uses `profile`'s entry where it has one and the default profile otherwise, so a profile that
    /// covers only some models (e.g. `perseus2019`) still leaves the rest servable.
    pub(crate) fn new(catalog: &Catalog, gpu: &GpuSpec, profile: Option<&str>) -> Repository {
        let mut models = BTreeMap::new();
        for spec in &catalog.models {
            let kernel = spec.perf_like.as_deref().unwrap_or(&spec.name);
            let entry = profile
                .and_then(|p| catalog.perf(kernel, &gpu.name, Some(p)))
                .or_else(|| catalog.perf(kernel, &gpu.name, None));
            let Some(entry) = entry else { continue };
            let perf = Perf {
                alpha_ms: entry.alpha_ms,
                beta_ms: entry.beta_ms,
                memory_bytes: entry.memory_bytes,
                max_batch: entry.max_batch,
                profile: entry.profile.clone(),
                copy_bytes_per_image: crate::emulator::sim::engine_bytes_per_image(
                    spec,
                    &entry.precision,
                ),
            };
            let mut settings = Entry::default_settings(spec, &perf);
            // A calibration profile that states its Triton configuration (PERSEUS's [4, 8] batcher)
            // is served with it, so the server and the model's own solo peaks describe one setup.
            if let (Some(b), true) = (&entry.dynamic_batching, settings.dynamic_batching.is_some())
            {
                settings.instances = entry.instances.max(1);
                settings.dynamic_batching = Some(DynamicBatching {
                    max_queue_delay_us: b.max_queue_delay_us,
                    preferred_batch_sizes: b.preferred_batch_sizes.clone(),
                });
            }
            models.insert(
                spec.name.clone(),
                Entry {
                    signature: Arc::new(Signature::from_spec(spec)),
                    perf,
                    defaults: settings.clone(),
                    settings,
                    state: ModelState::Unavailable("unloaded".into()),
                },
            );
        }
        Repository { models }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.models.get(name)
    }

    pub(crate) fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.models.get_mut(name)
    }
}

/// Applies the JSON model configuration of a load request (Triton's `config` parameter) on top of
/// `defaults`, the model's repository configuration: a load never inherits an earlier load's override,
/// as Triton reads the configuration afresh on each load. Only the fields the emulator models are
/// read; the rest of a real config is accepted and ignored.
pub(crate) fn apply_config_json(
    defaults: &ModelSettings,
    json: &str,
) -> Result<ModelSettings, String> {
    let value: Value = serde_json::from_str(json)
        .map_err(|e| format!("failed to parse the model configuration: {e}"))?;
    let mut settings = defaults.clone();
    if let Some(v) = value.get("max_batch_size") {
        settings.max_batch = as_u32(v, "max_batch_size")?;
        if settings.max_batch > MAX_BATCH_SIZE {
            return Err(format!(
                "'max_batch_size' is {}; the emulator accepts at most {MAX_BATCH_SIZE}",
                settings.max_batch
            ));
        }
    }
    if let Some(groups) = value.get("instance_group") {
        let mut count = 0u32;
        for group in groups.as_array().ok_or("'instance_group' must be a list")? {
            let n = group
                .get("count")
                .map_or(Ok(1), |c| as_u32(c, "instance_group.count"))?;
            count = count
                .checked_add(n)
                .filter(|&total| total <= MAX_INSTANCES)
                .ok_or_else(|| {
                    format!(
                        "'instance_group' counts add up to more than {MAX_INSTANCES} instances, \
                         the most the emulator runs for one model"
                    )
                })?;
        }
        if count == 0 {
            return Err("'instance_group' must have a count of at least 1".into());
        }
        settings.instances = count;
    }
    if let Some(db) = value.get("dynamic_batching") {
        let max_queue_delay_us = db.get("max_queue_delay_microseconds").map_or(Ok(0), |v| {
            as_u64(v, "dynamic_batching.max_queue_delay_microseconds")
        })?;
        if max_queue_delay_us > MAX_QUEUE_DELAY_US {
            return Err(format!(
                "'dynamic_batching.max_queue_delay_microseconds' is {max_queue_delay_us}; the \
                 emulator accepts at most {MAX_QUEUE_DELAY_US} (one minute)"
            ));
        }
        settings.max_queue_size = match db.get("default_queue_policy") {
            None => 0,
            Some(policy) if policy.is_object() => {
                policy.get("max_queue_size").map_or(Ok(0), |v| {
                    as_u32(v, "dynamic_batching.default_queue_policy.max_queue_size")
                })?
            }
            Some(_) => {
                return Err("'dynamic_batching.default_queue_policy' must be an object".into());
            }
        };
        let preferred_batch_sizes = match db.get("preferred_batch_size") {
            None => Vec::new(),
            Some(list) => list
                .as_array()
                .ok_or("'dynamic_batching.preferred_batch_size' must be a list")?
                .iter()
                .map(|v| as_u32(v, "dynamic_batching.preferred_batch_size"))
                .collect::<Result<Vec<u32>, String>>()?,
        };
        settings.dynamic_batching = Some(DynamicBatching {
            max_queue_delay_us,
            preferred_batch_sizes,
        });
    }
    if let Some(b) = &settings.dynamic_batching
        && let Some(&too_big) = b
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p > settings.max_batch)
    {
        return Err(format!(
            "dynamic batching preferred size must be <= max batch size ({too_big} > {})",
            settings.max_batch
        ));
    }
    Ok(settings)
}

/// Triton's JSON writes 64-bit integers as strings; accept both forms.
fn as_u64(v: &Value, field: &str) -> Result<u64, String> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| format!("'{field}' must be a non-negative integer, got {v}"))
}

fn as_u32(v: &Value, field: &str) -> Result<u32, String> {
    u32::try_from(as_u64(v, field)?).map_err(|_| format!("'{field}' is too large: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ModelSettings {
        ModelSettings {
            max_batch: 32,
            instances: 1,
            dynamic_batching: None,
            max_queue_size: 0,
        }
    }

    #[test]
    fn load_config_sets_the_modelled_knobs() {
        let json = r#"{"max_batch_size": 16, "instance_group": [{"count": 2, "kind": "KIND_GPU"}],
            "dynamic_batching": {"max_queue_delay_microseconds": "500", "preferred_batch_size": [4, 8]},
            "backend": "onnxruntime"}"#;
        let s = apply_config_json(&base(), json).unwrap();
        assert_eq!(s.max_batch, 16);
        assert_eq!(s.instances, 2);
        assert_eq!(
            s.dynamic_batching,
            Some(DynamicBatching {
                max_queue_delay_us: 500,
                preferred_batch_sizes: vec![4, 8]
            })
        );
    }

    #[test]
    fn the_queue_policy_is_read_and_reported() {
        let json = r#"{"max_batch_size": 8, "dynamic_batching": {"default_queue_policy": {"max_queue_size": 3}}}"#;
        let s = apply_config_json(&base(), json).unwrap();
        assert_eq!(s.max_queue_size, 3);
        assert_eq!(
            apply_config_json(&base(), r#"{"dynamic_batching": {}}"#)
                .unwrap()
                .max_queue_size,
            0,
            "no policy means an unbounded queue, as in Triton"
        );
    }

    #[test]
    fn fields_left_out_keep_their_values() {
        assert_eq!(apply_config_json(&base(), "{}").unwrap(), base());
    }

    #[test]
    fn bad_configs_say_which_field() {
        for (json, field) in [
            ("{", "parse"),
            (r#"{"max_batch_size": -1}"#, "max_batch_size"),
            (r#"{"instance_group": [{"count": 0}]}"#, "instance_group"),
            (
                r#"{"dynamic_batching": {"preferred_batch_size": [64]}}"#,
                "preferred size",
            ),
            // Counts that wrap a u32 when added must not load with one instance.
            (
                r#"{"instance_group": [{"count": 4294967295}, {"count": 2}]}"#,
                "more than 1024 instances",
            ),
            (
                r#"{"instance_group": [{"count": 1025}]}"#,
                "more than 1024 instances",
            ),
            (
                r#"{"dynamic_batching": {"max_queue_delay_microseconds": "18446744073709551615"}}"#,
                "max_queue_delay_microseconds' is 18446744073709551615",
            ),
            (
                r#"{"dynamic_batching": {"default_queue_policy": {"max_queue_size": -1}}}"#,
                "default_queue_policy.max_queue_size",
            ),
            (r#"{"max_batch_size": 4000000000}"#, "at most 65536"),
        ] {
            let err = apply_config_json(&base(), json).unwrap_err();
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
