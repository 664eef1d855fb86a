//! `perseus completions SHELL`: completions generated from the same clap definitions that parse
//! the command line, so they can never list a flag that does not exist; `man` gives perseus(1).

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};
use crate::commands::{Failure, output};

pub fn completions(shell: CompletionShell) -> Result<(), Failure> {
    let mut command = Cli::command();
    let mut text = Vec::new();
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
        CompletionShell::Elvish => Shell::Elvish,
        CompletionShell::Powershell => Shell::PowerShell,
        CompletionShell::Man => {
            clap_mangen::Man::new(command)
                .render(&mut text)
                .context("rendering the man page")
                .map_err(Failure::Output)?;
            return output::print(&String::from_utf8_lossy(&text));
        }
    };
    clap_complete::generate(shell, &mut command, "perseus", &mut text);
    output::print(&String::from_utf8_lossy(&text))
}
