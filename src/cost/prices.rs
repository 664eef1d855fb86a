//! The price catalog: embedded `catalog/prices.toml`, optionally extended or overridden by the
//! user's own `prices.toml`, and resolution of a session's `[cost]` into a per-GPU hourly price.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::vocab::spec::CostSpec;

const EMBEDDED: &str = include_str!("../catalog/prices.toml");
/// File name looked up in the user's config directory.
pub const USER_FILE: &str = "prices.toml";

/// One priced cloud instance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancePrice {
    /// `provider:name`, e.g. `aws:g4dn.xlarge`.
    pub id: String,
    /// Catalog GPU name (lower case), e.g. `t4`.
    pub gpu: String,
    pub gpus: u32,
    /// On-demand price of the whole instance.
    pub usd_per_hour: f64,
    pub region: String,
    /// When the price held (or was read), as the source allows.
    pub date: String,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
}

impl InstancePrice {
    pub fn usd_per_gpu_hour(&self) -> f64 {
        self.usd_per_hour / f64::from(self.gpus.max(1))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceFile {
    #[serde(default)]
    instance: Vec<InstancePrice>,
}

/// A session's price, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPrice {
    /// Catalog id, or `None` for a literal price.
    pub instance: Option<String>,
    /// The shared GPU's hourly price: a multi-GPU instance's price divided by its GPU count.
    pub usd_per_hour_per_gpu: f64,
    /// Catalog GPU name; `None` for a literal price.
    pub gpu: Option<String>,
    /// GPUs in the instance (1 for a literal price).
    pub gpus: u32,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: instance '{id}': {problem}")]
    Invalid {
        file: String,
        id: String,
        problem: String,
    },
    #[error("cannot read price file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("unknown instance '{name}'{}", did_you_mean(.suggestion))]
    UnknownInstance {
        name: String,
        suggestion: Option<String>,
    },
    #[error("usd_per_hour must be a positive number, got {0}")]
    BadLiteralPrice(f64),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean '{s}'?)"))
        .unwrap_or_default()
}

/// Every known instance price.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    instances: Vec<InstancePrice>,
}

impl Prices {
    /// The catalog shipped in the binary.
    pub fn embedded() -> Result<Prices, CostError> {
        Ok(Prices {
            instances: parse(EMBEDDED, "embedded prices.toml")?,
        })
    }

    /// The embedded catalog plus `user_dir/prices.toml` when that file exists; its entries replace
    /// embedded ones with the same id and add the rest. A user file that exists but cannot be read
    /// or parsed is an error naming it.
    pub fn load(user_dir: Option<&Path>) -> Result<Prices, CostError> {
        let mut prices = Prices::embedded()?;
        let Some(dir) = user_dir else {
            return Ok(prices);
        };
        let path = dir.join(USER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(prices),
            Err(e) => {
                return Err(CostError::Read {
                    path,
                    message: e.to_string(),
                });
            }
        };
        for user in parse(&text, &path.display().to_string())? {
            match prices
                .instances
                .iter_mut()
                .find(|p| p.id.eq_ignore_ascii_case(&user.id))
            {
                Some(existing) => *existing = user,
                None => prices.instances.push(user),
            }
        }
        Ok(prices)
    }

    pub fn instances(&self) -> &[InstancePrice] {
        &self.instances
    }

