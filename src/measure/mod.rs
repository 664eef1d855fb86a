//! Measurement primitives: latency histograms, sliding windows, per-tenant meters with DESIGN §4's
//! SLA rules, and the pure part of solo-peak probing (the search and its cache).

pub mod client;
pub mod histogram;
pub mod meter;
pub mod peak;
pub mod peak_cache;
pub mod window;

pub use client::{ClientFigures, CpuMeter};
pub use histogram::LatencyHistogram;
pub use meter::{
    Counts, MeterError, SlaVerdict, SpanContext, TenantMeter, TenantRecorder, sla_verdict,
};
pub use peak::{
    PeakOutcome, PeakReason, PeakSearch, PeakSearchConfig, PeakStep, ProbeWindow, StepResult,
};
pub use peak_cache::{PeakCache, PeakCacheError, PeakConfig, PeakEntry, PeakKey};
pub use window::{Interval, Window, WindowError};
