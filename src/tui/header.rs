//! The top line: what is being driven, and whether it is healthy right now — including whether
//! the load generator itself is the bottleneck (then the figures measure this machine), or the
//! target is saturated (then they measure its backlog).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::format;
use crate::tui::screen::View;
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{ConnState, Phase, Snapshot, TargetKind};

/// What the figures measure when it is not the GPU serving its load normally, long and short: the
/// client machine (the run's client-bound flag) first, else the first tenant whose target is
/// saturated.
fn bottleneck(snap: &Snapshot) -> Option<(String, String)> {
    if let Some(flag) = &snap.client.window {
        return Some((flag.long(), flag.short()));
    }
    let (t, s) = snap
        .tenants
        .iter()
        .filter(|t| !t.paused)
        .find_map(|t| t.window.saturated.as_ref().map(|s| (t, s)))?;
    Some((
        format!("{}: {}", t.model, s.long()),
        format!("{}: {}", t.model, s.short()),
    ))
}

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    if let Some(fleet) = view.fleet {
        render_fleet(frame, area, view, fleet);
        return;
    }
    let (snap, theme) = (view.snap, view.theme);
    let sep = || Span::styled(" ─ ", theme.border);
    let mut spans = vec![Span::styled("Perseus", theme.title), sep()];

    let gpu = snap
        .target
        .gpu
        .as_deref()
        .or(snap.gpu.name.as_deref())
        .unwrap_or("GPU unknown");
    let target = match snap.target.kind {
        TargetKind::Emulated => format!("emulated {gpu}"),
        TargetKind::Triton => format!("triton {} · {gpu}", snap.target.address),
    };
    spans.push(Span::styled(target, theme.text));
    spans.push(sep());
    spans.push(Span::styled(snap.session.clone(), theme.accent));
    spans.push(sep());

    let (state, style) = if snap.paused {
        ("⏸ paused", theme.warn)
    } else {
        match snap.phase {
            // Once connected, what remains before running is the tenants' set-up; saying
            // "connecting" next to "connected" contradicted itself.
            Phase::Connecting if snap.connection.state == ConnState::Connected => {
                ("○ setting up", theme.warn)
            }
            Phase::Connecting => ("○ starting", theme.warn),
            Phase::WarmingUp => ("◐ warming up", theme.warn),
            Phase::Measuring => ("● running", theme.ok),
            Phase::Finished => ("■ finished", theme.dim),
        }
    };
    spans.push(Span::styled(
        format!("{state} {}", format::clock(snap.elapsed_s)),
        style,
    ));
    spans.push(sep());
    let mut show_window = true;
    if let Some((long, short)) = bottleneck(snap) {
        // Ahead of the connection and the window, which give way first on a narrow terminal:
        // figures that measure this machine (or a saturated target) must never pass unremarked.
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let long = format!("⚠ {long}");
        let long_width = Span::raw(long.as_str()).width();
        let connection = "connected".len() + 3;
        let window = format!(" ─ window {}", format::span(snap.window_s)).len();
        let width = usize::from(area.width);
        if used + long_width + connection <= width {
            show_window = used + long_width + connection + window <= width;
            spans.push(Span::styled(long, theme.warn));
            spans.push(sep());
        } else {
            let short = format!("⚠ {short}");
            let short_width = Span::raw(short.as_str()).width();
            // Where even the short form does not fit at the end, it goes first, after the name.
            let at = if used + short_width <= width {
                spans.len()
            } else {
                2
            };
            spans.insert(at, sep());
            spans.insert(at, Span::styled(short, theme.warn));
        }
    }
    match snap.connection.state {
        ConnState::Connected => spans.push(Span::styled("connected", theme.ok)),
        ConnState::Connecting => spans.push(Span::styled("connecting…", theme.warn)),
        ConnState::Disconnected => {
            let mut text = "disconnected".to_string();
            if snap.connection.retries > 0 {
                text.push_str(&format!(" (retry {})", snap.connection.retries));
            }
            spans.push(Span::styled(text, theme.bad));
        }
    }
    if snap.connection.state != ConnState::Connected
        && let Some(err) = &snap.connection.last_error
    {
        spans.push(Span::styled(
            format!(": {}", format::truncate(err, 48)),
            theme.bad,
        ));
    }

    if let Some(path) = &snap.recording {
        spans.push(sep());
        let name = path.rsplit('/').next().unwrap_or(path);
        spans.push(Span::styled(
            format!("● REC {}", format::truncate(name, 24)),
            theme.bad,
        ));
    }
    if let Some(r) = &snap.replay {
        spans.push(sep());
        let icon = if r.paused { "⏸" } else { "▶" };
        spans.push(Span::styled(
            format!(
                "replay {icon} {} / {} {}×",
                format::clock(r.position_s),
                format::clock(r.length_s),
                r.speed
            ),
            theme.accent,
        ));
    }
    if show_window {
        spans.push(sep());
        spans.push(Span::styled(
            format!("window {}", format::span(snap.window_s)),
            theme.dim,
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A multi-target run's top line: the fleet line (what it all costs and does, and its weakest
/// SLA, naming the tenant and its target); each target's own state is on its row in the table.
fn render_fleet(frame: &mut Frame, area: Rect, view: &View, fleet: &FleetView) {
    let (snap, theme) = (view.snap, view.theme);
    let sep = || Span::styled(" ─ ", theme.border);
    let line = &fleet.line;
    let mut spans = vec![
        Span::styled("Perseus", theme.title),
        sep(),
        Span::styled(format!("fleet of {}", fleet.targets.len()), theme.text),
        sep(),
        Span::styled(snap.session.clone(), theme.accent),
        sep(),
        Span::styled(format::clock(snap.elapsed_s), theme.text),
        sep(),
        Span::styled(
            format!("{}/h", format::usd(line.usd_per_hour)),
            theme.accent,
        ),
        sep(),
        Span::styled(
            format!(
                "{} · goodput {}",
                format::rate(line.throughput_per_s),
                format::rate(line.goodput_per_s)
            ),
            theme.text,
        ),
    ];
    if let Some(w) = &line.worst_sla {
        spans.push(sep());
        spans.push(Span::styled(
            format!(
                "worst SLA {} {} on {}",
                format::percent(w.attainment),
                w.tenant,
                w.target
            ),
            theme.warn,
        ));
    }
    let recording = fleet
        .targets
        .iter()
        .filter(|t| t.snapshot.recording.is_some());
    match recording.count() {
        0 => {}
        n => {
            spans.push(sep());
            spans.push(Span::styled(
                format!("● REC {n} of {}", fleet.targets.len()),
                theme.bad,
            ));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