    /// Looks an instance up by id, ignoring case.
    pub fn get(&self, id: &str) -> Option<&InstancePrice> {
        self.instances
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(id))
    }

    /// A session's `[cost]` as a per-GPU hourly price.
    pub fn resolve(&self, spec: &CostSpec) -> Result<ResolvedPrice, CostError> {
        match spec {
            CostSpec::UsdPerHour(p) => {
                if !(p.is_finite() && *p > 0.0) {
                    return Err(CostError::BadLiteralPrice(*p));
                }
                Ok(ResolvedPrice {
                    instance: None,
                    usd_per_hour_per_gpu: *p,
                    gpu: None,
                    gpus: 1,
                })
            }
            CostSpec::Instance(name) => {
                let Some(p) = self.get(name) else {
                    return Err(CostError::UnknownInstance {
                        name: name.clone(),
                        suggestion: self.suggest(name),
                    });
                };
                Ok(ResolvedPrice {
                    instance: Some(p.id.clone()),
                    usd_per_hour_per_gpu: p.usd_per_gpu_hour(),
                    gpu: Some(p.gpu.clone()),
                    gpus: p.gpus,
                })
            }
        }
    }

    /// The closest id, when it is close enough to be a typo; each id is also offered without its
    /// provider, since people write "g4dn.xlarge" for "aws:g4dn.xlarge".
    fn suggest(&self, name: &str) -> Option<String> {
        let bare = |id: &'_ str| id.split_once(':').map_or(id, |(_, b)| b).to_string();
        let forms: Vec<(String, &str)> = self
            .instances
            .iter()
            .flat_map(|p| [(p.id.clone(), p.id.as_str()), (bare(&p.id), p.id.as_str())])
            .collect();
        let hit = crate::suggest::did_you_mean(name, forms.iter().map(|(form, _)| form.as_str()))?;
        forms
            .iter()
            .find(|(form, _)| form == hit)
            .map(|(_, id)| (*id).to_string())
    }

    /// A table for `perseus catalog`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<32} {:<10} {:>4} {:>10} {:>10}  {:<12} DATE / SOURCE",
            "INSTANCE", "GPU", "GPUS", "$/HOUR", "$/GPU-HOUR", "REGION"
        );
        for p in &self.instances {
            let _ = writeln!(
                out,
                "{:<32} {:<10} {:>4} {:>10.4} {:>10.4}  {:<12} {}",
                p.id,
                p.gpu,
                p.gpus,
                p.usd_per_hour,
                p.usd_per_gpu_hour(),
                p.region,
                p.date
            );
            let _ = writeln!(out, "{:<32} {}", "", p.source);
            if let Some(note) = &p.note {
                let _ = writeln!(out, "{:<32} note: {}", "", note);
            }
        }
        out
    }
}

