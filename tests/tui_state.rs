//! The dashboard's state machine: each action changes the UI state and sends the right command
//! down a real channel, without drawing anything.

mod tui_fixture;

use std::collections::BTreeMap;
use std::sync::Arc;

use perseus::tui::Control;
use perseus::tui::app::{App, CHART_WINDOWS, MAX_RATE, Mode, RATE_STEPS};
use perseus::tui::keymap::{Action, Keymap};
use perseus::tui::screen::ScreenLayout;
use perseus::tui::tenants;
use perseus::vocab::command::{BatchingChange, Command, ReplayCommand};
use perseus::vocab::snapshot::{NoticeLevel, Snapshot};
use perseus::vocab::spec::{Arrival, DynamicBatching, Load, Sla, TenantSpec};
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;
use tokio::sync::mpsc::{self, Receiver, error::TryRecvError};

struct Rig {
    app: App,
    snap: Snapshot,
    control: Control,
    rx: Receiver<Command>,
    keymap: Keymap,
}

impl Rig {
    fn live() -> Rig {
        let (tx, rx) = mpsc::channel(16);
        Rig {
            app: App::new(0, 5, false),
            snap: tui_fixture::snapshot(3),
            control: Control::Live(tx),
            rx,
            keymap: Keymap::new(&BTreeMap::new()).unwrap(),
        }
    }

    /// Applies an action and delivers whatever it produced, as the run loop does.
    fn act(&mut self, action: Action) {
        if let Some(out) = self.app.action(action, &self.snap) {
            self.app.deliver(out, &self.control, &self.snap);
        }
    }

    fn press(&mut self, code: KeyCode) {
        self.press_with(code, KeyModifiers::NONE);
    }

    fn press_with(&mut self, code: KeyCode, modifiers: KeyModifiers) {
        if let Some(out) = self
            .app
            .key(&KeyEvent::new(code, modifiers), &self.keymap, &self.snap)
        {
            self.app.deliver(out, &self.control, &self.snap);
        }
    }

    fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            self.press(KeyCode::Char(c));
        }
    }

    fn sent(&mut self) -> Command {
        self.rx.try_recv().expect("a command was sent")
    }

    fn nothing_sent(&mut self) {
        assert_eq!(self.rx.try_recv(), Err(TryRecvError::Empty));
    }

    fn selected_id(&self) -> u32 {
        self.app.selected_tenant(&self.snap).unwrap().id
    }

    /// The engine applied the commands: a later snapshot shows the new load.
    fn engine_applies_rate(&mut self, id: u32, per_s: f64) {
        let mut next = self.snap.clone();
        next.seq += 1;
        let t = next.tenants.iter_mut().find(|t| t.id == id).unwrap();
        if let Load::Rate { per_s: r, .. } = &mut t.load {
            *r = per_s;
        }
        self.snap = next;
        self.app.observe(&self.snap);
    }
}

#[test]
fn selection_moves_and_clamps() {
    let mut r = Rig::live();
    assert_eq!(r.selected_id(), 10);
    r.act(Action::SelectUp);
    assert_eq!(r.selected_id(), 10);
    r.press(KeyCode::Down);
    r.press(KeyCode::Char('j'));
    r.press(KeyCode::Char('j'));
    assert_eq!(r.selected_id(), 12);
    r.press(KeyCode::Char('k'));
    assert_eq!(r.selected_id(), 11);
    r.nothing_sent();
}

#[test]
fn selection_follows_the_tenant_not_the_row_when_others_are_removed() {
    let mut r = Rig::live();
    r.act(Action::SelectDown);
    r.act(Action::SelectDown);
    assert_eq!(r.selected_id(), 12);
    r.snap.tenants.remove(0);
    assert_eq!(r.selected_id(), 12);
    r.snap.tenants.retain(|t| t.id != 12);
    assert_eq!(r.selected_id(), 11, "falls back to the first tenant");
}

