//! The tenant table: one row per tenant with its load, latency, SLA standing and server figures.
//! Columns carry a priority so a narrow terminal drops the least important ones whole rather than
//! squeezing every column unreadable.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Row, Table};

use crate::tui::app::Mode;
use crate::tui::format;
use crate::tui::screen::View;
use crate::tui::theme::{Theme, Verdict};
use crate::vocab::snapshot::{PeakKind, TenantView};
use crate::vocab::spec::Load;

pub(crate) struct Column {
    pub(crate) title: &'static str,
    pub(crate) width: u16,
    /// Lower is kept longer.
    priority: u8,
    pub(crate) cell: fn(&TenantView, &View) -> Span<'static>,
}

const COLUMNS: &[Column] = &[
    Column {
        title: "",
        width: 2,
        priority: 0,
        cell: marker,
    },
    Column {
        title: "model",
        width: 16,
        priority: 0,
        cell: model,
    },
    Column {
        title: "inst",
        width: 4,
        priority: 5,
        cell: instances,
    },
    Column {
        title: "batching",
        width: 9,
        priority: 4,
        cell: batching,
    },
    Column {
        title: "target",
        width: 10,
        priority: 1,
        cell: target,
    },
    Column {
        title: "arrival",
        width: 8,
        priority: 9,
        cell: arrival,
    },
    Column {
        title: "achieved",
        width: 10,
        priority: 1,
        cell: achieved,
    },
    Column {
        title: "p50",
        width: 8,
        priority: 6,
        cell: |t, v| latency(t, v, t.window.latency_ms.p50),
    },
    Column {
        title: "p95",
        width: 8,
        priority: 2,
        cell: |t, v| latency(t, v, t.window.latency_ms.p95),
    },
    Column {
        title: "p99",
        width: 8,
        priority: 2,
        cell: |t, v| latency(t, v, t.window.latency_ms.p99),
    },
    Column {
        title: "SLA",
        width: 12,
        priority: 3,
        cell: sla,
    },
    Column {
        title: "attain",
        width: 8,
        priority: 2,
        cell: attainment,
    },
    Column {
        title: "err/drop",
        width: 9,
        priority: 4,
        cell: errors,
    },
    Column {
        title: "queue",
        width: 8,
        priority: 7,
        cell: |t, _| server(t, |s| s.queue_us),
    },
    Column {
        title: "compute",
        width: 8,
        priority: 7,
        cell: |t, _| server(t, |s| s.compute_infer_us),
    },
    Column {
        title: "solo peak",
        width: 13,
        priority: 8,
        cell: solo_peak,
    },
];

/// First tenant shown when `visible` rows fit, keeping the selected one on screen.
pub fn offset(selected: Option<usize>, visible: usize) -> usize {
    selected.map_or(0, |s| (s + 1).saturating_sub(visible.max(1)))
}

/// Where the data rows are drawn inside the table's area (below the border and the header row).
pub fn rows_area(area: Rect) -> Rect {
    Rect {
        x: area.x + 1,
        y: area.y + 2,
        width: area.width.saturating_sub(2),
        height: area.height.saturating_sub(3),
    }
}

/// A tenant's row, highlighted when selected (outside an editing mode) and dimmed when paused.
pub(crate) fn tenant_row(
    t: &TenantView,
    selected: bool,
    columns: &[&Column],
    view: &View,
) -> Row<'static> {
    let theme = view.theme;
    let style = if selected && view.app.mode == Mode::Normal {
        theme.selected
    } else if t.paused {
        theme.dim
    } else {
        theme.text
    };
    Row::new(columns.iter().map(|c| Cell::from((c.cell)(t, view)))).style(style)
}

/// The header row and column widths of the columns that fit.
pub(crate) fn header_and_widths(
    columns: &[&Column],
    view: &View,
) -> (Row<'static>, Vec<Constraint>) {
    let header = Row::new(columns.iter().map(|c| Cell::from(c.title))).style(view.theme.dim);
    let widths = columns
        .iter()
        .map(|c| Constraint::Length(c.width))
        .collect();
    (header, widths)
}

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    if let Some(fleet) = view.fleet {
        crate::tui::fleet_table::render(frame, area, view, fleet);
        return;
    }
    let (snap, app, theme) = (view.snap, view.app, view.theme);
    let inner_width = area.width.saturating_sub(2);
    let columns = fit_columns(inner_width);

    let visible = usize::from(rows_area(area).height);
    let selected = app.selected_index(snap);
    let first = offset(selected, visible);
    let rows: Vec<Row> = snap
        .tenants
        .iter()
        .enumerate()
        .skip(first)
        .take(visible)
        .map(|(i, t)| tenant_row(t, Some(i) == selected, &columns, view))
        .collect();

    let (header, widths) = header_and_widths(&columns, view);
    let step = match app.selected_tenant(snap).map(|t| &t.load) {
        Some(Load::Concurrency(_)) => "±1 in flight".to_string(),
        _ => format!("±{}/s", app.step()),
    };
    let title = if snap.tenants.is_empty() {
        " Tenants: none (a adds one) ".to_string()
    } else {
        let more = if snap.tenants.len() > visible {
            format!(
                ", {}–{} shown",
                first + 1,
                (first + visible).min(snap.tenants.len())
            )
        } else {
            String::new()
        };
        format!(" Tenants ({}{more}) · step {step} ", snap.tenants.len())
    };
    let mut block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    if let Some(line) = client_bound_title(snap, inner_width) {
        block = block.title_top(Line::styled(line, theme.warn).right_aligned());
    }
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block);
    frame.render_widget(table, area);
}

