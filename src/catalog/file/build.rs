//! Validating the merged files and building the catalog's types from them.

use super::*;

pub(super) fn build(raw: Raw) -> Result<Catalog, CatalogError> {
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
    crate::catalog::mig::expand(&mut gpus, &mut profiles, &models);
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
