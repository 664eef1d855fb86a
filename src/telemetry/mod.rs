//! GPU telemetry sources: NVML, Triton's metrics, the emulator.
