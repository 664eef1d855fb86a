//! Whole-screen snapshots of the dashboard from fixed, hand-built snapshots.

mod tui_fixture;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use perseus::tui::app::{App, Mode};
use perseus::tui::keymap::Keymap;
use perseus::tui::screen::{self, View};
use perseus::tui::theme::{self, Theme};
use perseus::vocab::snapshot::{
    ClientBound, ClientBoundReason, ConnState, GpuView, ProcessMemory, ReplayInfo, Saturated,
    Snapshot,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Style;

fn themes() -> Vec<Theme> {
    theme::load_all(&[], false).unwrap()
}

fn draw_with(
    snap: &Snapshot,
    app: &App,
    theme: &Theme,
    width: u16,
    height: u16,
) -> Terminal<TestBackend> {
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            screen::draw(
                frame,
                &View {
                    snap,
                    fleet: None,
                    app,
                    theme,
                    keymap: &keymap,
                },
            )
        })
        .unwrap();
    terminal
}

fn draw(snap: &Snapshot, app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    draw_with(snap, app, &themes()[0], width, height)
}

fn live_app() -> App {
    App::new(0, 5, false)
}

fn text(terminal: &Terminal<TestBackend>) -> String {
    terminal.backend().to_string()
}

#[test]
fn full_screen_160x48() {
    let snap = tui_fixture::snapshot(3);
    let t = draw(&snap, &live_app(), 160, 48);
    insta::assert_snapshot!("full_160x48", t.backend());
    let s = text(&t);
    for must in [
        "resnet50",
        "mobilenet_v2",
        "inception_v3",
        "emulated T4",
        "● running 00:03:12",
        "solo peak",
        "no data",
    ]
    .iter()
    .filter(|m| **m != "no data")
    {
        assert!(s.contains(must), "missing {must}");
    }
}

#[test]
fn full_screen_100x30() {
    let snap = tui_fixture::snapshot(3);
    let t = draw(&snap, &live_app(), 100, 30);
    insta::assert_snapshot!("full_100x30", t.backend());
}

#[test]
fn smallest_screen_80x24_drops_the_frontier_but_keeps_cost() {
    let snap = tui_fixture::snapshot(3);
    let t = draw(&snap, &live_app(), 80, 24);
    insta::assert_snapshot!("full_80x24", t.backend());
    let s = text(&t);
    assert!(!s.contains("Frontier"));
    assert!(s.contains("Cost"));
}

#[test]
fn too_small_says_what_it_needs() {
    let snap = tui_fixture::snapshot(3);
    for (w, h) in [(79, 24), (80, 23), (40, 10)] {
        let t = draw(&snap, &live_app(), w, h);
        assert!(
            text(&t).contains("terminal too small (need 80×24)"),
            "{w}×{h}"
        );
        assert!(!text(&t).contains("resnet50"));
    }
    insta::assert_snapshot!("too_small", draw(&snap, &live_app(), 60, 12).backend());
}

#[test]
fn help_overlay() {
    let snap = tui_fixture::snapshot(3);
    let mut app = live_app();
    app.mode = Mode::Help;
    let t = draw(&snap, &app, 160, 48);
    insta::assert_snapshot!("help_160x48", t.backend());
    // Every entry of the keymap table is listed by its config name.
    for e in perseus::tui::keymap::TABLE {
        assert!(text(&t).contains(e.name), "help lacks {}", e.name);
    }
}

#[test]
fn model_picker() {
    let snap = tui_fixture::snapshot(3);
    let mut app = live_app();
    app.mode = Mode::Picker { index: 3 };
    let t = draw(&snap, &app, 160, 48);
    insta::assert_snapshot!("picker_160x48", t.backend());
    let s = text(&t);
    assert!(s.contains("does not fit") && s.contains("14 GiB") && s.contains("13 GiB free"));
}