/// Which tenant the client cannot keep up with (or whose target is saturated), and by how much, on
/// the table's top border beside the rows marked ⚠ (the first such tenant; the count of others).
pub(crate) fn client_bound_title(
    snap: &crate::vocab::snapshot::Snapshot,
    width: u16,
) -> Option<String> {
    // The client's flags first: they say the figures measure this machine.
    let mut flagged = snap
        .tenants
        .iter()
        .filter(|t| !t.paused)
        .filter_map(|t| t.window.client_bound.as_ref().map(|f| (t, f.short())))
        .chain(
            snap.tenants
                .iter()
                .filter(|t| !t.paused && t.window.client_bound.is_none())
                .filter_map(|t| t.window.saturated.as_ref().map(|s| (t, s.short()))),
        );
    let (t, text) = flagged.next()?;
    let others = flagged.count();
    let more = match others {
        0 => String::new(),
        n => format!(" (+{n} more)"),
    };
    let line = format!(" ⚠ {}: {text}{more} ", t.model);
    // Leave the left-hand title its room; drop the line rather than cover it.
    (line.chars().count() + 34 <= usize::from(width)).then_some(line)
}

/// The most important columns that fit, in their display order.
pub(crate) fn fit_columns(width: u16) -> Vec<&'static Column> {
    let mut order: Vec<usize> = (0..COLUMNS.len()).collect();
    order.sort_by_key(|&i| (COLUMNS[i].priority, i));
    let mut chosen = vec![false; COLUMNS.len()];
    let mut used = 0u16;
    for i in order {
        let need = COLUMNS[i].width + u16::from(used > 0);
        if used + need <= width {
            used += need;
            chosen[i] = true;
        }
    }
    COLUMNS
        .iter()
        .zip(chosen)
        .filter(|(_, keep)| *keep)
        .map(|(c, _)| c)
        .collect()
}

fn marker(t: &TenantView, view: &View) -> Span<'static> {
    let selected = view
        .app
        .selected_tenant(view.snap)
        .is_some_and(|s| s.id == t.id);
    let flagged = t.window.client_bound.is_some() || t.window.saturated.is_some();
    if flagged && !t.paused {
        // The client could not keep this tenant's schedule (its latencies measure this machine),
        // or its target is saturated (they measure the target's backlog).
        let text = if selected { "▶⚠" } else { " ⚠" };
        return Span::styled(text, view.theme.warn);
    }
    match (selected, t.paused) {
        (true, true) => Span::raw("▶⏸"),
        (true, false) => Span::raw("▶"),
        (false, true) => Span::raw(" ⏸"),
        (false, false) => Span::raw(""),
    }
}

/// A window percentile, in the warning style while the client is the bottleneck for the tenant,
/// or "–" when the window has no successful request to take it from (a histogram without samples
/// reads 0, which would pass for a very fast server).
fn latency(t: &TenantView, view: &View, figure: f64) -> Span<'static> {
    if t.window.achieved_per_s <= 0.0 {
        return Span::styled("–", view.theme.dim);
    }
    let text = format::ms(figure);
    if t.window.client_bound.is_some() && !t.paused {
        Span::styled(text, view.theme.warn)
    } else {
        Span::raw(text)
    }
}

fn model(t: &TenantView, _: &View) -> Span<'static> {
    Span::raw(format::truncate(&t.model, 16))
}

fn instances(t: &TenantView, _: &View) -> Span<'static> {
    Span::raw(t.instances.map_or("?".to_string(), |n| n.to_string()))
}

fn batching(t: &TenantView, _: &View) -> Span<'static> {
    let dynamic = match (&t.dynamic_batching, t.max_batch) {
        (Some(_), Some(m)) => format!("dyn≤{m}"),
        (Some(_), None) => "dyn".to_string(),
        (None, _) => "–".to_string(),
    };
    Span::raw(format!("b{} {dynamic}", t.batch))
}

