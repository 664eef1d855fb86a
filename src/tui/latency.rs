//! The latency chart: each shown tenant's p99 over the chart window, with its SLA latency as a
//! dotted line in the same colour, so a line crossing its dots is a tenant in trouble.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph};

use crate::tui::format;
use crate::tui::screen::View;
use crate::tui::series;

/// Dots per SLA line: enough to read as a line, sparse enough to read as dotted.
const SLA_DOTS: usize = 24;

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    let (snap, app, theme) = (view.snap, view.app, view.theme);
    let window = app.chart_window_s();
    let now = snap.elapsed_s;
    let from = now - window;
    let selected = app.selected_index(snap);
    let shown: Vec<usize> = if app.chart_all {
        (0..snap.tenants.len()).collect()
    } else {
        selected.into_iter().collect()
    };
    let which = if app.chart_all {
        "all".to_string()
    } else {
        selected.map_or("none".to_string(), |i| snap.tenants[i].model.clone())
    };
    let title = format!(" p99 latency, ms · {which} · {} ", format::span(window));
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));

    let buckets = usize::from(area.width.saturating_sub(8)) * 2;
    let mut lines: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    let mut top: f64 = 0.0;
    let mut tightest_sla = f64::INFINITY;
    for &i in &shown {
        let t = &snap.tenants[i];
        tightest_sla = tightest_sla.min(t.sla.latency_ms);
        if let Some(h) = snap.history.tenants.get(&t.id) {
            let pts = series::window_points(&h.p99_ms, from, now, buckets);
            top = pts.iter().fold(top, |m, p| m.max(p.1));
            lines.push((i, pts));
        }
    }
    if lines.iter().all(|(_, p)| p.is_empty()) {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled("no data yet", theme.dim)),
            inner,
        );
        return;
    }
    // Scale to the data, stretched just enough to show the tightest SLA: scaling to the loosest
    // would flatten every line against the axis.
    if tightest_sla.is_finite() {
        top = top.max(tightest_sla);
    }
    let top = nice_ceiling(top * 1.05);
    let sla_lines: Vec<(usize, Vec<(f64, f64)>)> = shown
        .iter()
        .map(|&i| {
            let sla = snap.tenants[i].sla.latency_ms;
            let pts = (0..SLA_DOTS)
                .map(|k| (from + window * k as f64 / (SLA_DOTS - 1) as f64, sla))
                .collect();
            (i, pts)
        })
        .collect();

    let mut datasets = Vec::new();
    for (i, pts) in &sla_lines {
        datasets.push(
            Dataset::default()
                .marker(Marker::Dot)
                .graph_type(GraphType::Scatter)
                .style(theme.series(*i))
                .data(pts),
        );
    }
    for (i, pts) in &lines {
        let t = &snap.tenants[*i];
        datasets.push(
            Dataset::default()
                .name(format::truncate(&t.model, 14))
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.series(*i))
                .data(pts),
        );
    }
    let x_labels = vec![
        Span::styled(format!("-{}", format::span(window)), theme.dim),
        Span::styled("now", theme.dim),
    ];
    let y_labels = vec![
        Span::styled("0", theme.dim),
        Span::styled(format!("{:.0}", top / 2.0), theme.dim),
        Span::styled(format!("{top:.0}"), theme.dim),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .legend_position(Some(LegendPosition::TopLeft))
        .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(2, 3)))
        .x_axis(
            Axis::default()
                .style(theme.border)
                .bounds([from, now])
                .labels(x_labels),
        )
        .y_axis(
            Axis::default()
                .style(theme.border)
                .bounds([0.0, top])
                .labels(y_labels),
        );
    frame.render_widget(chart, area);
}

/// A round axis top at or above `x` (1, 2, 5 × a power of ten) so labels are readable.
pub fn nice_ceiling(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * magnitude >= x {
            return m * magnitude;
        }
    }
    10.0 * magnitude
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_1_2_5() {
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(110.0), 200.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(50.0), 50.0);
    }
}
