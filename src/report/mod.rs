//! Headless output: summary table, JSON and CSV.
