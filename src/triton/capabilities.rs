//! Which of Triton's protocol extensions the server offers, on top of the KServe-v2 core.
//!
//! KServe-v2 servers (MLServer, KServe's own runtimes) answer health, metadata and inference but
//! not Triton's ModelConfig, ModelStatistics or repository RPCs. The client learns what is there
//! from ServerMetadata's `extensions` list (what it lists is there) and from the first
//! `UNIMPLEMENTED` answer (what answers that is not); either way it remembers, so a missing extension costs one round trip per
//! connection rather than one per tick.

use std::sync::atomic::{AtomicU8, Ordering};

/// A Triton extension the client can use when the server has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extension {
    /// ModelConfig: max batch, instances, dynamic batching.
    ModelConfiguration,
    /// ModelStatistics: the server-side breakdown (queue, compute).
    Statistics,
    /// RepositoryIndex and RepositoryModelLoad/Unload (explicit model control).
    ModelRepository,
}

impl Extension {
    const ALL: [Extension; 3] = [
        Extension::ModelConfiguration,
        Extension::Statistics,
        Extension::ModelRepository,
    ];

    /// The name Triton lists in ServerMetadata's `extensions`.
    pub fn name(self) -> &'static str {
        match self {
            Extension::ModelConfiguration => "model_configuration",
            Extension::Statistics => "statistics",
            Extension::ModelRepository => "model_repository",
        }
    }

    fn index(self) -> usize {
        match self {
            Extension::ModelConfiguration => 0,
            Extension::Statistics => 1,
            Extension::ModelRepository => 2,
        }
    }
}

// Zero, the default, is "not known yet".
const PRESENT: u8 = 1;
const MISSING: u8 = 2;

/// What is known about one server's extensions; shared by every client connected to it.
#[derive(Debug, Default)]
pub struct Capabilities {
    state: [AtomicU8; 3],
}

impl Capabilities {
    /// `Some(true)` when the server is known to offer `ext`, `Some(false)` when it is known not to,
    /// `None` before the client has found out.
    pub fn supports(&self, ext: Extension) -> Option<bool> {
        match self.state[ext.index()].load(Ordering::Relaxed) {
            PRESENT => Some(true),
            MISSING => Some(false),
            _ => None,
        }
    }

    /// Takes the extensions ServerMetadata lists as present. One left out stays unknown rather
    /// than missing: servers differ in what they list (some list nothing), and a call that answers
    /// `UNIMPLEMENTED` settles it for one round trip.
    pub fn learn_from_metadata(&self, extensions: &[String]) {
        for ext in Extension::ALL {
            // Triton also lists qualified forms such as `model_repository(unload_dependents)`.
            let listed = extensions
                .iter()
                .any(|e| e == ext.name() || e.starts_with(&format!("{}(", ext.name())));
            if listed {
                self.set(ext, true);
            }
        }
    }

    /// Records what a call to `ext` showed: present when it answered, missing on `UNIMPLEMENTED`.
    pub fn set(&self, ext: Extension, present: bool) {
        let value = if present { PRESENT } else { MISSING };
        self.state[ext.index()].store(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_extensions_are_present_and_unimplemented_ones_missing() {
        let caps = Capabilities::default();
        caps.learn_from_metadata(&[]);
        assert_eq!(caps.supports(Extension::Statistics), None);
        let listed: Vec<String> = ["model_repository(unload_dependents)", "statistics"]
            .map(String::from)
            .to_vec();
        caps.learn_from_metadata(&listed);
        assert_eq!(caps.supports(Extension::Statistics), Some(true));
        assert_eq!(caps.supports(Extension::ModelRepository), Some(true));
        assert_eq!(caps.supports(Extension::ModelConfiguration), None);
        caps.set(Extension::Statistics, false);
        assert_eq!(caps.supports(Extension::Statistics), Some(false));
    }
}