#[test]
fn remove_confirmation_and_rate_prompt() {
    let snap = tui_fixture::snapshot(3);
    let mut app = live_app();
    app.mode = Mode::ConfirmRemove {
        tenant: 11,
        model: "mobilenet_v2".into(),
    };
    insta::assert_snapshot!(
        "confirm_remove_100x30",
        draw(&snap, &app, 100, 30).backend()
    );
    app.mode = Mode::TypingRate {
        tenant: 10,
        buffer: "25x".into(),
        error: Some("`25x` is not a number".into()),
    };
    let s = text(&draw(&snap, &app, 100, 30));
    assert!(s.contains("resnet50 req/s: 25x▏") && s.contains("`25x` is not a number"));
}

#[test]
fn two_tenants_show_the_frontier_plot() {
    let snap = tui_fixture::snapshot(2);
    let t = draw(&snap, &live_app(), 160, 48);
    insta::assert_snapshot!("frontier_160x48", t.backend());
    let s = text(&t);
    // The verdict is read at capacity, never at the operating point.
    assert!(s.contains("at capacity 1.12× (headroom ×1.6)"), "{s}");
    assert!(
        s.contains("11% cheaper") && s.contains("time-slicing"),
        "{s}"
    );
    assert!(
        !s.contains("beats time-slicing") && !s.contains("below time-slicing"),
        "{s}"
    );
    assert!(s.contains("resnet50 req/s (solo 420/s)"));
}

#[test]
fn at_light_load_the_only_savings_are_at_capacity() {
    // Rates far below the frontier: the operating point's equivalents are tiny, the headroom large.
    let mut snap = tui_fixture::snapshot(2);
    if let Some(c) = &mut snap.cost {
        c.dedicated_equivalents = Some(0.12);
    }
    if let Some(perseus::vocab::capacity::CapacityState::Known(f)) =
        snap.capacity.as_mut().map(|c| &mut c.state)
    {
        f.prediction.headroom = 9.3;
    }
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(s.contains("headroom ×9.3"), "{s}");
    assert!(s.contains("at capacity 1.12 equivalents"), "{s}");
    // No percentage computed from the 0.12 equivalents at the operating point (1 − 1/0.12 = −733%).
    assert!(!s.contains("733"), "{s}");
    assert!(!s.contains("dearer"), "{s}");
}

#[test]
fn capacity_unknown_and_computing_say_so() {
    let snap = tui_fixture::snapshot(3);
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(
        s.contains("capacity unknown: tenant 3 (inception_v3) runs closed-loop"),
        "{s}"
    );
    assert!(!s.contains("cheaper") && !s.contains("saves"), "{s}");
    let mut snap = tui_fixture::snapshot(2);
    if let Some(c) = &mut snap.capacity {
        c.state = perseus::vocab::capacity::CapacityState::Computing;
    }
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(s.contains("capacity: computing…"), "{s}");
    assert!(!s.contains("cheaper"), "{s}");
}

#[test]
fn what_if_panel_shows_the_staged_setup_beside_the_live_one() {
    use perseus::vocab::capacity::{CapacityEstimate, WhatIfView};
    use perseus::vocab::command::StagedSetup;
    let mut snap = tui_fixture::snapshot(2);
    let mut app = live_app();
    let mut tenants: Vec<_> = snap
        .tenants
        .iter()
        .map(|t| {
            let mut spec = perseus::tui::app::default_tenant(&t.model);
            spec.load = t.load.clone();
            spec.instances = t.instances;
            (Some(t.id), spec)
        })
        .collect();
    if let perseus::vocab::spec::Load::Rate { per_s, .. } = &mut tenants[0].1.load {
        *per_s = 300.0;
    }
    tenants.pop();
    app.staged = Some(StagedSetup { stage: 4, tenants });
    let mut prediction = match &snap.capacity.as_ref().unwrap().state {
        perseus::vocab::capacity::CapacityState::Known(f) => f.prediction.clone(),
        _ => unreachable!(),
    };
    prediction.headroom = 1.3;
    prediction.tenants.truncate(1);
    prediction.tenants[0].now.latency_ms = 23.4;
    snap.whatif = Some(WhatIfView {
        stage: 4,
        estimate: Some(CapacityEstimate::Known(prediction)),
    });
    let t = draw(&snap, &app, 160, 48);
    insta::assert_snapshot!("whatif_160x48", t.backend());
    let s = text(&t);
    assert!(s.contains("What-if: staged, not applied"), "{s}");
    assert!(s.contains("150/s → 300/s") && s.contains("23.4ms"), "{s}");
    assert!(s.contains("→ removed"), "{s}");
    assert!(s.contains("headroom: live ×1.6 · staged ×1.3"), "{s}");
    // A prediction for an older staging is not shown as this one's.
    snap.whatif.as_mut().unwrap().stage = 3;
    let s = text(&draw(&snap, &app, 160, 48));
    assert!(
        !s.contains("23.4ms") && s.contains("staged computing…"),
        "{s}"
    );
}

