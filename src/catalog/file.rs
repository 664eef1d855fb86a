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

const GPUS_TOML: &str = include_str!("gpus.toml");
const MODELS_TOML: &str = include_str!("models.toml");
const PROFILES_TOML: &str = include_str!("profiles.toml");
/// Label sets a model may name with `labels = "…"`, one class per line in index order.
const LABEL_SETS: &[(&str, &str)] = &[("imagenet", include_str!("labels/imagenet.txt"))];

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

fn build(raw: Raw) -> Result<Catalog, CatalogError> {
    let gpus = raw
        .gpus
        .into_iter()
        .map(build_gpu)
        .collect::<Result<Vec<_>, _>>()?;
    let models = raw
        .models
        .into_iter()
        .map(build_model)
        .collect::<Result<Vec<_>, _>>()?;
    check_perf_like(&models)?;
    let mut gpus = gpus;
    let mut profiles = raw
        .perfs
        .into_iter()
        .map(|p| build_perf(p, &gpus, &models))
        .collect::<Result<Vec<_>, _>>()?;
    super::mig::expand(&mut gpus, &mut profiles, &models);
    Ok(Catalog {
        gpus,
        models,
        profiles,
    })
}

/// `perf_like` names a model that has profiles of its own, so one look-up finds them.
fn check_perf_like(models: &[ModelSpec]) -> Result<(), CatalogError> {
    for m in models {
        let Some(other) = &m.perf_like else { continue };
        let target = models.iter().find(|t| t.name.eq_ignore_ascii_case(other));
        if target.is_none_or(|t| t.perf_like.is_some()) {
            return Err(invalid(
                "models.toml",
                format!("model \"{}\".perf_like", m.name),
                format!("'{other}' is not a model with profiles of its own"),
            ));
        }
    }
    Ok(())
}

fn build_gpu(Sourced { file, item: g }: Sourced<RawGpu>) -> Result<GpuSpec, CatalogError> {
    let key = |field: &str| format!("gpu \"{}\".{field}", g.name);
    let positive = |v: f64| v.is_finite() && v > 0.0;
    check(
        !g.name.trim().is_empty(),
        &file,
        || key("name"),
        "must not be empty",
    )?;
    check(
        g.memory_mib > 0,
        &file,
        || key("memory_mib"),
        "must be positive",
    )?;
    check(
        positive(g.tdp_w),
        &file,
        || key("tdp_w"),
        "must be positive",
    )?;
    check(
        g.idle_w.is_finite() && (0.0..=g.tdp_w).contains(&g.idle_w),
        &file,
        || key("idle_w"),
        "must lie between 0 and tdp_w",
    )?;
    let gamma_ok = |v: f64| v.is_finite() && (0.0..=10.0).contains(&v);
    check(
        gamma_ok(g.gamma),
        &file,
        || key("gamma"),
        "must lie between 0 and 10",
    )?;
    check(
        g.context_mib < g.memory_mib,
        &file,
        || key("context_mib"),
        "must be below memory_mib",
    )?;
    check(
        g.max_resident >= 1,
        &file,
        || key("max_resident"),
        "must be at least 1",
    )?;
    let Some(link) = link_bytes_per_s(&g.host_link) else {
        return Err(invalid(
            &file,
            key("host_link"),
            "must be pcie<generation 3-6>x<lanes 1-16>, e.g. \"pcie4x16\"",
        ));
    };
    let mut pair_gamma = Vec::with_capacity(g.pair.len());
    for p in g.pair {
        let [a, b] = p.models;
        check(
            gamma_ok(p.gamma),
            &file,
            || key("pair.gamma"),
            "must lie between 0 and 10",
        )?;
        check(
            !a.eq_ignore_ascii_case(&b),
            &file,
            || key("pair.models"),
            "must name two different models (a model's instances do not interfere)",
        )?;
        pair_gamma.push(PairGammaSpec {
            a,
            b,
            gamma: p.gamma,
            source: p.source,
        });
    }
    let mig_profiles = build_mig(&file, &g.name, g.sm_count, g.mig)?;
    Ok(GpuSpec {
        name: g.name.to_ascii_lowercase(),
        display: g.display,
        memory_bytes: g.memory_mib * MIB,
        tdp_w: g.tdp_w,
        idle_w: g.idle_w,
        context_bytes: g.context_mib * MIB,
        sm_clock_mhz: g.sm_clock_mhz,
        gamma: g.gamma,
        gamma_source: g.gamma_source,
        pair_gamma,
        host_link: g.host_link.to_ascii_lowercase(),
        link_bytes_per_s: link,
        max_resident: g.max_resident,
        sm_count: g.sm_count,
        mps: g.mps,
        mig_profiles,
        slice: None,
        source: g.source,
    })
}