#[test]
fn rate_steps_up_and_down_by_the_step_size() {
    let mut r = Rig::live();
    assert_eq!(r.app.step(), 10.0);
    r.act(Action::RateUp);
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 160.0
        }
    );
    // A second press before the engine's next snapshot builds on the first.
    r.press(KeyCode::Char('+'));
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 170.0
        }
    );
    r.engine_applies_rate(10, 170.0);
    r.act(Action::StepUp);
    r.act(Action::StepUp);
    r.act(Action::StepUp);
    assert_eq!(r.app.step(), RATE_STEPS[3]);
    r.press(KeyCode::Char('-'));
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 1.0
        },
        "floored at 1 req/s"
    );
    r.act(Action::RateDown);
    r.nothing_sent();
    r.press(KeyCode::Char('['));
    assert_eq!(r.app.step(), RATE_STEPS[2]);
    r.act(Action::StepDown);
    r.act(Action::StepDown);
    r.act(Action::StepDown);
    assert_eq!(r.app.step(), RATE_STEPS[0]);
}

#[test]
fn an_edit_the_engine_never_applies_stops_counting_after_a_few_ticks() {
    let mut r = Rig::live();
    r.act(Action::RateUp);
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 160.0
        }
    );
    // The engine refused it: snapshots keep showing 150 while time passes.
    for _ in 0..6 {
        r.snap.seq += 1;
        r.app.observe(&r.snap);
    }
    r.act(Action::RateUp);
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 160.0
        }
    );
}

#[test]
fn concurrency_tenants_step_by_one() {
    let mut r = Rig::live();
    r.app.selected = Some(12);
    r.act(Action::RateUp);
    assert_eq!(r.sent(), Command::SetConcurrency { tenant: 12, n: 9 });
    r.act(Action::RateDown);
    assert_eq!(r.sent(), Command::SetConcurrency { tenant: 12, n: 8 });
}

#[test]
fn typing_an_exact_rate() {
    let mut r = Rig::live();
    r.press(KeyCode::Enter);
    assert_eq!(
        r.app.mode,
        Mode::TypingRate {
            tenant: 10,
            buffer: String::new(),
            error: None
        }
    );
    r.type_text("2505");
    r.press(KeyCode::Backspace);
    r.type_text(".5");
    r.nothing_sent();
    r.press(KeyCode::Enter);
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 250.5
        }
    );
    assert_eq!(r.app.mode, Mode::Normal);
}

#[test]
fn invalid_typed_rates_show_an_error_and_send_nothing() {
    let mut r = Rig::live();
    for bad in ["", "0", "1.2.3", &format!("{}", MAX_RATE * 2.0)] {
        r.app.mode = Mode::TypingRate {
            tenant: 10,
            buffer: bad.to_string(),
            error: None,
        };
        r.press(KeyCode::Enter);
        match &r.app.mode {
            Mode::TypingRate { error: Some(e), .. } => assert!(!e.is_empty()),
            other => panic!("`{bad}` accepted: {other:?}"),
        }
        r.nothing_sent();
    }
    // Letters are not typed at all.
    r.app.mode = Mode::TypingRate {
        tenant: 10,
        buffer: String::new(),
        error: None,
    };
    r.type_text("ab");
    assert_eq!(
        r.app.mode,
        Mode::TypingRate {
            tenant: 10,
            buffer: String::new(),
            error: None
        }
    );
    r.press(KeyCode::Esc);
    assert_eq!(r.app.mode, Mode::Normal);
    r.nothing_sent();
}

#[test]
fn typed_concurrency_must_be_whole() {
    let mut r = Rig::live();
    r.app.selected = Some(12);
    r.act(Action::TypeRate);
    r.type_text("2.5");
    r.press(KeyCode::Enter);
    assert!(matches!(
        r.app.mode,
        Mode::TypingRate { error: Some(_), .. }
    ));
    r.app.mode = Mode::TypingRate {
        tenant: 12,
        buffer: "16".into(),
        error: None,
    };
    r.press(KeyCode::Enter);
    assert_eq!(r.sent(), Command::SetConcurrency { tenant: 12, n: 16 });
}

#[test]
fn pause_and_resume_one_and_all() {
    let mut r = Rig::live();
    r.press(KeyCode::Char(' '));
    assert_eq!(r.sent(), Command::Pause { tenant: Some(10) });
    r.act(Action::Pause);
    assert_eq!(
        r.sent(),
        Command::Resume { tenant: Some(10) },
        "the pending pause counts"
    );
    r.press_with(KeyCode::Char('P'), KeyModifiers::SHIFT);
    assert_eq!(r.sent(), Command::Pause { tenant: None });
    for t in &mut r.snap.tenants {
        t.paused = true;
    }
    r.snap.paused = true;
    r.app.observe(&r.snap);
    r.act(Action::PauseAll);
    assert_eq!(r.sent(), Command::Resume { tenant: None });
}

