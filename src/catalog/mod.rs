//! GPUs, models and performance profiles known to the emulator.
//!
//! The catalog ships as TOML files compiled into the binary, so the emulator works with no setup, and the
//! same files can be dropped into the user's config dir to correct a figure or add a GPU without a rebuild.
//! Every number carries its source (see `../shared` research notes cited in the files); figures that are
//! computed rather than measured on that GPU are marked derived.

mod file;
mod mig;
mod render;

use std::path::Path;

use crate::vocab::spec::DynamicBatching;

pub use file::CatalogError;

/// The profile used when none is named: today's TensorRT-on-Triton performance.
pub const DEFAULT_PROFILE: &str = "current";

const MIB: u64 = 1024 * 1024;

/// Everything the emulator can impersonate, after user overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub gpus: Vec<GpuSpec>,
    pub models: Vec<ModelSpec>,
    pub profiles: Vec<ProfileEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpuSpec {
    /// Lower-case key used on the command line and in session files ("t4", "a100-80gb").
    pub name: String,
    /// What NVML would call the device.
    pub display: String,
    pub memory_bytes: u64,
    pub tdp_w: f64,
    pub idle_w: f64,
    /// Memory a Triton process holds before any model is loaded.
    pub context_bytes: u64,
    pub sm_clock_mhz: u32,
    /// Interference between different models: how much a batch slows per unit of the other models'
    /// occupancy (a model's own instances share the SMs without it).
    pub gamma: f64,
    /// Where `gamma` comes from: a source, "fitted to …" or "assumed".
    pub gamma_source: String,
    /// Per model pair interference where the research data has a figure for the pair.
    pub pair_gamma: Vec<PairGammaSpec>,
    /// Host link as written in the catalog ("pcie3x16", "pcie5x16").
    pub host_link: String,
    /// Usable host↔device bandwidth per direction, from `host_link`.
    pub link_bytes_per_s: f64,
    /// Batches that may compute at once (the hardware work queues CUDA uses by default).
    pub max_resident: u32,
    /// SMs of the whole GPU, where it has MIG slices.
    pub sm_count: Option<u32>,
    /// Each model served as its own process under CUDA MPS (see `emulator::sim::Mps`) rather than as one
    /// Triton process; off for every shipped GPU, on for a user's entry that sets `mps = true`.
    pub mps: bool,
    /// The MIG slices the GPU can be split into; each is also a GPU of the catalog.
    pub mig_profiles: Vec<MigProfile>,
    /// For a MIG slice: what it is a slice of.
    pub slice: Option<SliceOf>,
    pub source: String,
}

/// One MIG profile of a GPU, as the catalog declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct MigProfile {
    /// NVIDIA's profile name, "1g.10gb".
    pub profile: String,
    pub sms: u32,
    /// Share of the GPU's memory, in eighths (MIG hands out memory in eighths).
    pub memory_eighths: u32,
    pub source: String,
}

/// What a MIG slice GPU is cut from, so its derived figures can say where they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceOf {
    pub parent: String,
    pub profile: String,
    /// The slice's SMs over the whole GPU's.
    pub sm_share: f64,
    pub source: String,
}

/// γ for one pair of different models on one GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct PairGammaSpec {
    pub a: String,
    pub b: String,
    pub gamma: f64,
    pub source: String,
}

/// Share of a PCIe link's raw rate that pinned host↔device copies reach (assumed: CUDA's bandwidthTest
/// on x16 links typically reports about 80 % of the raw figure).
pub const PCIE_EFFICIENCY: f64 = 0.8;

/// Usable bandwidth per direction of a host link named `pcie<gen>x<lanes>` (PCIe 3.0–6.0), in bytes/s: the
/// generation's transfer rate (8, 16, 32, 64 GT/s per lane, PCI-SIG) with 128b/130b encoding, times the
/// lanes, times [`PCIE_EFFICIENCY`]. `None` for a name that is not of that form.
pub fn link_bytes_per_s(link: &str) -> Option<f64> {
    let rest = link.to_ascii_lowercase();
    let rest = rest.strip_prefix("pcie")?;
    let (generation, lanes) = rest.split_once('x')?;
    let gts = match generation {
        "3" => 8.0,
        "4" => 16.0,
        "5" => 32.0,
        "6" => 64.0,
        _ => return None,
    };
    let lanes: u32 = lanes.parse().ok()?;
    if !matches!(lanes, 1 | 2 | 4 | 8 | 16) {
        return None;
    }
    Some(gts * 1e9 * f64::from(lanes) * (128.0 / 130.0) / 8.0 * PCIE_EFFICIENCY)
}