#[test]
fn missing_figures_say_no_data() {
    let mut snap = tui_fixture::snapshot(3);
    snap.gpu = GpuView::default();
    snap.cost = None;
    snap.connection.state = ConnState::Disconnected;
    snap.connection.retries = 3;
    snap.connection.last_error = Some("transport error: connection refused".into());
    let t = draw(&snap, &live_app(), 160, 48);
    insta::assert_snapshot!("no_data_160x48", t.backend());
    let s = text(&t);
    assert!(s.matches("no data").count() >= 6, "{s}");
    assert!(s.contains("disconnected (retry 3): transport error: connection refused"));
}

const MIB: u64 = 1024 * 1024;

#[test]
fn gpu_panel_lists_processes_largest_first() {
    let mut snap = tui_fixture::snapshot(3);
    // Without processes (NVML unavailable, as in the fixture) the panel has no process list.
    assert!(!text(&draw(&snap, &live_app(), 160, 48)).contains("GPU mem"));

    snap.gpu.unavailable.clear();
    snap.gpu.processes = vec![
        ProcessMemory {
            pid: 4242,
            name: Some("python3".into()),
            used_bytes: 512 * MIB,
        },
        ProcessMemory {
            pid: 1187,
            name: Some("tritonserver".into()),
            used_bytes: 2458 * MIB,
        },
        ProcessMemory {
            pid: 90311,
            name: None,
            used_bytes: 180 * MIB,
        },
    ];
    let t = draw(&snap, &live_app(), 160, 48);
    insta::assert_snapshot!("gpu_processes_160x48", t.backend());
    let s = text(&t);
    // Each process's row, by its pid: its index on screen and its cells.
    let row = |pid: &str| {
        s.lines()
            .enumerate()
            .find_map(|(i, l)| {
                let cells: Vec<&str> = l.split(['"', '│', ' ']).filter(|c| !c.is_empty()).collect();
                (cells.first() == Some(&pid)).then(|| (i, cells[1..4].join(" ")))
            })
            .unwrap_or_else(|| panic!("no row for pid {pid}:\n{s}"))
    };
    let (triton, python, unnamed) = (row("1187"), row("4242"), row("90311"));
    assert_eq!(triton.1, "2.4 GiB tritonserver");
    assert_eq!(python.1, "512 MiB python3");
    assert_eq!(unnamed.1, "180 MiB ?");
    assert!(
        triton.0 < python.0 && python.0 < unnamed.0,
        "largest first:\n{s}"
    );
    assert!(!s.contains("more processes"), "all three fit:\n{s}");
}