/// A GPU's MIG profiles, checked against its SM count.
fn build_mig(
    file: &str,
    gpu: &str,
    sm_count: Option<u32>,
    raw: Vec<RawMig>,
) -> Result<Vec<MigProfile>, CatalogError> {
    let key = |field: &str| format!("gpu \"{gpu}\".{field}");
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let Some(sms_total) = sm_count.filter(|&n| n > 0) else {
        return Err(invalid(
            file,
            key("sm_count"),
            "is needed (and positive) for MIG slices: a slice's share is its SMs over it",
        ));
    };
    raw.into_iter()
        .map(|m| {
            check(
                (1..=sms_total).contains(&m.sms),
                file,
                || key("mig.sms"),
                "must lie between 1 and sm_count",
            )?;
            check(
                (1..=8).contains(&m.memory_eighths),
                file,
                || key("mig.memory_eighths"),
                "must lie between 1 and 8",
            )?;
            check(
                !m.profile.trim().is_empty() && !m.profile.contains(char::is_whitespace),
                file,
                || key("mig.profile"),
                "must be a MIG profile name such as \"1g.10gb\"",
            )?;
            Ok(MigProfile {
                profile: m.profile.to_ascii_lowercase(),
                sms: m.sms,
                memory_eighths: m.memory_eighths,
                source: m.source,
            })
        })
        .collect()
}

fn build_model(Sourced { file, item: m }: Sourced<RawModel>) -> Result<ModelSpec, CatalogError> {
    let key = |field: &str| format!("model \"{}\".{field}", m.name);
    check(
        !m.name.trim().is_empty(),
        &file,
        || key("name"),
        "must not be empty",
    )?;
    check(
        !m.input.is_empty(),
        &file,
        || key("input"),
        "needs at least one tensor",
    )?;
    check(
        !m.output.is_empty(),
        &file,
        || key("output"),
        "needs at least one tensor",
    )?;
    for (side, tensors) in [("input", &m.input), ("output", &m.output)] {
        for t in tensors {
            let tkey = || format!("model \"{}\".{side} \"{}\"", m.name, t.name);
            check(
                t.datatype == "BYTES" || element_size(&t.datatype).is_some(),
                &file,
                || format!("{}.datatype", tkey()),
                "is not a Triton datatype (FP32, INT32, ...)",
            )?;
            check(
                t.shape.iter().all(|&d| d > 0 || d == -1),
                &file,
                || format!("{}.shape", tkey()),
                "dimensions must be positive or -1",
            )?;
        }
    }
    let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
    check(
        finite_nonneg(m.params_millions),
        &file,
        || key("params_millions"),
        "must be ≥ 0",
    )?;
    check(
        finite_nonneg(m.activation_mb_per_image),
        &file,
        || key("activation_mb_per_image"),
        "must be ≥ 0",
    )?;
    let labels = match &m.labels {
        None => None,
        Some(set) => {
            let text = LABEL_SETS
                .iter()
                .find(|(name, _)| name == set)
                .map(|(_, text)| *text);
            let Some(text) = text else {
                return Err(invalid(
                    &file,
                    key("labels"),
                    format!("'{set}' is not a label set the catalog ships (imagenet)"),
                ));
            };
            Some(text.lines().map(str::to_string).collect())
        }
    };
    Ok(ModelSpec {
        name: m.name,
        platform: m.platform,
        inputs: m.input,
        outputs: m.output,
        description: m.description,
        params_millions: m.params_millions,
        activation_mb_per_image: m.activation_mb_per_image,
        max_batch_size: m.max_batch_size,
        perf_like: m.perf_like,
        compute: m.compute,
        labels,
    })
}

