//! A Triton-compatible server whose GPU is a calibrated performance model.

pub mod sim;