#[test]
fn adding_a_tenant_from_the_picker() {
    let mut r = Rig::live();
    r.press(KeyCode::Char('a'));
    assert_eq!(r.app.mode, Mode::Picker { index: 0 });
    r.press(KeyCode::Down);
    r.press(KeyCode::Char('j'));
    r.press(KeyCode::Char('k'));
    r.nothing_sent();
    r.press(KeyCode::Enter);
    let expected = TenantSpec {
        model: "mobilenet_v2".into(),
        load: Load::Rate {
            per_s: 10.0,
            arrival: Arrival::Poisson,
        },
        batch: 1,
        sla: Sla {
            latency_ms: 100.0,
            percentile: 95.0,
        },
        instances: None,
        dynamic_batching: None,
        data: Default::default(),
        max_in_flight: TenantSpec::DEFAULT_MAX_IN_FLIGHT,
        deadline: TenantSpec::DEFAULT_DEADLINE,
        inputs: Vec::new(),
    };
    assert_eq!(r.sent(), Command::AddTenant(Box::new(expected)));
    assert_eq!(r.app.mode, Mode::Normal);
}

#[test]
fn a_model_that_does_not_fit_is_still_asked_for_with_a_warning() {
    let mut r = Rig::live();
    r.act(Action::AddTenant);
    for _ in 0..3 {
        r.press(KeyCode::Down);
    }
    r.press(KeyCode::Enter);
    assert!(matches!(r.sent(), Command::AddTenant(spec) if spec.model == "vgg16"));
    assert_eq!(
        r.app.notice.as_ref().map(|n| n.level),
        Some(NoticeLevel::Warn)
    );
}

#[test]
fn picker_cancels_and_empty_repository_is_a_notice() {
    let mut r = Rig::live();
    r.act(Action::AddTenant);
    r.press(KeyCode::Esc);
    assert_eq!(r.app.mode, Mode::Normal);
    r.snap.repository.clear();
    r.act(Action::AddTenant);
    assert_eq!(r.app.mode, Mode::Normal);
    assert!(r.app.notice.is_some());
    r.nothing_sent();
}

#[test]
fn removing_asks_first() {
    let mut r = Rig::live();
    r.act(Action::SelectDown);
    r.press(KeyCode::Char('d'));
    assert_eq!(
        r.app.mode,
        Mode::ConfirmRemove {
            tenant: 11,
            model: "mobilenet_v2".into()
        }
    );
    r.press(KeyCode::Char('n'));
    assert_eq!(r.app.mode, Mode::Normal);
    r.nothing_sent();
    r.act(Action::RemoveTenant);
    r.press(KeyCode::Char('x'));
    r.nothing_sent();
    r.press(KeyCode::Char('y'));
    assert_eq!(r.sent(), Command::RemoveTenant { tenant: 11 });
}

#[test]
fn instances_and_batching_reconfigure_the_model() {
    let mut r = Rig::live();
    r.press(KeyCode::Char('i'));
    assert_eq!(
        r.sent(),
        Command::Reconfigure {
            tenant: 10,
            instances: Some(2),
            dynamic_batching: BatchingChange::Keep
        }
    );
    r.press_with(KeyCode::Char('I'), KeyModifiers::SHIFT);
    r.nothing_sent(); // already at 1 instance
    r.press(KeyCode::Char('b'));
    assert_eq!(
        r.sent(),
        Command::Reconfigure {
            tenant: 10,
            instances: None,
            dynamic_batching: BatchingChange::Off
        }
    );
    r.act(Action::SelectDown);
    r.act(Action::ToggleBatching);
    assert_eq!(
        r.sent(),
        Command::Reconfigure {
            tenant: 11,
            instances: None,
            dynamic_batching: BatchingChange::Set(DynamicBatching::default())
        }
    );
    r.act(Action::InstancesDown);
    assert_eq!(
        r.sent(),
        Command::Reconfigure {
            tenant: 11,
            instances: Some(1),
            dynamic_batching: BatchingChange::Keep
        }
    );
}

