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
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{NoticeLevel, Snapshot};

/// How long quitting waits for room in a full command queue to deliver `Stop`.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Runs the dashboard until the user quits (q, Ctrl-C) or the process gets SIGTERM.
///
/// Options are validated before the terminal is touched, so a bad theme or key binding is a plain
/// error on a normal screen. On quit in a live run, `Command::Stop` is sent before returning.
pub async fn run(
    opts: TuiOptions,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    control: Control,
) -> Result<(), TuiError> {
    drive(opts, Source::Single(snapshots), control).await
}

/// As [`run`], for a multi-target run: the tenant table groups tenants by target, the header
/// shows the fleet line, and the panels show the selected tenant's target.
pub async fn run_fleet(
    opts: TuiOptions,
    view: watch::Receiver<Arc<FleetView>>,
    control: Control,
) -> Result<(), TuiError> {
    drive(opts, Source::Fleet(view), control).await
}

/// What the dashboard shows: one target's snapshots, or a fleet's views.
enum Source {
    Single(watch::Receiver<Arc<Snapshot>>),
    Fleet(watch::Receiver<Arc<FleetView>>),
}

/// The latest picture: the snapshot the app reads, the fleet (if any) and the snapshot the
/// panels draw (the selected tenant's target's).
struct Picture {
    app_snap: Arc<Snapshot>,
    fleet: Option<Arc<FleetView>>,
    panels: Arc<Snapshot>,
}

impl Source {
    async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match self {
            Source::Single(rx) => rx.changed().await,
            Source::Fleet(rx) => rx.changed().await,
        }
    }

    /// Takes the newest value (marking it seen) and reads it for the selection `app` holds.
    fn latest(&mut self, app: &App) -> Option<Picture> {
        match self {
            Source::Single(rx) => {
                let snap = rx.borrow_and_update().clone();
                Some(Picture {
                    app_snap: Arc::clone(&snap),
                    fleet: None,
                    panels: snap,
                })
            }
            Source::Fleet(rx) => picture_of(rx.borrow_and_update().clone(), app),
        }
    }
}

impl Picture {
    /// Re-reads the same view after the selection moved (it may have moved to another target).
    fn refocus(&mut self, app: &App) {
        if let Some(p) = self.fleet.clone().and_then(|f| picture_of(f, app)) {
            *self = p;
        }
    }
}

/// `None` for a fleet without targets, which has nothing to draw.
fn picture_of(fleet: Arc<FleetView>, app: &App) -> Option<Picture> {
    let focus = crate::tui::fleet::selected_target(&fleet, app.selected);
    let panels = Arc::clone(&fleet.targets.get(focus)?.snapshot);
    let app_snap = crate::tui::fleet::app_snapshot(&fleet, app.selected)?;
    Some(Picture {
        app_snap,
        fleet: Some(fleet),
        panels,
    })
}

async fn drive(opts: TuiOptions, mut source: Source, control: Control) -> Result<(), TuiError> {
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
    let Some(mut pic) = source.latest(&app) else {
        return Err(TuiError::NoTargets);
    };
    app.observe(&pic.app_snap);

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
                    let out = handle_event(&mut app, &event, &keymap, &pic, &guard)?;
                    if let Some(out) = out.filter(|_| !app.quit) {
                        app.deliver(out, &control, &pic.app_snap);
                    }
                    pic.refocus(&app);
                    dirty = true;
                }
                Some(Err(e)) => return Err(e.into()),
                // Input is gone (the terminal closed): nobody can drive or see the dashboard.
                None => break,
            },
            _ = render.tick() => {
                if dirty {
                    let theme = &themes[app.theme_index.min(themes.len() - 1)];
                    let view = View {
                        snap: &pic.panels,
                        fleet: pic.fleet.as_deref(),
                        app: &app,
                        theme,
                        keymap: &keymap,
                    };
                    guard.terminal.draw(|frame| screen::draw(frame, &view))?;
                    dirty = false;
                }
            }
            changed = source.changed(), if engine_open => match changed {
                Ok(()) => {
                    if let Some(p) = source.latest(&app) {
                        pic = p;
                    }
                    app.observe(&pic.app_snap);
                    dirty = true;
                }
                Err(_) => {
                    // The engine (or replay) is gone; keep showing its last picture until quit.
                    engine_open = false;
                    app.notice = Some(crate::vocab::snapshot::Notice {
                        at_s: pic.app_snap.elapsed_s,
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
    pic: &Picture,
    guard: &TerminalGuard,
) -> Result<Option<Outgoing>, TuiError> {
    let snap = &pic.app_snap;
    Ok(match event {
        Event::Key(key) => app.key(key, keymap, snap),
        Event::Mouse(mouse) => {
            let size = guard.terminal.size()?;
            let area = Rect::new(0, 0, size.width, size.height);
            let Some(fleet) = &pic.fleet else {
                return Ok(match ScreenLayout::new(area, snap.tenants.len()) {
                    Some(layout) => {
                        let rows = tenants::rows_area(layout.tenants);
                        let offset =
                            tenants::offset(app.selected_index(snap), usize::from(rows.height));
                        app.mouse(mouse, Some(rows), offset, snap)
                    }
                    None => None,
                });
            };
            let table = crate::tui::fleet::table_rows(fleet);
            match ScreenLayout::new(area, table.len()) {
                Some(layout) => {
                    // The app maps a click to the n-th tenant; a fleet's table has a header row
                    // per target, so a click is mapped to its row's tenant here.
                    let rows = tenants::rows_area(layout.tenants);
                    let selected = app.selected_tenant(snap).map(|t| t.id);
                    let at = table.iter().position(|r| {
                        crate::tui::fleet::row_tenant(fleet, *r)
                            .is_some_and(|id| Some(id) == selected)
                    });
                    let offset = tenants::offset(at, usize::from(rows.height));
                    app.mouse_in_fleet(mouse, rows, offset, fleet, &table, snap)
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
    let tx = match control {
        Control::Live(tx) | Control::Fleet { router: tx, .. } => tx,
        Control::Replay(_) => return,
    };
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(cmd)) = tx.try_send(Command::Stop)
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
