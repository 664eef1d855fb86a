//! Scenario files, recording and replay.

pub mod spec;
