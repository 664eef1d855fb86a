//! Scenarios as files, and runs that can be shown again.
//!
//! - [`parse_session`] turns a session file (DESIGN §3) into a validated [`RunSpec`](crate::vocab::spec::RunSpec), with
//!   errors that point at the file, line, column and key; [`to_toml`] and [`save_atomic`] write one
//!   back for the TUI's "save session".
//! - [`Config`] is the user's `config.toml`; [`data_dir`] and [`runs_dir`] say where files go.
//! - [`Recorder`] appends snapshots to a JSON-lines recording; [`RecordingReader`] streams one back,
//!   skipping damaged lines; [`replay`] plays it to the dashboard from a [`RecordingIndex`], and
//!   [`export_csv`] flattens it.

mod config;
mod export;
mod fleet;
mod inputs;
pub mod limits;
mod parse;
mod printable;
mod recording;
mod replay;
mod spanned;
mod tenant;
mod write;

pub use config::{
    CONFIG_ENV, Config, ConfigError, DATA_DIR_ENV, data_dir, default_config_path, runs_dir,
    sessions_dir,
};
pub use export::{csv_header_of, export_csv};
pub use fleet::MAX_TARGETS;
pub use parse::{
    AnyModel, ModelLookup, StaticModels, is_loopback, load_fleet_session, load_session,
    parse_fleet_session, parse_session,
};
pub use printable::printable;
pub use recording::{
    Damage, RECORDING_SCHEMA, Recorder, Recording, RecordingError, RecordingHeader, RecordingIndex,
    RecordingReader, parse_recording, read_recording, record_snapshots,
};
pub use replay::{REPLAY_SPEEDS, replay};
pub use spanned::SessionError;
pub use tenant::{
    DEFAULT_BURST_FACTOR, DEFAULT_BURST_OFF, DEFAULT_BURST_ON, DEFAULT_SLA, parse_gaps,
};
pub use write::{fleet_to_toml, fresh_session_path, save_atomic, save_fleet_atomic, to_toml};

/// The default session (three CNNs on one emulated T4), embedded so that `perseus` with no
/// arguments works from any directory.
pub const DEMO_SESSION: &str = include_str!("../../sessions/demo.toml");