/// A tensor as Triton's model metadata reports it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    /// Triton's datatype name: "FP32", "INT32", ...
    pub datatype: String,
    /// Without the batch dimension.
    pub shape: Vec<i64>,
    /// Triton's input `format` ("FORMAT_NCHW"), which image clients check before sending pixels.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    /// Triton platform string shown in model metadata ("tensorrt_plan", ...).
    pub platform: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub description: String,
    /// Parameters in millions; sizes the weights in memory.
    pub params_millions: f64,
    /// Activation memory per image at FP16 (upper bound, no buffer reuse), MB.
    pub activation_mb_per_image: f64,
    /// The model configuration's `max_batch_size` where it differs from the profile's batch limit;
    /// 0 is a model without a batch dimension, as Triton's `densenet_onnx` example is.
    pub max_batch_size: Option<u32>,
    /// Another model whose performance profiles this one shares: Triton's example repository holds
    /// variants (`simple_int8`, `densenet_onnx`) of kernels the profiles already describe.
    pub perf_like: Option<String>,
    /// What the emulator puts in the outputs.
    pub compute: Compute,
    /// Class labels of the first output, one per index, for Triton's classification extension.
    pub labels: Option<Vec<String>>,
}

/// What a model's outputs hold. The emulator models time, not numerics, so a CNN answers with a
/// placeholder; Triton's small example models are computed exactly, so NVIDIA's example clients can
/// check their answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compute {
    /// A deterministic placeholder of the right shape (uniform scores for floats, zeros otherwise).
    #[default]
    Placeholder,
    /// Triton's `simple` family: OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 − INPUT1, element-wise,
    /// in the tensors' datatype (numbers written as strings for BYTES).
    AddSub,
    /// Every output is the input of the same position, unchanged.
    Identity,
    /// Triton's `simple_sequence`: a sequence batcher with START and READY control inputs, and
    /// OUTPUT = (INPUT + START) × READY.
    Sequence,
    /// Triton's decoupled `repeat_int32`: one response per element of IN, each after DELAY[i] ms.
    Repeat,
}

/// How one model performs on one GPU under one profile, and how Triton loads it by default.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    pub model: String,
    pub gpu: String,
    pub profile: String,
    /// Numeric precision the profile assumes ("INT8", "FP16", "FP32").
    pub precision: String,
    pub alpha_ms: f64,
    pub beta_ms: f64,
    pub memory_bytes: u64,
    pub max_batch: u32,
    /// Default instance count (Triton's `instance_group.count`).
    pub instances: u32,
    /// Default dynamic batching; `None` means each request executes alone.
    pub dynamic_batching: Option<DynamicBatching>,
    pub source: String,
    pub derived: bool,
}

impl Catalog {
    /// The catalog compiled into the binary.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        file::embedded()
    }

    /// The embedded catalog with `gpus.toml`, `models.toml` and `profiles.toml` from `user_dir` merged over
    /// it: an entry with the key of a built-in one (GPU name, model name, or model + GPU + profile) replaces
    /// it whole, others are added. A missing directory or file simply overrides nothing.
    pub fn load(user_dir: Option<&Path>) -> Result<Catalog, CatalogError> {
        file::load(user_dir)
    }

    /// Case-insensitive, so "T4" and "t4" both work from the command line.
    pub fn gpu(&self, name: &str) -> Option<&GpuSpec> {
        self.gpus.iter().find(|g| g.name.eq_ignore_ascii_case(name))
    }

    pub fn model(&self, name: &str) -> Option<&ModelSpec> {
        self.models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// The performance entry for (model, gpu, profile); profile `None` is [`DEFAULT_PROFILE`].
    pub fn perf(&self, model: &str, gpu: &str, profile: Option<&str>) -> Option<&ProfileEntry> {
        let profile = profile.unwrap_or(DEFAULT_PROFILE);
        // A model that runs like another (`perf_like`) has that model's profiles.
        let model = self
            .models
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(model))
            .and_then(|m| m.perf_like.as_deref())
            .unwrap_or(model);
        self.profiles.iter().find(|p| {
            p.model.eq_ignore_ascii_case(model)
                && p.gpu.eq_ignore_ascii_case(gpu)
                && p.profile.eq_ignore_ascii_case(profile)
        })
    }

    /// Names of all profiles, default first, in catalog order.
    pub fn profile_names(&self) -> Vec<String> {
        let mut names = vec![DEFAULT_PROFILE.to_string()];
        for p in &self.profiles {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(&p.profile)) {
                names.push(p.profile.clone());
            }
        }
        names
    }

    /// What `perseus catalog` prints: GPUs, models and profiles as aligned tables.
    pub fn render_text(&self) -> String {
        render::render(self)
    }
}

impl ModelSpec {
    /// Bytes of all inputs for one image (batch element); what compute_input copies to the GPU.
    pub fn input_bytes_per_image(&self) -> u64 {
        self.inputs.iter().map(TensorSpec::byte_size).sum()
    }

