//! `perseus emulate`: the Triton-compatible emulator as a server of its own.

use crate::commands::Failure;
use crate::emulator::{EmulateArgs, EmulatorConfig, EmulatorError};
use crate::session::Config;

/// `perseus emulate`: the standalone server.
pub async fn emulate(args: EmulateArgs, config: &Config) -> Result<(), Failure> {
    let mut emu: EmulatorConfig = args.into();
    if emu.catalog_dir.is_none() {
        emu.catalog_dir = config.catalog_dir.clone();
    }
    crate::emulator::run_standalone(emu)
        .await
        .map_err(|e| match e {
            EmulatorError::UnknownGpu { .. }
            | EmulatorError::UnknownProfile { .. }
            | EmulatorError::Catalog(_) => Failure::BadInput(e.into()),
            other => Failure::Target(other.into()),
        })
}
