//! Capacity for the engine's hook: a mix of tenant specs onto the emulator's GPU model, and a real
//! GPU's device name onto a catalog GPU.
//!
//! The search itself is the emulator's ([`sim::capacity`]); this is the translation from what the
//! client side knows (specs, arrival processes, a device name) to what the model takes.

use std::sync::Arc;

use crate::catalog::{Catalog, GpuSpec};
use crate::emulator::sim::{self, CapacityOptions, MixArrivals, MixTenant};
use crate::loadgen::ArrivalProcess;
use crate::vocab::capacity::{CapacityEstimate, MixPrediction, Predicted, TenantPrediction};
use crate::vocab::spec::{Load, TenantSpec};

/// The capacity of `tenants` on `gpu`'s model, or why there is none.
pub fn mix_capacity(
    catalog: &Catalog,
    gpu: &GpuSpec,
    profile: Option<&str>,
    tenants: &[TenantSpec],
) -> CapacityEstimate {
    match try_mix_capacity(catalog, gpu, profile, tenants) {
        Ok(p) => CapacityEstimate::Known(p),
        Err(reason) => CapacityEstimate::Unknown { reason },
    }
}

fn try_mix_capacity(
    catalog: &Catalog,
    gpu: &GpuSpec,
    profile: Option<&str>,
    tenants: &[TenantSpec],
) -> Result<MixPrediction, String> {
    let mut mix = Vec::with_capacity(tenants.len());
    for (i, t) in tenants.iter().enumerate() {
        let setup = crate::emulator::served_setup(
            catalog,
            gpu,
            profile,
            &t.model,
            t.instances,
            t.dynamic_batching.as_ref(),
        )
        .ok_or_else(|| {
            format!(
                "model '{}' has no performance entry for {}",
                t.model, gpu.display
            )
        })?;
        let Load::Rate { per_s, arrival } = &t.load else {
            return Err(format!(
                "tenant {} ({}) runs closed-loop: capacity scales rates",
                i + 1,
                t.model
            ));
        };
        let arrival = arrival.clone();
        mix.push(MixTenant {
            setup,
            batch: t.batch,
            rate_per_s: *per_s,
            // The load generator's own process, so the search sees the arrivals a run sends.
            arrivals: MixArrivals::Process(Arc::new(move |rate, seed| {
                let mut process = ArrivalProcess::new(&arrival, rate, seed);
                Box::new(move || process.next_gap().as_secs_f64())
            })),
            sla: sim::Sla {
                latency_ms: t.sla.latency_ms,
                percentile: t.sla.percentile,
            },
        });
    }
    let c = sim::capacity(&sim::gpu_setup(gpu), &mix, &CapacityOptions::default())
        .map_err(|e| e.to_string())?;
    let predicted = |o: &sim::TenantOutcome| Predicted {
        rate_per_s: o.rate_per_s,
        latency_ms: o.latency_ms,
        attainment: o.attainment,
        meets_sla: o.meets_sla,
    };
    Ok(MixPrediction {
        gpu: gpu.display.clone(),
        profile: profile.map(str::to_string),
        headroom: c.k,
        tenants: tenants
            .iter()
            .zip(c.at_operating.iter().zip(&c.at_capacity))
            .map(|(t, (now, at))| TenantPrediction {
                tenant: None,
                model: t.model.clone(),
                now: predicted(now),
                at_capacity: predicted(at),
            })
            .collect(),
    })
}

