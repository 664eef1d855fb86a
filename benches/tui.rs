//! Full-frame draw time of the dashboard at 160×48 with 8 tenants, into ratatui's `TestBackend`
//! (every widget, the buffer diff and the backend write; no terminal I/O).
//!
//! Prints the median, p90 and max per frame, and what that costs at the default 10 fps render clock
//! and at the engine's 4 snapshots per second (the dashboard redraws only when something changed).
//! Target: median ≤ 1 ms. Run with `cargo bench --bench tui`.

#[path = "../tests/tui_fixture/mod.rs"]
mod tui_fixture;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use perseus::tui::app::App;
use perseus::tui::keymap::Keymap;
use perseus::tui::screen::{self, ScreenLayout, View};
use perseus::tui::theme;
use perseus::tui::{cost, footer, frontier, gpu, header, latency, tenants};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const WARMUP_FRAMES: usize = 200;
const FRAMES: usize = 3000;

fn main() {
    let themes = theme::load_all(&[], false).expect("built-in themes load");
    let keymap = Keymap::new(&BTreeMap::new()).expect("default keymap is valid");
    // Two snapshots a tick apart, alternated, so every frame has changes to diff and write.
    let mut a = tui_fixture::snapshot(8);
    let mut b = a.clone();
    b.elapsed_s += tui_fixture::TICK_S;
    for t in &mut b.tenants {
        t.window.achieved_per_s += 1.0;
        t.window.latency_ms.p99 *= 1.01;
    }
    a.seq = 1;
    b.seq = 2;
    let snaps = [a, b];
    let mut app = App::new(0, themes.len(), false);
    app.window_index = 2; // the 10-minute chart window: the most points to reduce
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).expect("test backend");

    let mut times = Vec::with_capacity(FRAMES);
    for i in 0..WARMUP_FRAMES + FRAMES {
        let snap = &snaps[i % 2];
        let view = View {
            snap,
            fleet: None,
            app: &app,
            theme: &themes[0],
            keymap: &keymap,
        };
        let start = Instant::now();
        terminal
            .draw(|frame| screen::draw(frame, &view))
            .expect("draw");
        let took = start.elapsed();
        black_box(terminal.backend());
        if i >= WARMUP_FRAMES {
            times.push(took);
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let median = at(0.5);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    // Where the time goes: each panel alone, in the rectangle the screen gives it.
    type Panel = fn(&mut ratatui::Frame, ratatui::layout::Rect, &View);
    let layout = ScreenLayout::new(ratatui::layout::Rect::new(0, 0, 160, 48), 8).expect("fits");
    let panels: [(&str, Panel, ratatui::layout::Rect); 7] = [
        ("header", header::render, layout.header),
        ("tenants", tenants::render, layout.tenants),
        ("gpu", gpu::render, layout.gpu),
        ("latency", latency::render, layout.latency),
        ("cost", cost::render, layout.cost),
        (
            "frontier",
            frontier::render,
            layout.frontier.expect("tall enough"),
        ),
        ("footer", footer::render, layout.footer),
    ];
    let mut breakdown = Vec::new();
    for (name, panel, area) in panels {
        let mut each = Vec::with_capacity(FRAMES / 4);
        for i in 0..FRAMES / 4 {
            let view = View {
                snap: &snaps[i % 2],
                fleet: None,
                app: &app,
                theme: &themes[0],
                keymap: &keymap,
            };
            let start = Instant::now();
            terminal
                .draw(|frame| panel(frame, area, &view))
                .expect("draw");
            each.push(start.elapsed());
        }
        each.sort();
        breakdown.push(format!("{name} {:.3}", ms(each[each.len() / 2])));
    }
    println!("dashboard frame, 160x48, 8 tenants, 10 min chart window, {FRAMES} frames");
    println!(
        "  median {:.3} ms   p90 {:.3} ms   max {:.3} ms",
        ms(median),
        ms(at(0.9)),
        ms(at(1.0))
    );
    println!("  median / 1 ms target = {:.2}", ms(median) / 1.0);
    println!(
        "  per panel alone, median ms (incl. diff of the whole buffer): {}",
        breakdown.join(", ")
    );
    println!(
        "  CPU share of one core: {:.2}% drawing every frame at 10 fps, {:.2}% at 4 snapshots/s (idle load)",
        ms(median) * 10.0 / 10.0,
        ms(median) * 4.0 / 10.0
    );
}
