//! Measured solo peaks, cached on disk so a second `perseus probe` (and every later run against the
//! same server) reuses them.
//!
//! A peak depends on the server, the model and everything that shapes its service: batch size,
//! instance count, dynamic batching and the SLA itself. Those form the key; the configuration part
//! is hashed with FNV-1a over a canonical text form, which (unlike std's hasher) is stable across
//! Rust versions, so cache files stay valid after an upgrade. The readable form is stored beside
//! the hash for anyone inspecting the file.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::vocab::spec::{DynamicBatching, Sla};

/// File name inside the caller's data directory.
pub const FILE_NAME: &str = "solo-peaks.json";
const SCHEMA: &str = "perseus.peaks.v1";

/// Everything about a tenant's setup that changes its solo peak.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakConfig {
    pub batch: u32,
    pub instances: Option<u32>,
    pub dynamic_batching: Option<DynamicBatching>,
    pub sla: Sla,
}

impl PeakConfig {
    /// Canonical text form: same configuration, same text, on every platform and version.
    pub fn canonical(&self) -> String {
        let instances = self
            .instances
            .map_or_else(|| "server".to_string(), |n| n.to_string());
        let batching = match &self.dynamic_batching {
            None => "off".to_string(),
            Some(d) => {
                let sizes: Vec<String> =
                    d.preferred_batch_sizes.iter().map(u32::to_string).collect();
                format!(
                    "delay_us={},preferred=[{}]",
                    d.max_queue_delay_us,
                    sizes.join(",")
                )
            }
        };
        format!(
            "batch={};instances={};dynamic_batching={};sla={}ms@p{}",
            self.batch, instances, batching, self.sla.latency_ms, self.sla.percentile
        )
    }

    /// 64-bit FNV-1a of [`canonical`](Self::canonical), as 16 hex digits.
    pub fn hash(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.canonical().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

/// Server address + model + configuration hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeakKey {
    pub server: String,
    pub model: String,
    pub config_hash: String,
}

impl PeakKey {
    pub fn new(server: &str, model: &str, config: &PeakConfig) -> PeakKey {
        PeakKey {
            server: server.to_string(),
            model: model.to_string(),
            config_hash: config.hash(),
        }
    }
}

/// One cached measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakEntry {
    #[serde(flatten)]
    pub key: PeakKey,
    /// The canonical configuration, for people reading the file.
    pub config: String,
    /// Requests per second; `null` when the probe found no rate that met the SLA.
    pub peak_per_s: Option<f64>,
    /// Seconds since the Unix epoch when it was measured.
    pub measured_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    schema: String,
    entries: Vec<PeakEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeakCacheError {
    #[error("cannot read solo-peak cache {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write solo-peak cache {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("solo-peak cache {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("solo-peak cache {path} has schema '{found}', expected '{SCHEMA}'")]
    Schema { path: PathBuf, found: String },
}

/// The cache file in one directory; loads on open, saves atomically on each insert.
#[derive(Debug, Clone)]
pub struct PeakCache {
    path: PathBuf,
    entries: Vec<PeakEntry>,
}

impl PeakCache {
    /// Opens the cache in `dir`; a missing file is an empty cache, a damaged one an error.
    pub fn open(dir: &Path) -> Result<PeakCache, PeakCacheError> {
        let path = dir.join(FILE_NAME);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PeakCache {
                    path,
                    entries: Vec::new(),
                });
            }
            Err(source) => return Err(PeakCacheError::Read { path, source }),
        };
        let file: CacheFile = match serde_json::from_str(&text) {
            Ok(f) => f,
            Err(source) => return Err(PeakCacheError::Parse { path, source }),
        };
        if file.schema != SCHEMA {
            return Err(PeakCacheError::Schema {
                path,
                found: file.schema,
            });
        }
        Ok(PeakCache {
            path,
            entries: file.entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &PeakKey) -> Option<&PeakEntry> {
        self.entries.iter().find(|e| &e.key == key)
    }

    /// Stores (or replaces) a measurement and writes the file.
    pub fn insert(
        &mut self,
        key: PeakKey,
        config: &PeakConfig,
        peak_per_s: Option<f64>,
    ) -> Result<(), PeakCacheError> {
        let measured_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entry = PeakEntry {
            key,
            config: config.canonical(),
            peak_per_s,
            measured_at,
        };
        match self.entries.iter_mut().find(|e| e.key == entry.key) {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
        self.save()
    }

    /// Replaces the file whole, so a crash mid-write never leaves a truncated cache and two probes
    /// saving at once never clobber each other's temporary file.
    fn save(&self) -> Result<(), PeakCacheError> {
        let write_err = |source| PeakCacheError::Write {
            path: self.path.clone(),
            source,
        };
        let file = CacheFile {
            schema: SCHEMA.to_string(),
            entries: self.entries.clone(),
        };
        let json =
            serde_json::to_string_pretty(&file).map_err(|e| write_err(std::io::Error::other(e)))?;
        crate::atomic::write_atomic(&self.path, json.as_bytes()).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(batch: u32) -> PeakConfig {
        PeakConfig {
            batch,
            instances: Some(1),
            dynamic_batching: Some(DynamicBatching {
                max_queue_delay_us: 2000,
                preferred_batch_sizes: vec![4, 8],
            }),
            sla: Sla {
                latency_ms: 750.0,
                percentile: 95.0,
            },
        }
    }

    #[test]
    fn a_second_open_finds_what_the_first_stored() {
        let dir = tempfile::tempdir().unwrap();
        let key = PeakKey::new("localhost:8001", "resnet50", &config(1));
        let mut cache = PeakCache::open(dir.path()).unwrap();
        assert!(cache.get(&key).is_none());
        cache.insert(key.clone(), &config(1), Some(256.0)).unwrap();

        let reopened = PeakCache::open(dir.path()).unwrap();
        let entry = reopened.get(&key).unwrap();
        assert_eq!(entry.peak_per_s, Some(256.0));
        assert!(entry.config.contains("batch=1"));
    }

    #[test]
    fn keys_separate_server_model_and_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = PeakCache::open(dir.path()).unwrap();
        let a = PeakKey::new("a:8001", "resnet50", &config(1));
        cache.insert(a.clone(), &config(1), Some(100.0)).unwrap();
        assert!(
            cache
                .get(&PeakKey::new("b:8001", "resnet50", &config(1)))
                .is_none()
        );
        assert!(
            cache
                .get(&PeakKey::new("a:8001", "inception_v3", &config(1)))
                .is_none()
        );
        assert!(
            cache
                .get(&PeakKey::new("a:8001", "resnet50", &config(2)))
                .is_none()
        );
        // replacing keeps one entry
        cache.insert(a.clone(), &config(1), Some(120.0)).unwrap();
        assert_eq!(PeakCache::open(dir.path()).unwrap().entries.len(), 1);
        assert_eq!(cache.get(&a).unwrap().peak_per_s, Some(120.0));
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        // FNV-1a of a fixed text is a fixed number: recompute it here independently.
        let c = config(1);
        let mut h: u64 = 0xcbf29ce484222325;
        for b in c.canonical().as_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
        }
        assert_eq!(c.hash(), format!("{h:016x}"));
        let mut d = config(1);
        d.sla.latency_ms = 700.0;
        assert_ne!(c.hash(), d.hash());
        d = config(1);
        d.dynamic_batching = None;
        assert_ne!(c.hash(), d.hash());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), "{ not json").unwrap();
        let err = PeakCache::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }
}