#[test]
fn gpu_process_list_sums_up_what_does_not_fit() {
    let mut snap = tui_fixture::snapshot(3);
    snap.gpu.processes = (0..30u32)
        .map(|i| ProcessMemory {
            pid: 70_000 + i,
            name: Some(format!("worker-{i}")),
            used_bytes: u64::from(i + 1) * 10 * MIB,
        })
        .collect();
    let s = text(&draw(&snap, &live_app(), 160, 48));
    let shown: Vec<u32> = (0..30u32)
        .filter(|i| s.contains(&format!(" {} ", 70_000 + i)))
        .collect();
    assert!(!shown.is_empty(), "some processes fit:\n{s}");
    // The largest are the ones shown, and the last line accounts for all the others.
    let hidden = 30 - shown.len() as u32;
    assert_eq!(shown, (hidden..30).collect::<Vec<_>>(), "{s}");
    let hidden_mib: u64 = (1..=u64::from(hidden)).map(|k| k * 10).sum();
    let rest = if hidden_mib >= 1024 {
        format!("{:.1} GiB", hidden_mib as f64 / 1024.0)
    } else {
        format!("{hidden_mib} MiB")
    };
    assert!(
        s.contains(&format!("{rest}  in {hidden} more processes")),
        "{rest} in {hidden} more:\n{s}"
    );
}

#[test]
fn replay_shows_position_and_disables_editing_in_footer() {
    let mut snap = tui_fixture::snapshot(3);
    snap.replay = Some(ReplayInfo {
        position_s: 83.0,
        length_s: 300.0,
        speed: 2.0,
        paused: false,
    });
    snap.recording = None;
    let app = App::new(0, 5, true);
    let t = draw(&snap, &app, 160, 48);
    let s = text(&t);
    assert!(s.contains("replay ▶ 00:01:23 / 00:05:00 2×"), "{s}");
    assert!(s.contains("editing disabled in replay"));
    assert!(s.contains("←/→ seek") && s.contains("x speed"));
    assert!(!s.contains(" add "));
}

#[test]
fn recording_indicator() {
    let mut snap = tui_fixture::snapshot(3);
    snap.recording = Some("/data/recordings/demo-1.jsonl".into());
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(s.contains("● REC demo-1.jsonl"));
}

/// The generator fell behind on the first tenant: the header and its row say so, in full where
/// there is room and shortened at 80 columns.
#[test]
fn a_client_bound_tenant_is_flagged_in_the_header_and_its_row() {
    let mut snap = tui_fixture::snapshot(3);
    let flag = ClientBound {
        reasons: vec![ClientBoundReason::LateSends],
        behind_ms: 12.4,
        late_share: 0.3,
        dropped_share: 0.0,
        cpu_share: Some(0.6),
        cores: 2,
    };
    snap.tenants[0].window.client_bound = Some(flag.clone());
    snap.client.window = Some(flag);
    let wide = draw(&snap, &live_app(), 160, 48);
    insta::assert_snapshot!("client_bound_160x48", wide.backend());
    let s = text(&wide);
    assert!(
        s.contains("⚠ client behind by 12 ms — these latencies measure this machine, not the GPU"),
        "{s}"
    );
    assert!(s.contains("⚠ resnet50: client behind by 12 ms"), "{s}");
    let narrow = draw(&snap, &live_app(), 80, 24);
    insta::assert_snapshot!("client_bound_80x24", narrow.backend());
    let header = text(&narrow).lines().next().unwrap_or("").to_string();
    assert!(header.contains("⚠ client behind by 12 ms"), "{header}");
    // The marker column flags the row itself.
    assert!(text(&narrow).contains("▶⚠ resnet50"), "{}", text(&narrow));
    // A run that keeps its schedule shows none of it.
    let calm = text(&draw(&tui_fixture::snapshot(3), &live_app(), 160, 48));
    assert!(!calm.contains('⚠') && !calm.contains("client behind"));
}

/// The first tenant's drops filled the in-flight bound while its server held the requests: the
/// header and its row say the target is saturated, and nothing says the client is the bottleneck.
#[test]
fn a_saturated_target_is_flagged_as_the_targets_not_the_clients() {
    let mut snap = tui_fixture::snapshot(3);
    snap.tenants[0].window.saturated = Some(Saturated {
        dropped_share: 0.409,
        server_ms: 284.0,
        service_ms: 290.0,
    });
    // In full where there is room.
    let wide = text(&draw(&snap, &live_app(), 300, 48));
    assert!(
        wide.contains(
            "⚠ resnet50: target saturated: 40.9% dropped at the in-flight bound, the server held \
             each request 284 ms of its 290 ms — the target is the bottleneck, not this machine"
        ),
        "{wide}"
    );
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(
        s.contains("⚠ resnet50: target saturated: 40.9% dropped at the in-flight bound"),
        "{s}"
    );
    assert!(s.contains("▶⚠ resnet50"), "{s}");
    assert!(!s.contains("client"), "{s}");
    let narrow = text(&draw(&snap, &live_app(), 80, 24));
    let header = narrow.lines().next().unwrap_or("").to_string();
    assert!(header.contains("⚠ resnet50: target saturated"), "{header}");
}

