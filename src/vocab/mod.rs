//! The vocabulary every part speaks: snapshots, tenant and run specs, commands, datatypes.
//!
//! It sits at the bottom of the module graph and imports nothing of ours, so producers (engine,
//! telemetry, measure, cost) fill these types and consumers (TUI, report, recorder, replay) read
//! them without any arrow pointing back up.

pub mod capacity;
pub mod client_bound;
pub mod command;
pub mod datatype;
pub mod fleet;
pub mod quantiles;
pub mod snapshot;
pub mod spec;