    /// Bytes of all outputs for one image; what compute_output copies back.
    pub fn output_bytes_per_image(&self) -> u64 {
        self.outputs.iter().map(TensorSpec::byte_size).sum()
    }

    /// Memory the model takes at `precision` with activations sized for `max_batch` (research §2 recipe).
    pub fn memory_bytes(&self, precision: &str, max_batch: u32) -> u64 {
        let bytes = precision_bytes(precision);
        let weights = self.params_millions * 1e6 * bytes;
        let activations =
            ACTIVATION_REUSE * f64::from(max_batch) * self.activation_mb_per_image * 1e6 * bytes
                / 2.0;
        let total = (weights + activations).max(0.0).ceil();
        // Round up to whole MiB, as allocators hand out memory in large chunks.
        (total as u64).div_ceil(MIB).max(1) * MIB
    }
}

/// Share of the no-reuse activation upper bound a TensorRT engine actually keeps (research §2: k ≈ 0.1–0.3,
/// an assumption, not sourced).
const ACTIVATION_REUSE: f64 = 0.2;

impl TensorSpec {
    /// Elements × datatype size; `BYTES` tensors and dynamic dimensions (-1) count as zero.
    pub fn byte_size(&self) -> u64 {
        let elements: i64 = self.shape.iter().map(|&d| d.max(0)).product();
        crate::vocab::datatype::element_size(&self.datatype).unwrap_or(0) as u64
            * elements.max(0) as u64
    }
}

fn precision_bytes(precision: &str) -> f64 {
    match precision.to_ascii_uppercase().as_str() {
        "INT8" => 1.0,
        "FP16" | "BF16" => 2.0,
        "FP64" => 8.0,
        _ => 4.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_every_gpu_and_model_with_a_current_profile() {
        let catalog = Catalog::embedded().unwrap();
        let gpus = [
            "t4",
            "p4",
            "v100",
            "a10g",
            "l4",
            "a100-40gb",
            "a100-80gb",
            "h100",
            "h200",
            "a40",
            "h100-pcie",
            "a100-40gb-1g.5gb",
            "a100-80gb-3g.40gb",
            "h100-7g.80gb",
        ];
        let models = [
            "resnet50",
            "mobilenet_v2",
            "inception_v3",
            "densenet121",
            "vgg16",
            "efficientnet_b0",
            "resnet152",
            "simple",
        ];
        for g in gpus {
            assert!(catalog.gpu(g).is_some(), "{g}");
            for m in models {
                let perf = catalog.perf(m, g, None);
                assert!(perf.is_some_and(|p| p.memory_bytes > 0), "{m} on {g}");
            }
        }
        assert!(catalog.gpu("T4").is_some(), "names are case-insensitive");
    }

    #[test]
    fn perseus2019_covers_t4_and_p4_with_persus_batching() {
        let catalog = Catalog::embedded().unwrap();
        for g in ["t4", "p4"] {
            for m in ["resnet50", "inception_v3"] {
                let p = catalog.perf(m, g, Some("perseus2019")).unwrap();
                assert_eq!(p.precision, "FP32");
                assert_eq!(p.max_batch, 128);
                let b = p.dynamic_batching.as_ref().unwrap();
                assert_eq!(b.preferred_batch_sizes, vec![4, 8]);
            }
        }
    }

    #[test]
    fn tensors_match_triton_conventions() {
        let catalog = Catalog::embedded().unwrap();
        let r50 = catalog.model("resnet50").unwrap();
        assert_eq!(r50.inputs[0].shape, vec![3, 224, 224]);
        assert_eq!(r50.input_bytes_per_image(), 602_112);
        assert_eq!(r50.output_bytes_per_image(), 4_000);
        let inc = catalog.model("inception_v3").unwrap();
        assert_eq!(inc.inputs[0].shape, vec![3, 299, 299]);
        let simple = catalog.model("simple").unwrap();
        let names: Vec<&str> = simple
            .inputs
            .iter()
            .chain(&simple.outputs)
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["INPUT0", "INPUT1", "OUTPUT0", "OUTPUT1"]);
        assert_eq!(catalog.perf("simple", "t4", None).unwrap().max_batch, 8);
    }

    #[test]
    fn memory_follows_precision_and_max_batch() {
        let catalog = Catalog::embedded().unwrap();
        let r50 = catalog.model("resnet50").unwrap();
        let int8 = r50.memory_bytes("INT8", 128);
        let fp32 = r50.memory_bytes("FP32", 128);
        assert!(fp32 > 3 * int8, "{fp32} vs {int8}");
        assert!(r50.memory_bytes("INT8", 256) > int8);
    }
}
