//! Parsing, merging and validating the catalog's TOML files.
//!
//! Raw file structs reject unknown keys so a typo in a user override is an error, not a silently ignored
//! line; validation runs after merging so a user entry is checked against the GPUs and models it refers to.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    Catalog, Compute, GpuSpec, MIB, MigProfile, ModelSpec, PairGammaSpec, ProfileEntry, TensorSpec,
    link_bytes_per_s,
};
use crate::vocab::datatype::element_size;
use crate::vocab::spec::DynamicBatching;

const GPUS_TOML: &str = include_str!("../gpus.toml");
const MODELS_TOML: &str = include_str!("../models.toml");
const PROFILES_TOML: &str = include_str!("../profiles.toml");
/// Label sets a model may name with `labels = "…"`, one class per line in index order.
const LABEL_SETS: &[(&str, &str)] = &[("imagenet", include_str!("../labels/imagenet.txt"))];

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog file {file} is not valid: {message}")]
    Parse { file: String, message: String },
    #[error("catalog file {file}: {key}: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpusFile {
    #[serde(default)]
    gpu: Vec<RawGpu>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPair {
    models: [String; 2],
    gamma: f64,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMig {
    profile: String,
    sms: u32,
    memory_eighths: u32,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGpu {
    name: String,
    display: String,
    memory_mib: u64,
    tdp_w: f64,
    idle_w: f64,
    context_mib: u64,
    sm_clock_mhz: u32,
    gamma: f64,
    gamma_source: String,
    host_link: String,
    max_resident: u32,
    #[serde(default)]
    pair: Vec<RawPair>,
    #[serde(default)]
    sm_count: Option<u32>,
    #[serde(default)]
    mps: bool,
    #[serde(default)]
    mig: Vec<RawMig>,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    platform: String,
    description: String,
    params_millions: f64,
    activation_mb_per_image: f64,
    input: Vec<TensorSpec>,
    output: Vec<TensorSpec>,
    #[serde(default)]
    max_batch_size: Option<u32>,
    #[serde(default)]
    perf_like: Option<String>,
    #[serde(default)]
    compute: Compute,
    /// Name of a label set shipped with the catalog (`labels/<name>.txt`).
    #[serde(default)]
    labels: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    perf: Vec<RawPerf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerf {
    model: String,
    gpu: String,
    #[serde(default)]
    profile: Option<String>,
    precision: String,
    alpha_ms: f64,
    beta_ms: f64,
    max_batch: u32,
    #[serde(default)]
    memory_mib: Option<u64>,
    #[serde(default)]
    instances: Option<u32>,
    #[serde(default)]
    preferred_batch_sizes: Option<Vec<u32>>,
    #[serde(default)]
    max_queue_delay_us: Option<u64>,
    derived: bool,
    source: String,
}

/// An entry with the file it came from, so errors after merging can still name the file.
struct Sourced<T> {
    file: String,
    item: T,
}

#[derive(Default)]
struct Raw {
    gpus: Vec<Sourced<RawGpu>>,
    models: Vec<Sourced<RawModel>>,
    perfs: Vec<Sourced<RawPerf>>,
}

pub(super) fn embedded() -> Result<Catalog, CatalogError> {
    let mut raw = Raw::default();
    merge_texts(&mut raw, "embedded", GPUS_TOML, MODELS_TOML, PROFILES_TOML)?;
    build(raw)
}

pub(super) fn load(user_dir: Option<&Path>) -> Result<Catalog, CatalogError> {
    let mut raw = Raw::default();
    merge_texts(&mut raw, "embedded", GPUS_TOML, MODELS_TOML, PROFILES_TOML)?;
    if let Some(dir) = user_dir {
        for name in ["gpus.toml", "models.toml", "profiles.toml"] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|source| CatalogError::Io {
                path: path.clone(),
                source,
            })?;
            let label = path.display().to_string();
            match name {
                "gpus.toml" => merge_gpus(&mut raw, &label, &text)?,
                "models.toml" => merge_models(&mut raw, &label, &text)?,
                _ => merge_perfs(&mut raw, &label, &text)?,
            }
        }
    }
    build(raw)
}

fn merge_texts(
    raw: &mut Raw,
    origin: &str,
    gpus: &str,
    models: &str,
    perfs: &str,
) -> Result<(), CatalogError> {
    merge_gpus(raw, &format!("{origin} gpus.toml"), gpus)?;
    merge_models(raw, &format!("{origin} models.toml"), models)?;
    merge_perfs(raw, &format!("{origin} profiles.toml"), perfs)
}

fn parse<T: for<'de> Deserialize<'de>>(file: &str, text: &str) -> Result<T, CatalogError> {
    toml::from_str(text).map_err(|e| CatalogError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })
}

fn upsert<T>(list: &mut Vec<Sourced<T>>, file: &str, item: T, same: impl Fn(&T, &T) -> bool) {
    let entry = Sourced {
        file: file.to_string(),
        item,
    };
    match list.iter_mut().find(|e| same(&e.item, &entry.item)) {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

fn merge_gpus(raw: &mut Raw, file: &str, text: &str) -> Result<(), CatalogError> {
    let parsed: GpusFile = parse(file, text)?;
    for g in parsed.gpu {
        upsert(&mut raw.gpus, file, g, |a, b| {
            a.name.eq_ignore_ascii_case(&b.name)
        });
    }
    Ok(())
}

fn merge_models(raw: &mut Raw, file: &str, text: &str) -> Result<(), CatalogError> {
    let parsed: ModelsFile = parse(file, text)?;
    for m in parsed.model {
        upsert(&mut raw.models, file, m, |a, b| {
            a.name.eq_ignore_ascii_case(&b.name)
        });
    }
    Ok(())
}

fn merge_perfs(raw: &mut Raw, file: &str, text: &str) -> Result<(), CatalogError> {
    let parsed: ProfilesFile = parse(file, text)?;
    for p in parsed.perf {
        upsert(&mut raw.perfs, file, p, |a, b| {
            a.model.eq_ignore_ascii_case(&b.model)
                && a.gpu.eq_ignore_ascii_case(&b.gpu)
                && profile_name(a).eq_ignore_ascii_case(profile_name(b))
        });
    }
    Ok(())
}

fn profile_name(p: &RawPerf) -> &str {
    p.profile.as_deref().unwrap_or(super::DEFAULT_PROFILE)
}

fn invalid(file: &str, key: String, reason: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        file: file.to_string(),
        key,
        reason: reason.into(),
    }
}

fn check(
    ok: bool,
    file: &str,
    key: impl FnOnce() -> String,
    reason: &str,
) -> Result<(), CatalogError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(file, key(), reason))
    }
}

mod build;

use build::build;

#[cfg(test)]
mod tests;