/// The catalog GPU a device name (NVML's, or the metrics' `gpu_name`) denotes, or why none does.
///
/// Names are compared by their parts rather than as strings, since drivers and form factors spell
/// one GPU several ways ("NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3"): the family must be the
/// same, and memory size and form factor must agree where both names state them. A match must be
/// unique, so "A100" alone, which fits both A100 sizes, is refused rather than guessed.
pub fn match_gpu<'a>(catalog: &'a Catalog, device: &str) -> Result<&'a GpuSpec, String> {
    let want = NameParts::of(device);
    let Some(family) = &want.family else {
        return Err(format!("the GPU name '{device}' names no GPU model"));
    };
    // NVML names a MIG device "<GPU> MIG 1g.10gb": only a slice of that profile is that device,
    // and a whole GPU's name never matches a slice.
    let mig = |name: &str| {
        let lower = name.to_ascii_lowercase();
        lower
            .split_once(" mig ")
            .map(|(_, profile)| profile.trim().to_string())
    };
    let want_mig = mig(device);
    let fits: Vec<&GpuSpec> = catalog
        .gpus
        .iter()
        .filter(|g| mig(&g.display) == want_mig)
        .filter(|g| NameParts::of(&g.display).agrees_with(&want))
        .collect();
    match fits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no catalog GPU matches '{device}' ({family}{}{})",
            want.memory_gb
                .map(|m| format!(", {m} GB"))
                .unwrap_or_default(),
            want.form.map(|f| format!(", {f}")).unwrap_or_default()
        )),
        many => Err(format!(
            "'{device}' could be any of {}",
            many.iter()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What a GPU's name says about it.
#[derive(Debug, PartialEq)]
struct NameParts {
    /// The model token: "t4", "a100", "h100".
    family: Option<String>,
    memory_gb: Option<u32>,
    /// "sxm" or "pcie".
    form: Option<&'static str>,
}

impl NameParts {
    fn of(name: &str) -> NameParts {
        let lower = name.to_ascii_lowercase();
        let mut parts = NameParts {
            family: None,
            memory_gb: None,
            form: None,
        };
        for token in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
            if token.is_empty() || matches!(token, "nvidia" | "tesla" | "geforce") {
                continue;
            }
            if let Some(gb) = token.strip_suffix("gb").and_then(|n| n.parse().ok()) {
                parts.memory_gb = Some(gb);
            } else if token.starts_with("sxm") {
                parts.form = Some("sxm");
            } else if token == "pcie" {
                parts.form = Some("pcie");
            } else if token.starts_with("hbm") || token.starts_with("gddr") {
                // The memory technology follows from the model.
            } else if parts.family.is_none()
                && token.chars().any(|c| c.is_ascii_digit())
                && token
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
            {
                parts.family = Some(token.to_string());
            }
        }
        parts
    }

    fn agrees_with(&self, other: &NameParts) -> bool {
        fn same<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        // NVML always names a PCIe part so ("A100-PCIE-40GB", "H100 PCIe") while SXM parts often
        // go without their form ("H100 80GB HBM3"), so PCIe must be said on both sides or neither.
        let pcie = |p: &NameParts| p.form == Some("pcie");
        self.family.is_some()
            && self.family == other.family
            && same(&self.memory_gb, &other.memory_gb)
            && same(&self.form, &other.form)
            && pcie(self) == pcie(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_match_their_catalog_gpu_and_nothing_is_guessed() {
        let catalog = Catalog::embedded().unwrap();
        let name = |device: &str| match_gpu(&catalog, device).map(|g| g.name.as_str());
        // NVML's names for the catalog's GPUs.
        assert_eq!(name("Tesla T4"), Ok("t4"));
        assert_eq!(name("NVIDIA A100-SXM4-40GB"), Ok("a100-40gb"));
        assert_eq!(name("NVIDIA A100-SXM4-80GB"), Ok("a100-80gb"));
        assert_eq!(name("NVIDIA H100 80GB HBM3"), Ok("h100"));
        assert_eq!(name("NVIDIA L4"), Ok("l4"));
        assert_eq!(name("NVIDIA A10G"), Ok("a10g"));
        assert_eq!(name("Tesla V100-SXM2-16GB"), Ok("v100"));
        assert_eq!(name("NVIDIA H200"), Ok("h200"));
        assert_eq!(name("NVIDIA H100 PCIe"), Ok("h100-pcie"));
        // A MIG device is its slice, never the whole GPU.
        assert_eq!(
            name("NVIDIA A100-SXM4-80GB MIG 1g.10gb"),
            Ok("a100-80gb-1g.10gb")
        );
        // Another form factor or memory size of a catalog family is another GPU: no guess.
        let pcie = name("NVIDIA A100-PCIE-40GB").unwrap_err();
        assert!(
            pcie.contains("no catalog GPU matches") && pcie.contains("pcie"),
            "{pcie}"
        );
        assert!(name("Tesla V100-SXM2-32GB").is_err());
        // Two catalog entries fit a name without its size.
        let both = name("NVIDIA A100").unwrap_err();
        assert!(
            both.contains("a100-40gb") && both.contains("a100-80gb"),
            "{both}"
        );
        // GPUs the catalog does not have, and names that name nothing.
        assert!(name("NVIDIA GeForce RTX 4090").is_err());
        assert!(name("Quadro RTX 8000").is_err());
        assert!(name("NVIDIA").is_err());
    }
}
