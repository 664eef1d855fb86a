//! The run: commands in, snapshots out.

pub mod command;
pub mod snapshot;