#[test]
fn without_model_control_reconfiguring_is_refused_locally() {
    let mut r = Rig::live();
    r.snap.target.model_control = false;
    r.act(Action::InstancesUp);
    r.act(Action::ToggleBatching);
    r.nothing_sent();
    assert!(
        r.app
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("model control"))
    );
}

#[test]
fn window_theme_chart_help_cycle() {
    let mut r = Rig::live();
    for &w in CHART_WINDOWS
        .iter()
        .skip(1)
        .chain(CHART_WINDOWS.iter().take(1))
    {
        r.press(KeyCode::Char('w'));
        assert_eq!(r.app.chart_window_s(), w);
    }
    for expected in [1, 2, 3, 4, 0] {
        r.press(KeyCode::Char('t'));
        assert_eq!(r.app.theme_index, expected);
    }
    let all = r.app.chart_all;
    r.press(KeyCode::Char('c'));
    assert_eq!(r.app.chart_all, !all);
    r.press(KeyCode::Char('?'));
    assert_eq!(r.app.mode, Mode::Help);
    r.press(KeyCode::Char('z'));
    assert_eq!(r.app.mode, Mode::Normal, "any key closes help");
    r.nothing_sent();
}

#[test]
fn save_and_record() {
    let mut r = Rig::live();
    r.press(KeyCode::Char('s'));
    assert_eq!(r.sent(), Command::SaveSession { path: None });
    r.press(KeyCode::Char('r'));
    assert_eq!(r.sent(), Command::SetRecording(true));
    r.snap.recording = Some("rec.jsonl".into());
    r.act(Action::ToggleRecording);
    assert_eq!(r.sent(), Command::SetRecording(false));
}

#[test]
fn quit_sends_stop_from_any_mode_with_ctrl_c() {
    let mut r = Rig::live();
    r.press(KeyCode::Char('q'));
    assert!(r.app.quit);
    assert_eq!(r.sent(), Command::Stop);

    let mut r = Rig::live();
    r.act(Action::TypeRate);
    r.press_with(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(r.app.quit);
    assert_eq!(r.sent(), Command::Stop);
}

#[test]
fn a_full_queue_becomes_a_notice_not_a_wait() {
    let (tx, mut rx) = mpsc::channel(1);
    let mut r = Rig::live();
    r.control = Control::Live(tx);
    r.act(Action::SaveSession);
    r.act(Action::RateUp);
    assert_eq!(rx.try_recv(), Ok(Command::SaveSession { path: None }));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    let notice = r.app.notice.clone().expect("a notice");
    assert_eq!(notice.level, NoticeLevel::Warn);
    assert!(notice.text.contains("busy"), "{}", notice.text);
    drop(rx);
    r.act(Action::SaveSession);
    assert_eq!(r.app.notice.map(|n| n.level), Some(NoticeLevel::Error));
}

#[test]
fn replay_keys_control_playback_and_editing_is_disabled() {
    let (tx, mut rx) = mpsc::channel(16);
    let mut app = App::new(0, 5, true);
    let control = Control::Replay(tx);
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let snap = Arc::new(tui_fixture::snapshot(3));
    let press = |app: &mut App, code: KeyCode| {
        if let Some(out) = app.key(&KeyEvent::new(code, KeyModifiers::NONE), &keymap, &snap) {
            app.deliver(out, &control, &snap);
        }
    };
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Right);
    press(&mut app, KeyCode::Char('x'));
    assert_eq!(rx.try_recv(), Ok(ReplayCommand::TogglePause));
    assert_eq!(rx.try_recv(), Ok(ReplayCommand::Seek(-10.0)));
    assert_eq!(rx.try_recv(), Ok(ReplayCommand::Seek(10.0)));
    assert_eq!(rx.try_recv(), Ok(ReplayCommand::CycleSpeed));
    for code in ['+', 'a', 'd', 'i', 'b', 's', 'r'] {
        press(&mut app, KeyCode::Char(code));
        assert_eq!(app.mode, Mode::Normal);
    }
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(
        app.notice
            .as_ref()
            .is_some_and(|n| n.text.contains("replay"))
    );
    // Selection still works, and quitting a replay sends nothing.
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(11));
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn seeking_in_a_live_run_is_a_notice() {
    let mut r = Rig::live();
    r.press(KeyCode::Left);
    r.nothing_sent();
    assert!(r.app.notice.is_some());
}

