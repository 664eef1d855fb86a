//! The terminal dashboard: the only module that draws or touches the terminal.
//!
//! It is a pure consumer of [`Snapshot`]s and a producer of [`Command`]s (or [`ReplayCommand`]s
//! when the snapshots come from a recording). Drawing runs on its own clock, independent of the
//! engine's tick, and never waits on the engine: commands go out with `try_send`.
//!
//! [`Snapshot`]: crate::vocab::snapshot::Snapshot
//! [`Command`]: crate::vocab::command::Command
//! [`ReplayCommand`]: crate::vocab::command::ReplayCommand

pub mod app;
pub mod cost;
pub mod fleet;
pub mod fleet_table;
pub mod footer;
pub mod format;
pub mod frontier;
pub mod gpu;
pub mod header;
pub mod keymap;
pub mod latency;
pub mod overlay;
mod run;
pub mod screen;
pub mod series;
pub mod tenants;
pub mod terminal;
pub mod theme;
pub mod whatif;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::vocab::command::{Command, ReplayCommand};

pub use run::{run, run_fleet};

/// How the dashboard looks and which keys it answers to, resolved from flags and the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TuiOptions {
    /// Theme name (built-in or a file stem in `theme_dirs`).
    pub theme: String,
    /// Frames per second at most; the screen redraws only when something changed.
    pub render_fps: u32,
    /// Action name → key spec(s) separated by spaces (`quit = "q ctrl-c"`), from the config file.
    pub key_overrides: BTreeMap<String, String>,
    /// `NO_COLOR` is set: draw with the monochrome theme only.
    pub no_color: bool,
    /// Directories holding user themes (`NAME.toml`).
    pub theme_dirs: Vec<PathBuf>,
}

impl TuiOptions {
    pub const DEFAULT_FPS: u32 = 10;
}

impl Default for TuiOptions {
    fn default() -> Self {
        TuiOptions {
            theme: "default".to_string(),
            render_fps: Self::DEFAULT_FPS,
            key_overrides: BTreeMap::new(),
            no_color: false,
            theme_dirs: Vec::new(),
        }
    }
}

/// Where the dashboard's requests go: a live engine, or a replay of a recording.
#[derive(Debug, Clone)]
pub enum Control {
    Live(tokio::sync::mpsc::Sender<Command>),
    Replay(tokio::sync::mpsc::Sender<ReplayCommand>),
    /// A multi-target run: `router` takes what names a tenant (it goes to the tenant's own
    /// target) or concerns every target; what belongs to the selected tenant's target without
    /// naming a live tenant (an add, applying a what-if) goes straight to that target's engine.
    Fleet {
        router: tokio::sync::mpsc::Sender<Command>,
        engines: Vec<tokio::sync::mpsc::Sender<Command>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("terminal")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    Keymap(#[from] keymap::KeymapError),
    #[error(transparent)]
    Theme(#[from] theme::ThemeError),
    #[error("the multi-target run has no targets to show")]
    NoTargets,
    #[error("render_fps must be 1 to 120, got {0}")]
    Fps(u32),
}