/// Letters standing for the distinct styles of a buffer, in order of first use, with a legend:
/// snapshots of where each colour goes without a 3,000-line dump of cells.
fn style_map(buffer: &Buffer) -> String {
    let mut styles: Vec<Style> = Vec::new();
    let mut grid = String::new();
    let area = buffer.area;
    for y in 0..area.height {
        for x in 0..area.width {
            let style = buffer[(x, y)].style();
            let i = styles.iter().position(|s| *s == style).unwrap_or_else(|| {
                styles.push(style);
                styles.len() - 1
            });
            grid.push(char::from_digit(i as u32 % 36, 36).unwrap_or('?'));
        }
        grid.push('\n');
    }
    let mut legend = String::new();
    for (i, s) in styles.iter().enumerate() {
        let _ = writeln!(
            legend,
            "{}: fg={:?} bg={:?} mod={:?}",
            char::from_digit(i as u32 % 36, 36).unwrap_or('?'),
            s.fg,
            s.bg,
            s.add_modifier
        );
    }
    format!("{legend}\n{grid}")
}

/// The cell holding `symbol` in the row that contains `row_text`.
fn cell_style(buffer: &Buffer, row_text: &str, symbol: &str) -> Style {
    let area = buffer.area;
    for y in 0..area.height {
        let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        if line.contains(row_text) {
            for x in 0..area.width {
                if buffer[(x, y)].symbol() == symbol {
                    return buffer[(x, y)].style();
                }
            }
        }
    }
    panic!("no {symbol} in a row with {row_text}");
}

#[test]
fn every_theme_colours_sla_states_with_its_own_palette() {
    let snap = tui_fixture::snapshot(4);
    let all = themes();
    assert_eq!(all.len(), 5);
    let mut maps = Vec::new();
    for (i, theme) in all.iter().enumerate() {
        let mut app = App::new(i, all.len(), false);
        // Select a tenant that meets its SLA so the missed one is drawn in its own style.
        app.selected = Some(10);
        let t = draw_with(&snap, &app, theme, 100, 30);
        let buffer = t.backend().buffer();
        // mobilenet_v2 meets its SLA (✓); densenet121 misses it (✗).
        let (met, missed) = (
            cell_style(buffer, "mobilenet_v2", "✓"),
            cell_style(buffer, "densenet121", "✗"),
        );
        if theme.ok.fg.is_some() {
            assert_eq!(met.fg, theme.ok.fg, "{}", theme.name);
            assert_eq!(missed.fg, theme.bad.fg, "{}", theme.name);
        } else {
            // Monochrome marks a miss by emphasis alone.
            assert!(
                missed.add_modifier.contains(theme.bad.add_modifier),
                "{}",
                theme.name
            );
            assert_ne!(met.add_modifier, missed.add_modifier);
        }
        let map = style_map(buffer);
        insta::assert_snapshot!(format!("theme_{}", theme.name), map);
        maps.push(map);
    }
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            assert_ne!(a, b, "two themes draw identically");
        }
    }
    // NO_COLOR: not a single coloured cell.
    let mono = theme::load_all(&[], true).unwrap();
    let t = draw_with(&snap, &App::new(0, 1, false), &mono[0], 100, 30);
    for cell in t.backend().buffer().content() {
        assert!(
            cell.fg == ratatui::style::Color::Reset && cell.bg == ratatui::style::Color::Reset,
            "{cell:?}"
        );
    }
}