fn target(t: &TenantView, view: &View) -> Span<'static> {
    match view.app.effective_load(t) {
        Load::Rate { per_s, .. } => Span::raw(format::rate(per_s)),
        Load::Concurrency(n) => Span::raw(format!("c={n}")),
    }
}

fn arrival(t: &TenantView, _: &View) -> Span<'static> {
    match &t.load {
        Load::Rate { arrival, .. } => Span::raw(arrival.label()),
        Load::Concurrency(_) => Span::raw("closed"),
    }
}

fn achieved(t: &TenantView, view: &View) -> Span<'static> {
    let text = format::rate(t.window.achieved_per_s);
    // Falling well short of the offered rate is the first sign of overload.
    let short =
        t.window.offered_per_s > 0.0 && t.window.achieved_per_s < 0.95 * t.window.offered_per_s;
    if short && !t.paused {
        Span::styled(text, view.theme.warn)
    } else {
        Span::raw(text)
    }
}

fn sla(t: &TenantView, view: &View) -> Span<'static> {
    let mark = match t.window.sla_met {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "·",
    };
    let verdict = t
        .window
        .sla_met
        .map(|m| if m { Verdict::Ok } else { Verdict::Bad });
    Span::styled(
        format!(
            "{mark} p{}≤{}",
            trim(t.sla.percentile),
            trim_ms(t.sla.latency_ms)
        ),
        view.theme.for_state(verdict),
    )
}

fn attainment(t: &TenantView, view: &View) -> Span<'static> {
    match t.window.attainment {
        None => Span::styled("–", view.theme.dim),
        Some(a) => Span::styled(
            format::percent(a),
            style_for_attainment(view.theme, a, t.sla.percentile),
        ),
    }
}

/// Met when at least the SLA's percentile of requests made it; at risk up to twice the allowed
/// misses; missed beyond.
pub fn attainment_verdict(attained: f64, percentile: f64) -> Verdict {
    let target = percentile / 100.0;
    if attained >= target {
        Verdict::Ok
    } else if attained >= target - (1.0 - target) {
        Verdict::Warn
    } else {
        Verdict::Bad
    }
}

fn style_for_attainment(theme: &Theme, attained: f64, percentile: f64) -> Style {
    theme.for_state(Some(attainment_verdict(attained, percentile)))
}

fn errors(t: &TenantView, view: &View) -> Span<'static> {
    let text = format!("{}/{}", t.window.errors, t.window.dropped);
    if t.window.errors + t.window.dropped > 0 {
        Span::styled(text, view.theme.bad)
    } else {
        Span::raw(text)
    }
}

fn server(
    t: &TenantView,
    figure: fn(&crate::vocab::snapshot::ServerWindow) -> f64,
) -> Span<'static> {
    match &t.server {
        Some(s) => Span::raw(format::us(figure(s))),
        None => Span::raw("–"),
    }
}

fn solo_peak(t: &TenantView, view: &View) -> Span<'static> {
    match (t.solo_peak.per_s, t.solo_peak.kind) {
        (Some(p), PeakKind::Computed) => Span::raw(format!("{} calc", format::rate(p))),
        (Some(p), PeakKind::Measured) => Span::raw(format!("{} meas", format::rate(p))),
        (Some(p), PeakKind::Unknown) => Span::raw(format::rate(p)),
        (None, _) => Span::styled("unknown", view.theme.dim),
    }
}

fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn trim_ms(x: f64) -> String {
    format!("{}ms", trim(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_keep_the_important_columns() {
        let wide: Vec<_> = fit_columns(158).iter().map(|c| c.title).collect();
        assert_eq!(wide.len(), COLUMNS.len(), "{wide:?}");
        let narrow: Vec<_> = fit_columns(78).iter().map(|c| c.title).collect();
        for must in ["model", "target", "achieved", "p99", "attain"] {
            assert!(narrow.contains(&must), "{must} missing from {narrow:?}");
        }
        assert!(!narrow.contains(&"arrival"));
        let used: u16 = fit_columns(78).iter().map(|c| c.width + 1).sum();
        assert!(used <= 79);
    }

    #[test]
    fn offset_keeps_the_selection_visible() {
        assert_eq!(offset(Some(0), 3), 0);
        assert_eq!(offset(Some(2), 3), 0);
        assert_eq!(offset(Some(5), 3), 3);
        assert_eq!(offset(None, 3), 0);
    }

    #[test]
    fn attainment_verdicts() {
        assert_eq!(attainment_verdict(0.96, 95.0), Verdict::Ok);
        assert_eq!(attainment_verdict(0.91, 95.0), Verdict::Warn);
        assert_eq!(attainment_verdict(0.80, 95.0), Verdict::Bad);
    }
}
