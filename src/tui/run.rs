//! The dashboard's event loop: input, a render clock and the snapshot channel, never blocking on
//! the engine.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ratatui::crossterm::event::{Event, EventStream};
use ratatui::layout::Rect;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::tui::app::{App, Outgoing};
use crate::tui::keymap::Keymap;
use crate::tui::screen::{self, ScreenLayout, View};
use crate::tui::terminal::TerminalGuard;
use crate::tui::{Control, TuiError, TuiOptions, tenants, theme};
use crate::vocab::command::Command;
use crate::vocab::snapshot::{NoticeLevel, Snapshot};

/// How long quitting waits for room in a full command queue to deliver `Stop`.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Runs the dashboard until the user quits (q, Ctrl-C) or the process gets SIGTERM.
///
/// Options are validated before the terminal is touched, so a bad theme or key binding is a plain
/// error on a normal screen. On quit in a live run, `Command::Stop` is sent before returning.
pub async fn run(
    opts: TuiOptions,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    control: Control,
) -> Result<(), TuiError> {
    if !(1..=120).contains(&opts.render_fps) {
        return Err(TuiError::Fps(opts.render_fps));
    }
    let keymap = Keymap::new(&opts.key_overrides)?;
    let themes = theme::load_all(&opts.theme_dirs, opts.no_color)?;
    let theme_index = if opts.no_color {
        0
    } else {
        theme::find(&themes, &opts.theme)?
    };
    let mut app = App::new(
        theme_index,
        themes.len(),
        matches!(control, Control::Replay(_)),
    );
    let mut snap = snapshots.borrow_and_update().clone();
    app.observe(&snap);

    let mut signals = Signals::new()?;
    let mut guard = TerminalGuard::enter()?;
    let mut events = EventStream::new();
    let mut render =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(opts.render_fps)));
    render.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let panic_at = test_panic_deadline();
    let (mut dirty, mut engine_open) = (true, true);

    loop {
        tokio::select! {
            biased;
            () = signals.recv() => {
                tracing::info!("terminated by signal; stopping the run");
                break;
            }
            event = events.next() => match event {
                Some(Ok(event)) => {
                    let out = handle_event(&mut app, &event, &keymap, &snap, &guard)?;
                    if let Some(out) = out.filter(|_| !app.quit) {
                        app.deliver(out, &control, &snap);
                    }
                    dirty = true;
                }
                Some(Err(e)) => return Err(e.into()),
                // Input is gone (the terminal closed): nobody can drive or see the dashboard.
                None => break,
            },
            _ = render.tick() => {
                if dirty {
                    let theme = &themes[app.theme_index.min(themes.len() - 1)];
                    let view = View { snap: &snap, app: &app, theme, keymap: &keymap };
                    guard.terminal.draw(|frame| screen::draw(frame, &view))?;
                    dirty = false;
                }
            }
            changed = snapshots.changed(), if engine_open => match changed {
                Ok(()) => {
                    snap = snapshots.borrow_and_update().clone();
                    app.observe(&snap);
                    dirty = true;
                }
                Err(_) => {
                    // The engine (or replay) is gone; keep showing its last picture until quit.
                    engine_open = false;
                    app.notice = Some(crate::vocab::snapshot::Notice {
                        at_s: snap.elapsed_s,
                        level: NoticeLevel::Warn,
                        text: "the engine has stopped publishing; q quits".to_string(),
                    });
                    dirty = true;
                }
            },
            () = sleep_until(panic_at), if panic_at.is_some() => {
                panic!("injected panic (PERSEUS_TEST_PANIC_AFTER_MS) to test terminal restore");
            }
        }
        if app.quit {
            break;
        }
    }
    stop(&control).await;
    drop(guard);
    Ok(())
}

fn handle_event(
    app: &mut App,
    event: &Event,
    keymap: &Keymap,
    snap: &Snapshot,
    guard: &TerminalGuard,
) -> Result<Option<Outgoing>, TuiError> {
    Ok(match event {
        Event::Key(key) => app.key(key, keymap, snap),
        Event::Mouse(mouse) => {
            let size = guard.terminal.size()?;
            let area = Rect::new(0, 0, size.width, size.height);
            match ScreenLayout::new(area, snap.tenants.len()) {
                Some(layout) => {
                    let rows = tenants::rows_area(layout.tenants);
                    let offset =
                        tenants::offset(app.selected_index(snap), usize::from(rows.height));
                    app.mouse(mouse, Some(rows), offset, snap)
                }
                None => None,
            }
        }
        _ => None,
    })
}

/// Asks a live engine to stop; waits briefly only when its queue is full, since this is the last
/// thing the dashboard does.
async fn stop(control: &Control) {
    if let Control::Live(tx) = control
        && let Err(tokio::sync::mpsc::error::TrySendError::Full(cmd)) = tx.try_send(Command::Stop)
        && tokio::time::timeout(STOP_GRACE, tx.send(cmd))
            .await
            .is_err()
    {
        tracing::warn!("engine queue stayed full; Stop not delivered");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// In debug builds, `PERSEUS_TEST_PANIC_AFTER_MS=N` makes the dashboard panic after N ms, so an
/// end-to-end test can check that a panic leaves the terminal usable. Release builds ignore it.
fn test_panic_deadline() -> Option<Instant> {
    #[cfg(debug_assertions)]
    {
        std::env::var("PERSEUS_TEST_PANIC_AFTER_MS")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|ms| Instant::now() + Duration::from_millis(ms))
    }
    #[cfg(not(debug_assertions))]
    {
        None
    }
}

/// SIGTERM. Ctrl-C needs no handler: raw mode delivers it as a key. Note that once tokio handles a
/// signal it keeps handling it for the life of the process, so after `run` returns SIGTERM no longer
/// kills the process by default; the caller should exit promptly.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            self.term.recv().await;
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<()>().await;
        }
    }
}
