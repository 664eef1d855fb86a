//! `perseus emulate` as a stand-alone program, with the same flags, for the compatibility tests until
//! (and independently of) the main binary: `cargo run --example emulate -- emulate --gpu t4`.

use clap::{Parser, Subcommand};
use perseus::emulator::{EmulateArgs, run_standalone};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the emulated GPU over Triton's protocols
    Emulate(EmulateArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Command::Emulate(args) = Cli::parse().command;
    match run_standalone(args.into()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perseus emulate: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
