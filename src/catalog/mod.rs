//! GPUs, models and prices known to the emulator and the cost panel.
