//! `perseus completions SHELL`: every shell's script and the man page name every subcommand.

#[path = "support/cli.rs"]
mod cli;
use cli::{command, text, tmp};

const SUBCOMMANDS: [&str; 8] = [
    "tui",
    "run",
    "emulate",
    "probe",
    "replay",
    "export",
    "catalog",
    "completions",
];

#[test]
fn completions_and_the_man_page_name_every_subcommand() {
    let dir = tmp();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell", "man"] {
        // A broken config must not stop completions from being installed.
        let out = command(&["completions", shell], dir.path())
            .env("PERSEUS_CONFIG", dir.path().join("missing.toml"))
            .output()
            .expect("perseus runs");
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in SUBCOMMANDS {
            assert!(
                script.contains(sub),
                "{shell} does not name {sub}:\n{script}"
            );
        }
        if shell == "man" {
            assert!(script.contains(".TH perseus"), "{script}");
        } else {
            assert!(script.contains("json"), "{shell}: the flags too");
        }
    }
    let out = command(&["completions", "tcsh"], dir.path())
        .output()
        .expect("perseus runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
