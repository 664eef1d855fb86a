//! The GPU panel: utilization and SM activity with their recent history, memory with each model's
//! share, power against its limit, clock and temperature, each with the source it came from, and
//! below them the GPU's processes by memory when NVML lists them (nvitop's main view: who else holds
//! the GPU). A figure no source provides says "no data" rather than showing a zero.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};

use crate::tui::format;
use crate::tui::screen::View;
use crate::tui::series;
use crate::tui::theme::Theme;
use crate::vocab::snapshot::{ProcessMemory, Reading, Series};

const LABEL: usize = 7;

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    let (snap, theme) = (view.snap, view.theme);
    let gpu = &snap.gpu;
    let title = match &gpu.name {
        Some(n) => format!(" GPU · {} ", format::truncate(n, 28)),
        None => " GPU ".to_string(),
    };
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 20 {
        return;
    }
    // Bar, then value and source; whatever width is left on the first two lines holds a sparkline.
    // Leave room after the bar for the widest value ("12.3/80 GiB") and source label.
    let bar = usize::from(inner.width)
        .saturating_sub(LABEL + 22)
        .clamp(6, 20);
    let text_width = LABEL + bar + 1 + 16;
    let spark_x = inner.x + text_width as u16;
    let spark_w = inner.width.saturating_sub(text_width as u16 + 1);
    let now = snap.elapsed_s;
    let from = now - view.app.chart_window_s();

    let mut lines = Vec::new();
    lines.push(fraction_line("util", gpu.utilization, bar, theme));
    lines.push(fraction_line("SM", gpu.sm_activity, bar, theme));
    lines.push(memory_line(view, bar));
    lines.extend(shares_lines(view, usize::from(inner.width)));
    lines.push(power_line(gpu.power_w, gpu.power_limit_w, theme));
    lines.push(clock_line(gpu.sm_clock_mhz, gpu.temperature_c, theme));
    for reason in &gpu.unavailable {
        lines.push(Line::styled(
            format::truncate(reason, usize::from(inner.width)),
            theme.dim,
        ));
    }
    let rows_left = usize::from(inner.height).saturating_sub(lines.len());
    lines.extend(process_lines(
        &gpu.processes,
        rows_left,
        usize::from(inner.width),
        theme,
    ));
    frame.render_widget(Paragraph::new(lines), inner);

    let history = &snap.history;
    for (row, s) in [(0u16, &history.gpu_util), (1, &history.gpu_sm)] {
        if spark_w >= 4 && row < inner.height {
            let rect = Rect {
                x: spark_x + 1,
                y: inner.y + row,
                width: spark_w,
                height: 1,
            };
            sparkline(frame, rect, s, from, now, theme.accent);
        }
    }
}

fn sparkline(frame: &mut Frame, area: Rect, s: &Series, from: f64, to: f64, style: Style) {
    if s.is_empty() {
        return;
    }
    let data: Vec<Option<u64>> = series::buckets(s, from, to, usize::from(area.width))
        .into_iter()
        .map(|v| v.map(|v| (v.clamp(0.0, 1.0) * 100.0).round() as u64))
        .collect();
    frame.render_widget(Sparkline::default().data(data).max(100).style(style), area);
}

fn label(text: &str, theme: &Theme) -> Span<'static> {
    Span::styled(format!("{text:<LABEL$}"), theme.dim)
}

fn source(r: &Reading, theme: &Theme) -> Span<'static> {
    Span::styled(format!(" {}", r.source.label()), theme.dim)
}

fn no_data(theme: &Theme) -> Span<'static> {
    Span::styled("no data", theme.dim)
}

/// A bar of `width` cells filled to `fraction`.
fn bar_spans(fraction: f64, width: usize, theme: &Theme) -> [Span<'static>; 2] {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    [
        Span::styled("█".repeat(filled), theme.gauge_fill),
        Span::styled("░".repeat(width - filled), theme.gauge_empty),
    ]
}

fn fraction_line(name: &str, reading: Option<Reading>, bar: usize, theme: &Theme) -> Line<'static> {
    let mut spans = vec![label(name, theme)];
    match reading {
        Some(r) => {
            spans.extend(bar_spans(r.value, bar, theme));
            spans.push(Span::styled(
                format!(" {:>4.0}%", r.value * 100.0),
                theme.text,
            ));
            spans.push(source(&r, theme));
        }
        None => spans.push(no_data(theme)),
    }
    Line::from(spans)
}

fn memory_line(view: &View, bar: usize) -> Line<'static> {
    let (gpu, theme) = (&view.snap.gpu, view.theme);
    let mut spans = vec![label("memory", theme)];
    let (Some(used), Some(total)) = (gpu.memory_used_bytes, gpu.memory_total_bytes) else {
        spans.push(no_data(theme));
        return Line::from(spans);
    };
    if total.value <= 0.0 {
        spans.push(no_data(theme));
        return Line::from(spans);
    }
    // One segment per model in its chart colour, then whatever else is used, then free.
    let cells = |bytes: f64| ((bytes / total.value) * bar as f64).round() as usize;
    let mut drawn = 0usize;
    let mut model_bytes = 0.0;
    for (i, (_, bytes)) in gpu.model_memory.iter().enumerate() {
        let n = cells(*bytes as f64).min(bar - drawn);
        model_bytes += *bytes as f64;
        if n > 0 {
            spans.push(Span::styled("█".repeat(n), theme.series(i)));
            drawn += n;
        }
    }
    let other = cells((used.value - model_bytes).max(0.0)).min(bar - drawn);
    spans.push(Span::styled("▓".repeat(other), theme.gauge_fill));
    drawn += other;
    spans.push(Span::styled("░".repeat(bar - drawn), theme.gauge_empty));
    spans.push(Span::styled(
        format!(
            " {}/{} GiB",
            format::gib(used.value),
            format::gib(total.value)
        ),
        theme.text,
    ));
    spans.push(source(&used, theme));
    Line::from(spans)
}