fn build_perf(
    Sourced { file, item: p }: Sourced<RawPerf>,
    gpus: &[GpuSpec],
    models: &[ModelSpec],
) -> Result<ProfileEntry, CatalogError> {
    let profile = profile_name(&p).to_string();
    let key = |field: &str| format!("perf ({} on {}, {profile}).{field}", p.model, p.gpu);
    let model = models
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(&p.model));
    let Some(model) = model else {
        return Err(invalid(
            &file,
            key("model"),
            "names no model in models.toml",
        ));
    };
    check(
        gpus.iter().any(|g| g.name.eq_ignore_ascii_case(&p.gpu)),
        &file,
        || key("gpu"),
        "names no GPU in gpus.toml",
    )?;
    check(
        p.alpha_ms.is_finite() && p.alpha_ms >= 0.0,
        &file,
        || key("alpha_ms"),
        "must be ≥ 0",
    )?;
    check(
        p.beta_ms.is_finite() && p.beta_ms > 0.0,
        &file,
        || key("beta_ms"),
        "must be positive",
    )?;
    check(
        p.max_batch >= 1,
        &file,
        || key("max_batch"),
        "must be at least 1",
    )?;
    let instances = p.instances.unwrap_or(1);
    check(
        instances >= 1,
        &file,
        || key("instances"),
        "must be at least 1",
    )?;
    let preferred = p.preferred_batch_sizes.clone().unwrap_or_default();
    check(
        preferred.iter().all(|&b| (1..=p.max_batch).contains(&b)),
        &file,
        || key("preferred_batch_sizes"),
        "each size must lie between 1 and max_batch",
    )?;
    let dynamic_batching = match (p.max_queue_delay_us, p.preferred_batch_sizes.is_some()) {
        (None, false) => None,
        (delay, _) => Some(DynamicBatching {
            max_queue_delay_us: delay.unwrap_or(0),
            preferred_batch_sizes: preferred,
        }),
    };
    let memory_bytes = match p.memory_mib {
        Some(mib) => mib * MIB,
        None => model.memory_bytes(&p.precision, p.max_batch),
    };
    Ok(ProfileEntry {
        model: model.name.clone(),
        gpu: p.gpu.to_ascii_lowercase(),
        profile,
        precision: p.precision,
        alpha_ms: p.alpha_ms,
        beta_ms: p.beta_ms,
        memory_bytes,
        max_batch: p.max_batch,
        instances,
        dynamic_batching,
        source: p.source,
        derived: p.derived,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;
    use super::CatalogError;

    fn write(dir: &std::path::Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn user_entries_replace_and_extend_the_embedded_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "gpus.toml",
            r#"
[[gpu]]
name = "T4"
display = "Tesla T4 (tuned)"
memory_mib = 15000
tdp_w = 70.0
idle_w = 9.0
context_mib = 300
sm_clock_mhz = 1590
gamma = 0.2
gamma_source = "assumed"
host_link = "pcie3x16"
max_resident = 8
source = "mine"

[[gpu]]
name = "rtx4090"
display = "GeForce RTX 4090"
memory_mib = 24564
tdp_w = 450.0
idle_w = 20.0
context_mib = 400
sm_clock_mhz = 2520
gamma = 0.1
gamma_source = "assumed"
host_link = "pcie4x16"
max_resident = 8
source = "mine"
"#,
        );
        write(
            dir.path(),
            "profiles.toml",
            r#"
[[perf]]
model = "resnet50"
gpu = "rtx4090"
precision = "FP16"
alpha_ms = 0.5
beta_ms = 0.1
max_batch = 64
memory_mib = 900
derived = true
source = "mine"
"#,
        );
        let embedded = Catalog::embedded().unwrap();
        let merged = Catalog::load(Some(dir.path())).unwrap();
        assert_eq!(merged.gpus.len(), embedded.gpus.len() + 1);
        assert_eq!(merged.gpu("t4").unwrap().display, "Tesla T4 (tuned)");
        let p = merged.perf("resnet50", "rtx4090", None).unwrap();
        assert_eq!(p.memory_bytes, 900 * 1024 * 1024);
        assert_eq!(merged.models, embedded.models);
    }

    #[test]
    fn bad_files_name_the_file_and_the_key() {
        let cases = [
            ("gpus.toml", "[[gpu]]\nname = \"x\"\nbogus = 1\n", "bogus"),
            (
                "profiles.toml",
                "[[perf]]\nmodel = \"resnet50\"\ngpu = \"t4\"\nprecision = \"INT8\"\nalpha_ms = 1.0\nbeta_ms = -0.1\nmax_batch = 8\nderived = true\nsource = \"x\"\n",
                "beta_ms",
            ),
            (
                "profiles.toml",
                "[[perf]]\nmodel = \"nosuch\"\ngpu = \"t4\"\nprecision = \"INT8\"\nalpha_ms = 1.0\nbeta_ms = 0.1\nmax_batch = 8\nderived = true\nsource = \"x\"\n",
                "model",
            ),
            (
                "models.toml",
                "[[model]]\nname = \"m\"\nplatform = \"p\"\ndescription = \"d\"\nparams_millions = 1.0\nactivation_mb_per_image = 1.0\ninput = [{ name = \"i\", datatype = \"FLOAT\", shape = [3] }]\noutput = [{ name = \"o\", datatype = \"FP32\", shape = [1] }]\n",
                "datatype",
            ),
        ];
        for (name, text, key) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), name, text);
            let err = Catalog::load(Some(dir.path())).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains(key), "{msg}");
            assert!(matches!(
                err,
                CatalogError::Parse { .. } | CatalogError::Invalid { .. }
            ));
        }
    }

    #[test]
    fn a_missing_directory_overrides_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let merged = Catalog::load(Some(&dir.path().join("absent"))).unwrap();
        assert_eq!(merged, Catalog::embedded().unwrap());
    }
}
