//! Latency histograms, sliding windows, SLA attainment.