#[test]
fn mouse_click_selects_the_row_and_wheel_changes_the_rate() {
    let mut r = Rig::live();
    let layout = ScreenLayout::new(Rect::new(0, 0, 160, 48), r.snap.tenants.len()).unwrap();
    let rows = tenants::rows_area(layout.tenants);
    let click = |row: u16| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column: 20,
        row,
        modifiers: KeyModifiers::NONE,
    };
    let out = r.app.mouse(&click(rows.y + 2), Some(rows), 0, &r.snap);
    assert_eq!(out, None);
    assert_eq!(r.selected_id(), 12);
    // A click below the last tenant, or in the header row, changes nothing.
    r.app.mouse(&click(rows.y + 5), Some(rows), 0, &r.snap);
    r.app.mouse(&click(rows.y - 1), Some(rows), 0, &r.snap);
    assert_eq!(r.selected_id(), 12);
    r.app.selected = Some(10);
    let wheel = MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 5,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    if let Some(out) = r.app.mouse(&wheel, Some(rows), 0, &r.snap) {
        r.app.deliver(out, &r.control, &r.snap);
    }
    assert_eq!(
        r.sent(),
        Command::SetRate {
            tenant: 10,
            per_s: 160.0
        }
    );
}

#[test]
fn user_key_overrides_take_effect() {
    let overrides = BTreeMap::from([("cycle_theme".to_string(), "T".to_string())]);
    let mut r = Rig::live();
    r.keymap = Keymap::new(&overrides).unwrap();
    r.press(KeyCode::Char('t'));
    assert_eq!(r.app.theme_index, 0);
    r.press_with(KeyCode::Char('T'), KeyModifiers::SHIFT);
    assert_eq!(r.app.theme_index, 1);
}

/// The staging a what-if command carries.
fn staged(c: Command) -> perseus::vocab::command::StagedSetup {
    match c {
        Command::WhatIf(Some(s)) => s,
        other => panic!("expected a staged what-if, got {other:?}"),
    }
}

fn rate_of(s: &perseus::vocab::command::StagedSetup, id: u32) -> f64 {
    match s
        .tenants
        .iter()
        .find(|(t, _)| *t == Some(id))
        .map(|(_, spec)| &spec.load)
    {
        Some(Load::Rate { per_s, .. }) => *per_s,
        other => panic!("tenant {id}: {other:?}"),
    }
}

#[test]
fn what_if_stages_edits_without_applying_them_then_applies_at_once() {
    let mut r = Rig::live();
    r.snap = tui_fixture::snapshot(2);
    let live_rate = |r: &Rig| match r.snap.tenants[0].load {
        Load::Rate { per_s, .. } => per_s,
        _ => unreachable!(),
    };
    let before = live_rate(&r);
    r.press_with(KeyCode::Char('W'), KeyModifiers::SHIFT);
    let first = staged(r.sent());
    assert_eq!(first.tenants.len(), 2);
    assert_eq!(rate_of(&first, 10), before);
    assert!(r.app.staged.is_some());
    // A rate step changes the staging, not the run: no SetRate goes out.
    r.act(Action::RateUp);
    let second = staged(r.sent());
    assert!(second.stage > first.stage);
    assert_eq!(rate_of(&second, 10), before + r.app.step());
    r.nothing_sent();
    // The next step builds on the staged rate, and the table's tenant shows it.
    r.act(Action::RateUp);
    let third = staged(r.sent());
    assert_eq!(rate_of(&third, 10), before + 2.0 * r.app.step());
    assert_eq!(
        r.app.effective_load(&r.snap.tenants[0]),
        third.tenants[0].1.load
    );
    // Instances and a removal are staged too.
    r.act(Action::InstancesUp);
    let fourth = staged(r.sent());
    assert_eq!(fourth.tenants[0].1.instances, Some(2));
    r.act(Action::SelectDown);
    r.act(Action::RemoveTenant);
    r.press(KeyCode::Char('y'));
    let fifth = staged(r.sent());
    assert_eq!(fifth.tenants.len(), 1);
    assert_eq!(live_rate(&r), before, "the live setup is untouched");
    // Apply: one command for the whole staging, and the staging closes.
    r.press_with(KeyCode::Char('A'), KeyModifiers::SHIFT);
    assert_eq!(r.sent(), Command::ApplyStaged { stage: fifth.stage });
    assert!(r.app.staged.is_none());
    // Outside a staging the keys act on the run again.
    r.act(Action::RateUp);
    assert!(matches!(r.sent(), Command::SetRate { .. }));
}

