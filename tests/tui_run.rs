//! The dashboard's entry point: options are checked before the terminal is touched, and (by hand,
//! in a real terminal) the loop runs, sends commands and restores the terminal.

mod tui_fixture;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use perseus::tui::{Control, TuiError, TuiOptions, run};
use perseus::vocab::command::Command;
use tokio::sync::{mpsc, watch};

async fn run_with(opts: TuiOptions) -> Result<(), TuiError> {
    let (_tx, rx) = watch::channel(Arc::new(tui_fixture::snapshot(3)));
    let (ctx, _crx) = mpsc::channel(8);
    run(opts, rx, Control::Live(ctx)).await
}

#[tokio::test]
async fn bad_options_fail_before_the_terminal_is_touched() {
    let unknown_theme = TuiOptions {
        theme: "solarized-ish".into(),
        ..TuiOptions::default()
    };
    let err = run_with(unknown_theme).await.unwrap_err();
    assert!(matches!(err, TuiError::Theme(_)), "{err}");
    assert!(
        err.to_string().contains("colorblind"),
        "lists the themes: {err}"
    );

    let duplicate = TuiOptions {
        key_overrides: BTreeMap::from([("save_session".to_string(), "q".to_string())]),
        ..TuiOptions::default()
    };
    let err = run_with(duplicate).await.unwrap_err();
    assert!(matches!(err, TuiError::Keymap(_)), "{err}");
    assert!(
        err.to_string().contains("save_session") && err.to_string().contains("quit"),
        "{err}"
    );

    let zero_fps = TuiOptions {
        render_fps: 0,
        ..TuiOptions::default()
    };
    assert!(matches!(run_with(zero_fps).await, Err(TuiError::Fps(0))));
}

/// Drives the real loop in whatever terminal runs it, for checking by hand or from a
/// pseudo-terminal: `PERSEUS_TUI_MANUAL=commands.txt cargo test --test tui_run -- --ignored`.
/// Snapshots advance every 250 ms; the commands received are written to the named file.
#[tokio::test]
#[ignore = "needs a terminal; run by hand"]
async fn interactive() {
    let Ok(log) = std::env::var("PERSEUS_TUI_MANUAL") else {
        return;
    };
    let mut snap = tui_fixture::snapshot(3);
    let (tx, rx) = watch::channel(Arc::new(snap.clone()));
    let (ctx, mut crx) = mpsc::channel(8);
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            snap.seq += 1;
            snap.elapsed_s += 0.25;
            if tx.send(Arc::new(snap.clone())).is_err() {
                break;
            }
        }
    });
    let result = run(TuiOptions::default(), rx, Control::Live(ctx)).await;
    ticker.abort();
    let mut received = Vec::<Command>::new();
    while let Ok(c) = crx.try_recv() {
        received.push(c);
    }
    std::fs::write(&log, format!("{result:?}\n{received:?}\n")).unwrap();
}
