//! What is planned: the session's open-loop tenants, the priced GPU types to place them on, the
//! headroom and the seed, each checked with an error that names what was wrong.

use std::collections::BTreeSet;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::PlanError;
use crate::catalog::Catalog;
use crate::cost::Prices;
use crate::session::SessionError;
use crate::vocab::spec::{Load, RunSpec, TargetSpec};

/// The base of the arrival seeds when none is given: the engine's, so that with no `--seed` a plan
/// checks the very arrival sequences a run of the session would send (tenant i gets base + i).
pub const DEFAULT_SEED: u64 = 0x5eed_0000;

/// Share of each rate kept free when none is given: the mix at 1.2 × its rates must still meet
/// every SLA.
pub const DEFAULT_HEADROOM: f64 = 0.2;

/// The flags of `perseus plan`, as parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanOptions {
    /// Catalog GPU names to consider; `None`: every GPU with a price.
    pub gpus: Option<Vec<String>>,
    /// Price providers (`aws`, `gcp`, …) to take prices from; `None`: all.
    pub providers: Option<Vec<String>>,
    /// Fraction, e.g. 0.2 for 20 %.
    pub headroom: Option<f64>,
    pub seed: Option<u64>,
}

/// One GPU type a plan may use, at its cheapest price among the providers considered.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuOption {
    /// Catalog name (`t4`).
    pub gpu: String,
    /// What NVML calls it.
    pub display: String,
    /// The priced instance (`aws:g4dn.xlarge`).
    pub instance: String,
    /// Per GPU: a multi-GPU instance's price divided by its GPUs.
    pub usd_per_hour: f64,
}

/// A session ready to plan.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub spec: RunSpec,
    /// The calibration profile of the session's emulated GPU (the default for a real Triton).
    pub profile: Option<String>,
    pub gpus: Vec<GpuOption>,
    pub headroom: f64,
    pub seed: u64,
}

impl PlanInput {
    /// Checks that every tenant has a rate to place (SLAs are checked on the file's text by
    /// [`tenants_without_sla`], since a parsed session has filled in the default).
    pub fn new(
        spec: RunSpec,
        gpus: Vec<GpuOption>,
        headroom: f64,
        seed: u64,
    ) -> Result<PlanInput, PlanError> {
        if spec.tenants.is_empty() {
            return Err(PlanError::NoTenants);
        }
        for (i, t) in spec.tenants.iter().enumerate() {
            if let Load::Concurrency(concurrency) = t.load {
                return Err(PlanError::ClosedLoop {
                    index: i + 1,
                    model: t.model.clone(),
                    concurrency,
                });
            }
        }
        let profile = match &spec.target {
            TargetSpec::Emulated { profile, .. } => profile.clone(),
            TargetSpec::Triton { .. } => None,
        };
        Ok(PlanInput {
            spec,
            profile,
            gpus,
            headroom: headroom.max(0.0),
            seed,
        })
    }

    /// Tenant `t`'s request rate (closed-loop tenants were refused in [`PlanInput::new`]).
    pub fn rate(&self, t: usize) -> f64 {
        match self.spec.tenants.get(t).map(|t| &t.load) {
            Some(Load::Rate { per_s, .. }) => *per_s,
            _ => 0.0,
        }
    }

    /// Seed of tenant `t`'s arrivals, the same whichever tenants share its GPU.
    pub fn seed_of(&self, t: usize) -> u64 {
        self.seed.wrapping_add(t as u64)
    }
}

/// The GPU types to plan on: the catalog's GPUs (or those `gpus` names), each at its cheapest price
/// among the instances of the `providers` named (or all). A name that is neither gets a
/// did-you-mean; a GPU named but not priced by those providers is an error too.
pub fn gpu_options(
    catalog: &Catalog,
    prices: &Prices,
    gpus: Option<&[String]>,
    providers: Option<&[String]>,
) -> Result<Vec<GpuOption>, PlanError> {
    let known_providers: BTreeSet<String> = prices
        .instances()
        .iter()
        .filter_map(|p| {
            p.id.split_once(':')
                .map(|(provider, _)| provider.to_lowercase())
        })
        .collect();
    if let Some(names) = providers {
        for name in names {
            if !known_providers.contains(&name.to_lowercase()) {
                return Err(PlanError::UnknownProvider {
                    name: name.clone(),
                    suggestion: crate::suggest::did_you_mean(
                        name,
                        known_providers.iter().map(String::as_str),
                    )
                    .map(str::to_string),
                    known: join(known_providers.iter()),
                });
            }
        }
    }
    if let Some(names) = gpus {
        for name in names {
            if catalog.gpu(name).is_none() {
                return Err(PlanError::UnknownGpu {
                    name: name.clone(),
                    suggestion: crate::suggest::did_you_mean(
                        name,
                        catalog.gpus.iter().map(|g| g.name.as_str()),
                    )
                    .map(str::to_string),
                    known: join(catalog.gpus.iter().map(|g| &g.name)),
                });
            }
        }
    }
    let provider_ok = |id: &str| match providers {
        None => true,
        Some(names) => id
            .split_once(':')
            .is_some_and(|(p, _)| names.iter().any(|n| n.eq_ignore_ascii_case(p))),
    };
    let mut out = Vec::new();
    for gpu in &catalog.gpus {
        let named =
            gpus.is_none_or(|names| names.iter().any(|n| n.eq_ignore_ascii_case(&gpu.name)));
        if !named {
            continue;
        }
        let cheapest = prices
            .instances()
            .iter()
            .filter(|p| p.gpu.eq_ignore_ascii_case(&gpu.name) && provider_ok(&p.id))
            .min_by(|a, b| a.usd_per_gpu_hour().total_cmp(&b.usd_per_gpu_hour()));
        match cheapest {
            Some(p) => out.push(GpuOption {
                gpu: gpu.name.clone(),
                display: gpu.display.clone(),
                instance: p.id.clone(),
                usd_per_hour: p.usd_per_gpu_hour(),
            }),
            None if gpus.is_some() => {
                return Err(PlanError::NoGpus(format!(
                    "GPU '{}' has no price{}",
                    gpu.name,
                    providers
                        .map(|p| format!(" from {}", p.join(", ")))
                        .unwrap_or_default()
                )));
            }
            None => {}
        }
    }
    if out.is_empty() {
        return Err(PlanError::NoGpus(
            "no catalog GPU has a price from the providers given".to_string(),
        ));
    }
    Ok(out)
}