#[test]
fn help_on_a_short_terminal_still_lists_every_key() {
    let snap = tui_fixture::snapshot(3);
    let mut app = live_app();
    app.mode = Mode::Help;
    let t = draw(&snap, &app, 80, 24);
    insta::assert_snapshot!("help_80x24", t.backend());
    let s = text(&t);
    for e in perseus::tui::keymap::TABLE {
        let first = e.description.split_whitespace().next().unwrap();
        assert!(s.contains(first), "help lacks {}", e.name);
    }
    assert!(s.contains("quit (stops the run)"));
}

#[test]
fn a_tenant_without_successes_shows_no_latency_and_set_up_is_not_connecting() {
    let mut snap = tui_fixture::snapshot(1);
    snap.phase = perseus::vocab::snapshot::Phase::Connecting;
    snap.connection.state = ConnState::Connected;
    let t = &mut snap.tenants[0];
    t.window = Default::default();
    t.window.errors = 500;
    let s = text(&draw(&snap, &live_app(), 160, 48));
    assert!(s.contains("setting up") && s.contains("connected"), "{s}");
    assert!(!s.contains("connecting"), "{s}");
    assert!(
        !s.contains("0.00ms"),
        "a histogram without samples shown as a latency:\n{s}"
    );
    let row = s
        .lines()
        .find(|l| l.contains(&snap.tenants[0].model) && l.contains("500/"))
        .unwrap_or_else(|| panic!("no tenant row:\n{s}"));
    assert!(row.matches('–').count() >= 3, "{row}");
}

/// Draws a fleet as the run loop does: the panels get the selected tenant's target.
fn draw_fleet(
    fleet: &perseus::vocab::fleet::FleetView,
    app: &App,
    width: u16,
    height: u16,
) -> Terminal<TestBackend> {
    let keymap = Keymap::new(&BTreeMap::new()).unwrap();
    let focus = perseus::tui::fleet::selected_target(fleet, app.selected);
    let snap = &fleet.targets[focus].snapshot;
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            screen::draw(
                frame,
                &View {
                    snap,
                    fleet: Some(fleet),
                    app,
                    theme: &themes()[0],
                    keymap: &keymap,
                },
            )
        })
        .unwrap();
    terminal
}

#[test]
fn a_two_target_fleet_groups_tenants_and_the_panels_follow_the_selection() {
    let fleet = tui_fixture::fleet();
    let mut app = live_app();
    let t = draw_fleet(&fleet, &app, 160, 48);
    insta::assert_snapshot!("fleet_160x48", t.backend());
    let s = text(&t);
    for must in [
        "▪ t4 · emulated T4 16 GiB · connected · $0.526/h · 2 tenants",
        "▪ l4 · emulated L4 24 GiB · connected · $0.707/h · 1 tenant",
        "fleet of 2",
        "$1.233/h",
        "worst SLA 93.0% inception_v3 on l4",
        " on t4 ",
        "aws:g4dn.xlarge",
    ] {
        assert!(s.contains(must), "missing {must}:\n{s}");
    }
    // Selecting the L4's tenant turns the panels to the L4.
    app.selected = Some(fleet.targets[1].snapshot.tenants[0].id);
    let s = text(&draw_fleet(&fleet, &app, 160, 48));
    assert!(s.contains(" on l4 "), "{s}");
    assert!(s.contains("gcp:g2-standard-4"), "{s}");
    assert!(!s.contains(" on t4 "), "{s}");
    assert!(!s.contains("● REC"), "{s}");
    // Each target records its own file; the header counts them.
    let mut fleet = fleet;
    let mut l4 = (*fleet.targets[1].snapshot).clone();
    l4.recording = Some("/runs/l4.jsonl".to_string());
    fleet.targets[1].snapshot = std::sync::Arc::new(l4);
    let s = text(&draw_fleet(&fleet, &app, 160, 48));
    assert!(s.contains("● REC 1 of 2"), "{s}");
}
