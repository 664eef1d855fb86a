//! UI state and what each action does to it, kept apart from drawing so it can be tested by feeding
//! actions and reading the commands that come out.
//!
//! The app never waits on the engine: an action yields at most one [`Outgoing`] message, which
//! [`App::deliver`] hands over with `try_send`; a full queue becomes a notice on screen.

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc::error::TrySendError;

use crate::tui::Control;
use crate::tui::keymap::{Action, Keymap, Scope, entry_for};
use crate::vocab::command::{Command, ReplayCommand, StagedSetup};
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{Notice, NoticeLevel, Snapshot, TenantId, TenantView};
use crate::vocab::spec::{Load, TenantSpec};

mod edit;
mod input;
mod whatif;

pub use input::default_tenant;

/// Rate steps cycled by `[` and `]`, req/s.
pub const RATE_STEPS: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
/// Chart windows cycled by `w`, seconds.
pub const CHART_WINDOWS: [f64; 3] = [10.0, 60.0, 600.0];
/// Largest rate the dashboard will ask for; beyond it a typo is likelier than intent.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Concurrency is bounded like a tenant's in-flight limit.
pub const MAX_CONCURRENCY: u32 = TenantSpec::DEFAULT_MAX_IN_FLIGHT;
/// Instances per model the dashboard will ask for: a held key should not ask a server for hundreds.
pub const MAX_INSTANCES: u32 = 64;
/// How far replay seeks per key press, seconds.
pub const SEEK_S: f64 = 10.0;
/// Snapshots to wait for an edit to show before trusting the snapshot over what was sent.
const PENDING_TICKS: u64 = 4;

/// A message for whoever drives the snapshots.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Live(Command),
    Replay(ReplayCommand),
}

/// What the keyboard is doing right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing an exact rate (or concurrency) for a tenant.
    TypingRate {
        tenant: TenantId,
        buffer: String,
        error: Option<String>,
    },
    /// Choosing a model to add; `index` into `snapshot.repository`.
    Picker {
        index: usize,
    },
    ConfirmRemove {
        tenant: TenantId,
        model: String,
    },
    Help,
}

/// An edit sent but not yet visible in a snapshot, so repeated key presses build on it instead of on
/// the stale figure (the engine applies commands once per tick).
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    load: Option<Load>,
    paused: Option<bool>,
    sent_at_seq: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Selected tenant by id, which survives other tenants being removed.
    pub selected: Option<TenantId>,
    pub step_index: usize,
    pub mode: Mode,
    pub window_index: usize,
    /// Latency chart shows every tenant instead of the selected one.
    pub chart_all: bool,
    pub theme_index: usize,
    pub theme_count: usize,
    /// Snapshots come from a recording: editing is off, space/←/→ control playback.
    pub replay: bool,
    /// The latest message from the dashboard itself (refusals, a full queue, bad input).
    pub notice: Option<Notice>,
    pub quit: bool,
    pending: BTreeMap<TenantId, Pending>,
    /// The what-if being staged, when one is open: edits change it instead of the run.
    pub staged: Option<StagedSetup>,
    /// Counts stagings and their edits, so a prediction can be matched to the staging it is for.
    stage_counter: u64,
}

impl App {
    pub fn new(theme_index: usize, theme_count: usize, replay: bool) -> App {
        App {
            selected: None,
            step_index: 1,
            mode: Mode::Normal,
            window_index: 0,
            chart_all: true,
            theme_index,
            theme_count: theme_count.max(1),
            replay,
            notice: None,
            quit: false,
            pending: BTreeMap::new(),
            staged: None,
            stage_counter: 0,
        }
    }

    pub fn step(&self) -> f64 {
        RATE_STEPS[self.step_index.min(RATE_STEPS.len() - 1)]
    }

    pub fn chart_window_s(&self) -> f64 {
        CHART_WINDOWS[self.window_index.min(CHART_WINDOWS.len() - 1)]
    }

    /// Index of the selected tenant in the snapshot, falling back to the first when the selected
    /// one is gone (or none was chosen yet).
    pub fn selected_index(&self, snap: &Snapshot) -> Option<usize> {
        if snap.tenants.is_empty() {
            return None;
        }
        Some(
            self.selected
                .and_then(|id| snap.tenants.iter().position(|t| t.id == id))
                .unwrap_or(0),
        )
    }