#[test]
fn what_if_discards_on_the_same_key() {
    let mut r = Rig::live();
    r.snap = tui_fixture::snapshot(2);
    r.act(Action::StageWhatIf);
    let _ = staged(r.sent());
    r.act(Action::RateDown);
    let _ = staged(r.sent());
    r.act(Action::StageWhatIf);
    assert_eq!(r.sent(), Command::WhatIf(None));
    assert!(r.app.staged.is_none());
    // Nothing staged: apply says so and sends nothing.
    r.act(Action::ApplyStaged);
    r.nothing_sent();
    assert!(
        r.app
            .notice
            .as_ref()
            .is_some_and(|n| n.text.contains("nothing staged"))
    );
}

/// A fleet's dashboard as the run loop drives it: the app reads the fleet's app snapshot (taken
/// afresh after each action, as the selection may have moved to another target), and its
/// commands go through the fleet's real router to one channel per target.
#[tokio::test]
async fn in_a_fleet_selection_crosses_targets_and_edits_reach_the_tenants_own_target() {
    use perseus::tui::fleet::app_snapshot;
    let fleet = tui_fixture::fleet();
    let (t4_tx, mut t4) = mpsc::channel(16);
    let (l4_tx, mut l4) = mpsc::channel(16);
    let engines = vec![t4_tx, l4_tx];
    let control = Control::Fleet {
        router: perseus::fleet::router(engines.clone()),
        engines,
    };
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let mut app = App::new(0, 5, false);
    let press = |app: &mut App, code: KeyCode| {
        let snap = app_snapshot(&fleet, app.selected).unwrap();
        if let Some(out) = app.key(&KeyEvent::new(code, KeyModifiers::NONE), &keymap, &snap) {
            app.deliver(out, &control, &snap);
        }
    };
    let t4_ids: Vec<u32> = fleet.targets[0]
        .snapshot
        .tenants
        .iter()
        .map(|t| t.id)
        .collect();
    let l4_id = fleet.targets[1].snapshot.tenants[0].id;
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(t4_ids[1]));
    press(&mut app, KeyCode::Down);
    assert_eq!(
        app.selected,
        Some(l4_id),
        "the selection moves on into the next target"
    );
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected, Some(l4_id), "and stops at the last tenant");

    // The L4's tenant runs closed-loop at c=8: `+` raises it there, and only there.
    press(&mut app, KeyCode::Char('+'));
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), l4.recv()).await;
    assert_eq!(
        got.ok().flatten(),
        Some(Command::SetConcurrency {
            tenant: l4_id,
            n: 9
        })
    );
    // A tenant added with the L4's tenant selected goes to the L4.
    press(&mut app, KeyCode::Char('a'));
    press(&mut app, KeyCode::Enter);
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), l4.recv()).await;
    assert!(matches!(got.ok().flatten(), Some(Command::AddTenant(_))));
    // Back up on the T4, a rate change goes to the T4.
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Char('+'));
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), t4.recv()).await;
    assert!(
        matches!(got.ok().flatten(), Some(Command::SetRate { tenant, .. }) if tenant == t4_ids[1])
    );
    assert!(matches!(t4.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(l4.try_recv(), Err(TryRecvError::Empty)));
}

#[test]
fn saving_a_fleet_from_the_dashboard_is_refused_with_a_notice() {
    let fleet = tui_fixture::fleet();
    let (router, mut rx) = mpsc::channel(16);
    let control = Control::Fleet {
        router,
        engines: Vec::new(),
    };
    let mut app = App::new(0, 5, false);
    let snap = perseus::tui::fleet::app_snapshot(&fleet, None).unwrap();
    let out = app.action(Action::SaveSession, &snap).unwrap();
    app.deliver(out, &control, &snap);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(app.notice.unwrap().text.contains("not supported"));
}