/// The legend of the memory bar's segments, wrapped to the panel's width.
fn shares_lines(view: &View, width: usize) -> Vec<Line<'static>> {
    let (gpu, theme) = (&view.snap.gpu, view.theme);
    let mut lines = Vec::new();
    let mut spans = vec![label("", theme)];
    let mut used = LABEL;
    for (i, (model, bytes)) in gpu.model_memory.iter().enumerate() {
        let text = format!("{} {}", format::truncate(model, 14), format::bytes(*bytes));
        let need = text.chars().count() + 4;
        if used + need > width && spans.len() > 1 {
            lines.push(Line::from(std::mem::replace(
                &mut spans,
                vec![label("", theme)],
            )));
            used = LABEL;
        }
        spans.push(Span::styled("■ ", theme.series(i)));
        spans.push(Span::styled(format!("{text}  "), theme.text));
        used += need;
    }
    if spans.len() > 1 {
        lines.push(Line::from(spans));
    }
    lines
}

/// Width of the pid column: Linux pids reach 4,194,304 (seven digits).
const PID: usize = 7;
/// Width of the memory column ("12.3 GiB", "512 MiB").
const MEM: usize = 8;

/// A header and one row per process, largest first, in at most `rows` lines; when they do not all
/// fit, the last line counts the rest and their memory so the total is never hidden. Nothing at all
/// when the list is empty (NVML unavailable, or nothing running) or fewer than two lines are left.
fn process_lines(
    processes: &[ProcessMemory],
    rows: usize,
    width: usize,
    theme: &Theme,
) -> Vec<Line<'static>> {
    if processes.is_empty() || rows < 2 {
        return Vec::new();
    }
    let mut sorted: Vec<&ProcessMemory> = processes.iter().collect();
    sorted.sort_by(|a, b| b.used_bytes.cmp(&a.used_bytes).then(a.pid.cmp(&b.pid)));
    let shown = if sorted.len() < rows {
        sorted.len()
    } else {
        rows - 2
    };
    let name_width = width.saturating_sub(LABEL + PID + MEM + 4);
    let mut lines = vec![Line::styled(
        format!(
            "{:<LABEL$}{:>PID$}  {:>MEM$}  name",
            "process", "pid", "GPU mem"
        ),
        theme.dim,
    )];
    for p in &sorted[..shown] {
        let name = match &p.name {
            Some(n) => Span::styled(format::truncate(n, name_width), theme.text),
            None => Span::styled("?", theme.dim),
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!(
                    "{:<LABEL$}{:>PID$}  {:>MEM$}  ",
                    "",
                    p.pid,
                    format::bytes(p.used_bytes)
                ),
                theme.text,
            ),
            name,
        ]));
    }
    let rest = &sorted[shown..];
    if !rest.is_empty() {
        let bytes: u64 = rest.iter().map(|p| p.used_bytes).sum();
        lines.push(Line::styled(
            format!(
                "{:<LABEL$}{:>PID$}  {:>MEM$}  in {} more processes",
                "",
                "…",
                format::bytes(bytes),
                rest.len()
            ),
            theme.dim,
        ));
    }
    lines
}

fn power_line(power: Option<Reading>, limit: Option<Reading>, theme: &Theme) -> Line<'static> {
    let mut spans = vec![label("power", theme)];
    match (power, limit) {
        (Some(p), Some(l)) if l.value > 0.0 => {
            let frac = p.value / l.value;
            let style = if frac >= 0.95 { theme.warn } else { theme.text };
            spans.push(Span::styled(
                format!("{:.0} W / {:.0} W ({:.0}%)", p.value, l.value, frac * 100.0),
                style,
            ));
            spans.push(source(&p, theme));
        }
        (Some(p), _) => {
            spans.push(Span::styled(format!("{:.0} W", p.value), theme.text));
            spans.push(Span::styled(" limit unknown", theme.dim));
            spans.push(source(&p, theme));
        }
        (None, _) => spans.push(no_data(theme)),
    }
    Line::from(spans)
}

fn clock_line(clock: Option<Reading>, temp: Option<Reading>, theme: &Theme) -> Line<'static> {
    let mut spans = vec![label("clock", theme)];
    match clock {
        Some(c) => {
            spans.push(Span::styled(format!("{:.0} MHz", c.value), theme.text));
            spans.push(source(&c, theme));
        }
        None => spans.push(no_data(theme)),
    }
    spans.push(Span::styled("  temp ", theme.dim));
    match temp {
        Some(t) => {
            let style = if t.value >= 85.0 {
                theme.bad
            } else {
                theme.text
            };
            spans.push(Span::styled(format!("{:.0} °C", t.value), style));
            spans.push(source(&t, theme));
        }
        None => spans.push(no_data(theme)),
    }
    Line::from(spans)
}