fn join<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// A tenant that gives no `sla`: a parsed session has filled in the default SLA, but a plan must
/// meet what the user asked for, so it refuses to guess. The error points at the tenant's table.
pub fn tenants_without_sla(text: &str, file: &Path) -> Result<(), SessionError> {
    let at = |offset: usize, key: String, message: String| {
        let (line, column) = line_col(text, offset);
        SessionError {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    };
    let root = DeTable::parse(text)
        .map_err(|e| at(0, String::new(), format!("invalid TOML: {}", e.message())))?;
    let Some((_, tenants)) = root.get_ref().iter().find(|(k, _)| k.get_ref() == "tenant") else {
        return Ok(());
    };
    let DeValue::Array(tenants) = tenants.get_ref() else {
        return Ok(());
    };
    for (i, tenant) in tenants.iter().enumerate() {
        let DeValue::Table(table) = tenant.get_ref() else {
            continue;
        };
        let get = |key: &str| table.iter().find(|(k, _)| k.get_ref() == key);
        if get("sla").is_some() {
            continue;
        }
        let model = match get("model").map(|(_, v)| v.get_ref()) {
            Some(DeValue::String(s)) => s.to_string(),
            _ => "?".to_string(),
        };
        return Err(at(
            tenant.span().start,
            format!("tenant[{i}]"),
            format!(
                "tenant {} ({model}) has no SLA: a plan must meet what each tenant asks for, so \
                 give it one, e.g. sla = {{ latency_ms = 100, percentile = 95 }}",
                i + 1
            ),
        ));
    }
    Ok(())
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_without_an_sla_is_named_with_its_position() {
        let text = "name = \"x\"\n\n[[tenant]]\nmodel = \"resnet50\"\nrate = 10\n\
                    sla = { latency_ms = 50, percentile = 95 }\n\n[[tenant]]\nmodel = \"vgg16\"\nrate = 5\n";
        let e = tenants_without_sla(text, Path::new("s.toml")).unwrap_err();
        assert_eq!(e.key, "tenant[1]");
        assert!(e.message.contains("tenant 2 (vgg16) has no SLA"), "{e}");
        assert!(e.line >= 8 && e.line <= 9, "{e}");
        let ok = text.replace(
            "rate = 5\n",
            "rate = 5\nsla = { latency_ms = 1, percentile = 9 }\n",
        );
        assert!(tenants_without_sla(&ok, Path::new("s.toml")).is_ok());
    }

    #[test]
    fn unknown_gpus_and_providers_get_a_did_you_mean() {
        let catalog = Catalog::embedded().unwrap();
        let prices = Prices::embedded().unwrap();
        let e = gpu_options(&catalog, &prices, Some(&["t5".to_string()]), None).unwrap_err();
        assert!(e.to_string().contains("did you mean 't4'"), "{e}");
        let e = gpu_options(&catalog, &prices, None, Some(&["azur".to_string()])).unwrap_err();
        assert!(e.to_string().contains("did you mean 'azure'"), "{e}");
        let e = gpu_options(
            &catalog,
            &prices,
            Some(&["p4".to_string()]),
            Some(&["aws".into()]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("'p4' has no price from aws"), "{e}");
    }

    #[test]
    fn each_gpu_takes_its_cheapest_price_among_the_providers() {
        let catalog = Catalog::embedded().unwrap();
        let prices = Prices::embedded().unwrap();
        let all = gpu_options(&catalog, &prices, None, None).unwrap();
        let t4 = all.iter().find(|g| g.gpu == "t4").unwrap();
        let cheapest = prices
            .instances()
            .iter()
            .filter(|p| p.gpu == "t4")
            .map(|p| p.usd_per_gpu_hour())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(t4.usd_per_hour, cheapest);
        let aws = gpu_options(&catalog, &prices, None, Some(&["aws".to_string()])).unwrap();
        assert!(
            aws.iter().all(|g| g.instance.starts_with("aws:")),
            "{aws:?}"
        );
        assert!(
            !aws.iter().any(|g| g.gpu == "p4"),
            "P4 is priced by GCP only"
        );
    }
}