    pub fn selected_tenant<'s>(&self, snap: &'s Snapshot) -> Option<&'s TenantView> {
        self.selected_index(snap).map(|i| &snap.tenants[i])
    }

    /// Forgets pending edits the snapshot now reflects, or that have had time to show and did not
    /// (the engine refused them; its notice says why).
    pub fn observe(&mut self, snap: &Snapshot) {
        self.pending.retain(|id, p| {
            let Some(t) = snap.tenants.iter().find(|t| t.id == *id) else {
                return false;
            };
            let shown = p.load.as_ref().is_none_or(|l| same_load(l, &t.load))
                && p.paused.is_none_or(|x| x == t.paused);
            !shown && snap.seq <= p.sent_at_seq + PENDING_TICKS
        });
        if let Mode::Picker { index } = &mut self.mode {
            *index = (*index).min(snap.repository.len().saturating_sub(1));
        }
    }

    /// The tenant's load as the user last set it: staged, else a pending edit, else the snapshot.
    pub fn effective_load(&self, t: &TenantView) -> Load {
        if let Some(spec) = self.staged_spec(t) {
            return spec.load.clone();
        }
        self.pending
            .get(&t.id)
            .and_then(|p| p.load.clone())
            .unwrap_or_else(|| t.load.clone())
    }

    fn effective_paused(&self, t: &TenantView) -> bool {
        self.pending
            .get(&t.id)
            .and_then(|p| p.paused)
            .unwrap_or(t.paused)
    }

    fn remember(
        &mut self,
        snap: &Snapshot,
        id: TenantId,
        load: Option<Load>,
        paused: Option<bool>,
    ) {
        let p = self.pending.entry(id).or_insert(Pending {
            load: None,
            paused: None,
            sent_at_seq: snap.seq,
        });
        p.sent_at_seq = snap.seq;
        if load.is_some() {
            p.load = load;
        }
        if paused.is_some() {
            p.paused = paused;
        }
    }

    fn say(&mut self, snap: &Snapshot, level: NoticeLevel, text: impl Into<String>) {
        self.notice = Some(Notice {
            at_s: snap.elapsed_s,
            level,
            text: text.into(),
        });
    }

    /// A key press: the open dialog gets it first, then the keymap.
    pub fn key(&mut self, event: &KeyEvent, keymap: &Keymap, snap: &Snapshot) -> Option<Outgoing> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl_c =
            event.code == KeyCode::Char('c') && event.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            // Ctrl-C quits from anywhere, whatever the keymap says, so the user is never trapped.
            return self.action(Action::Quit, snap);
        }
        let out = match self.mode.clone() {
            Mode::Normal => keymap.action_for(event).and_then(|a| self.action(a, snap)),
            Mode::Help => {
                self.mode = Mode::Normal;
                None
            }
            Mode::TypingRate { tenant, buffer, .. } => self.typing(event, tenant, buffer, snap),
            Mode::Picker { index } => self.picking(event, index, snap),
            Mode::ConfirmRemove { tenant, .. } => match event.code {
                KeyCode::Char('y' | 'Y') => {
                    self.mode = Mode::Normal;
                    Some(Outgoing::Live(Command::RemoveTenant { tenant }))
                }
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    None
                }
                _ => None,
            },
        };
        self.divert(out)
    }

    /// What an action does. Returns the message to send, if any.
    pub fn action(&mut self, action: Action, snap: &Snapshot) -> Option<Outgoing> {
        let out = self.act(action, snap);
        self.divert(out)
    }

    fn act(&mut self, action: Action, snap: &Snapshot) -> Option<Outgoing> {
        let scope = entry_for(action).scope;
        if self.replay && scope == Scope::Live {
            self.say(snap, NoticeLevel::Info, "editing is disabled in replay");
            return None;
        }
        if !self.replay && scope == Scope::Replay {
            self.say(
                snap,
                NoticeLevel::Info,
                "seeking and speed apply only to a replay",
            );
            return None;
        }
        match action {
            Action::SelectUp => self.select_by(snap, -1),
            Action::SelectDown => self.select_by(snap, 1),
            Action::RateUp => self.nudge_load(snap, true),
            Action::RateDown => self.nudge_load(snap, false),
            Action::StepDown => {
                self.step_index = self.step_index.saturating_sub(1);
                None
            }
            Action::StepUp => {
                self.step_index = (self.step_index + 1).min(RATE_STEPS.len() - 1);
                None
            }
            Action::TypeRate => self.open_rate_prompt(snap),
            Action::Pause if self.replay => Some(Outgoing::Replay(ReplayCommand::TogglePause)),
            Action::Pause => self.toggle_pause(snap),
            Action::PauseAll => self.toggle_pause_all(snap),
            Action::AddTenant => self.open_picker(snap),
            Action::RemoveTenant => self.confirm_remove(snap),
            Action::InstancesUp => self.step_instances(snap, true),
            Action::InstancesDown => self.step_instances(snap, false),
            Action::ToggleBatching => self.toggle_batching(snap),
            Action::StageWhatIf => self.toggle_staging(snap),
            Action::ApplyStaged => self.apply_staging(snap),
            Action::CycleWindow => {
                self.window_index = (self.window_index + 1) % CHART_WINDOWS.len();
                None
            }
            Action::ChartAll => {
                self.chart_all = !self.chart_all;
                None
            }
            Action::CycleTheme => {
                self.theme_index = (self.theme_index + 1) % self.theme_count;
                None
            }
            Action::SaveSession => Some(Outgoing::Live(Command::SaveSession { path: None })),
            Action::ToggleRecording => Some(Outgoing::Live(Command::SetRecording(
                snap.recording.is_none(),
            ))),
            Action::SeekBack => Some(Outgoing::Replay(ReplayCommand::Seek(-SEEK_S))),
            Action::SeekForward => Some(Outgoing::Replay(ReplayCommand::Seek(SEEK_S))),
            Action::CycleSpeed => Some(Outgoing::Replay(ReplayCommand::CycleSpeed)),
            Action::Help => {
                self.mode = if self.mode == Mode::Help {
                    Mode::Normal
                } else {
                    Mode::Help
                };
                None
            }
            Action::Quit => {
                self.quit = true;
                (!self.replay).then_some(Outgoing::Live(Command::Stop))
            }
        }
    }

    /// Moves the selection `by` rows, stopping at either end of the table.
    fn select_by(&mut self, snap: &Snapshot, by: isize) -> Option<Outgoing> {
        let i = self.selected_index(snap)?;
        let j = i.saturating_add_signed(by).min(snap.tenants.len() - 1);
        self.selected = Some(snap.tenants[j].id);
        None
    }

    /// Hands a message to the engine or replay without waiting; a full or closed channel becomes a
    /// notice instead.
    pub fn deliver(&mut self, out: Outgoing, control: &Control, snap: &Snapshot) {
        let result = match (out, control) {
            (Outgoing::Live(c), Control::Live(tx)) => tx
                .try_send(c)
                .map_err(|e| matches!(e, TrySendError::Full(_))),
            (Outgoing::Live(Command::SaveSession { .. }), Control::Fleet { .. }) => {
                // Each engine saves its own target; one file for the fleet needs them gathered.
                self.say(
                    snap,
                    NoticeLevel::Info,
                    "saving a multi-target session from the dashboard is not supported yet",
                );
                Ok(())
            }
            (Outgoing::Live(c), Control::Fleet { router, engines }) => {
                let target = self
                    .selected_tenant(snap)
                    .map_or(0, |t| FleetView::owner(t.id));
                let tx = match &c {
                    Command::AddTenant(_) | Command::ApplyStaged { .. } => {
                        engines.get(target).unwrap_or(router)
                    }
                    _ => router,
                };
                tx.try_send(c)
                    .map_err(|e| matches!(e, TrySendError::Full(_)))
            }
            (Outgoing::Replay(c), Control::Replay(tx)) => tx
                .try_send(c)
                .map_err(|e| matches!(e, TrySendError::Full(_))),
            // The app's replay flag comes from the control, so these cannot meet; drop quietly.
            _ => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(true) => self.say(
                snap,
                NoticeLevel::Warn,
                "engine busy: that change was not sent, try again",
            ),
            Err(false) => self.say(
                snap,
                NoticeLevel::Error,
                "the engine has stopped; changes can no longer be sent",
            ),
        }
    }
}

fn same_load(a: &Load, b: &Load) -> bool {
    match (a, b) {
        (Load::Rate { per_s: x, .. }, Load::Rate { per_s: y, .. }) => (x - y).abs() < 1e-9,
        (Load::Concurrency(x), Load::Concurrency(y)) => x == y,
        _ => false,
    }
}