fn parse(text: &str, file: &str) -> Result<Vec<InstancePrice>, CostError> {
    let parsed: PriceFile = toml::from_str(text).map_err(|e| CostError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })?;
    let invalid = |id: &str, problem: &str| CostError::Invalid {
        file: file.to_string(),
        id: id.to_string(),
        problem: problem.to_string(),
    };
    for (i, p) in parsed.instance.iter().enumerate() {
        if !p.id.contains(':') {
            return Err(invalid(&p.id, "id must be 'provider:name'"));
        }
        if p.gpus == 0 {
            return Err(invalid(&p.id, "gpus must be at least 1"));
        }
        if !(p.usd_per_hour.is_finite() && p.usd_per_hour > 0.0) {
            return Err(invalid(&p.id, "usd_per_hour must be a positive number"));
        }
        if p.source.trim().is_empty() {
            return Err(invalid(&p.id, "every price needs a source"));
        }
        if parsed.instance[..i]
            .iter()
            .any(|q| q.id.eq_ignore_ascii_case(&p.id))
        {
            return Err(invalid(&p.id, "listed twice"));
        }
    }
    Ok(parsed.instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_has_the_required_instances() {
        let prices = Prices::embedded().unwrap();
        for id in [
            "aws:g4dn.xlarge",
            "aws:p3.2xlarge",
            "aws:g5.xlarge",
            "aws:g6.xlarge",
            "aws:p4d.24xlarge",
            "aws:p4de.24xlarge",
            "aws:p5.48xlarge",
            "aws:p5en.48xlarge",
            "gcp:t4",
            "gcp:p4",
        ] {
            let p = prices.get(id).unwrap_or_else(|| panic!("{id} missing"));
            assert!(!p.source.is_empty() && !p.date.is_empty(), "{id} unsourced");
        }
    }

    #[test]
    fn multi_gpu_instances_resolve_per_gpu() {
        let prices = Prices::embedded().unwrap();
        let r = prices
            .resolve(&CostSpec::Instance("aws:p4d.24xlarge".into()))
            .unwrap();
        // 32.7726 $/h over 8 A100s = 4.096575 $/GPU-h
        assert!((r.usd_per_hour_per_gpu - 32.7726 / 8.0).abs() < 1e-12);
        assert_eq!(r.gpus, 8);
        assert_eq!(r.gpu.as_deref(), Some("a100-40gb"));
        let g4 = prices
            .resolve(&CostSpec::Instance("AWS:G4DN.XLARGE".into()))
            .unwrap();
        assert_eq!(g4.usd_per_hour_per_gpu, 0.526);
        assert_eq!(g4.instance.as_deref(), Some("aws:g4dn.xlarge"));
    }

    #[test]
    fn literal_prices_pass_through_and_bad_ones_fail() {
        let prices = Prices::embedded().unwrap();
        let r = prices.resolve(&CostSpec::UsdPerHour(0.526)).unwrap();
        assert_eq!(r.instance, None);
        assert_eq!(r.usd_per_hour_per_gpu, 0.526);
        assert!(prices.resolve(&CostSpec::UsdPerHour(0.0)).is_err());
        assert!(prices.resolve(&CostSpec::UsdPerHour(f64::NAN)).is_err());
    }

    #[test]
    fn unknown_instances_suggest_the_nearest() {
        let prices = Prices::embedded().unwrap();
        let err = prices
            .resolve(&CostSpec::Instance("aws:g4dn.xlarg".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown instance 'aws:g4dn.xlarg' (did you mean 'aws:g4dn.xlarge'?)"
        );
        let err = prices
            .resolve(&CostSpec::Instance("g5.xlarge".into()))
            .unwrap_err();
        assert!(
            err.to_string().contains("did you mean 'aws:g5.xlarge'"),
            "{err}"
        );
        let err = prices
            .resolve(&CostSpec::Instance("tpu-v5".into()))
            .unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn user_file_overrides_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(USER_FILE),
            r#"
[[instance]]
id = "aws:g4dn.xlarge"
gpu = "t4"
gpus = 1
usd_per_hour = 0.40
region = "us-east-1"
date = "2026-11-01"
source = "my negotiated rate"

[[instance]]
id = "onprem:dgx"
gpu = "a100-80gb"
gpus = 8
usd_per_hour = 16.0
region = "lab"
date = "2026-11-01"
source = "amortized purchase"
"#,
        )
        .unwrap();
        let prices = Prices::load(Some(dir.path())).unwrap();
        assert_eq!(prices.get("aws:g4dn.xlarge").unwrap().usd_per_hour, 0.40);
        assert_eq!(prices.get("onprem:dgx").unwrap().usd_per_gpu_hour(), 2.0);
        assert_eq!(
            prices.instances().len(),
            Prices::embedded().unwrap().instances().len() + 1
        );
        // no user file: the embedded catalog
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            Prices::load(Some(empty.path())).unwrap(),
            Prices::embedded().unwrap()
        );
    }

    #[test]
    fn bad_user_files_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(USER_FILE);
        std::fs::write(&path, "[[instance]]\nid = \"x:y\"\nprice = 3\n").unwrap();
        let err = Prices::load(Some(dir.path())).unwrap_err().to_string();
        assert!(
            err.contains("prices.toml") && err.contains("price"),
            "{err}"
        );

        std::fs::write(
            &path,
            "[[instance]]\nid = \"x:y\"\ngpu = \"t4\"\ngpus = 0\nusd_per_hour = 1.0\nregion = \"r\"\ndate = \"d\"\nsource = \"s\"\n",
        )
        .unwrap();
        let err = Prices::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("gpus must be at least 1"), "{err}");
    }

    #[test]
    fn render_lists_every_instance_with_its_source() {
        let prices = Prices::embedded().unwrap();
        let text = prices.render_text();
        for p in prices.instances() {
            assert!(text.contains(&p.id) && text.contains(&p.source), "{}", p.id);
        }
    }
}
