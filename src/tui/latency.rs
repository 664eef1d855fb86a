//! The latency chart: each shown tenant's p99 over the chart window, with its SLA latency as a
//! dashed line in the same colour, so a line crossing its dashes is a tenant in trouble.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::canvas::{Canvas, Line as CanvasLine, Points};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use crate::tui::format;
use crate::tui::screen::View;
use crate::tui::series;

/// Dashes per SLA line: enough to read as a line, few enough to tell it from a tenant's line.
const SLA_DASHES: usize = 24;

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
    let inner = block.inner(area);
    frame.render_widget(block, area);
    plot(frame, inner, view, &shown, &lines, (from, now, top));
}

/// Axes, labels, the lines and SLA dots, and a legend. Drawn on one canvas layer rather than with
/// `Chart`, which gives every dataset (two per tenant) its own full grid: with eight tenants that
/// was most of a frame's time.
fn plot(
    frame: &mut Frame,
    inner: Rect,
    view: &View,
    shown: &[usize],
    lines: &[(usize, Vec<(f64, f64)>)],
    (from, now, top): (f64, f64, f64),
) {
    let (snap, theme) = (view.snap, view.theme);
    let y_labels = [
        format!("{top:.0}"),
        format!("{:.0}", top / 2.0),
        "0".to_string(),
    ];
    let label_w = y_labels.iter().map(String::len).max().unwrap_or(1) as u16;
    if inner.width <= label_w + 4 || inner.height < 4 {
        return;
    }
    let [left, plot_area] =
        Layout::horizontal([Constraint::Length(label_w), Constraint::Fill(1)]).areas(inner);
    let [plot_area, x_labels] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(1)]).areas(plot_area);
    let axes = Block::new()
        .borders(Borders::LEFT | Borders::BOTTOM)
        .border_style(theme.border);
    let canvas_area = axes.inner(plot_area);
    frame.render_widget(axes, plot_area);

    let buf = frame.buffer_mut();
    let rows = [
        canvas_area.y,
        canvas_area.y + canvas_area.height / 2,
        canvas_area.bottom().saturating_sub(1),
    ];
    for (label, y) in y_labels.iter().zip(rows) {
        buf.set_stringn(
            left.x,
            y,
            format!("{label:>w$}", w = usize::from(label_w)),
            usize::from(label_w),
            theme.dim,
        );
    }
    let window = now - from;
    buf.set_stringn(
        x_labels.x,
        x_labels.y,
        format!("-{}", format::span(window)),
        usize::from(x_labels.width),
        theme.dim,
    );
    let right = x_labels.right().saturating_sub(3);
    buf.set_stringn(right, x_labels.y, "now", 3, theme.dim);

    let sla_dots: Vec<(usize, f64)> = shown
        .iter()
        .map(|&i| (i, snap.tenants[i].sla.latency_ms))
        .collect();
    let canvas = Canvas::default()
        .x_bounds([from, now])
        .y_bounds([0.0, top])
        .marker(Marker::Braille)
        .paint(|ctx| {
            // Dashes rather than single dots: a lone braille dot is too faint to read as a line.
            let dash = window / SLA_DASHES as f64;
            for &(i, sla) in &sla_dots {
                let color = theme.series(i).fg.unwrap_or(Color::Reset);
                for k in 0..SLA_DASHES {
                    let x1 = from + dash * k as f64;
                    ctx.draw(&CanvasLine {
                        x1,
                        y1: sla,
                        x2: x1 + dash * 0.45,
                        y2: sla,
                        color,
                    });
                }
            }
            for (i, pts) in lines {
                let color = theme.series(*i).fg.unwrap_or(Color::Reset);
                for w in pts.windows(2) {
                    ctx.draw(&CanvasLine {
                        x1: w[0].0,
                        y1: w[0].1,
                        x2: w[1].0,
                        y2: w[1].1,
                        color,
                    });
                }
                if let [only] = pts.as_slice() {
                    ctx.draw(&Points {
                        coords: &[*only],
                        color,
                    });
                }
            }
        });
    frame.render_widget(canvas, canvas_area);
    legend(frame, canvas_area, view, lines);
}

/// Tenant names in their colours, top left, when there is room for them beside the lines.
fn legend(frame: &mut Frame, area: Rect, view: &View, lines: &[(usize, Vec<(f64, f64)>)]) {
    let names: Vec<(usize, String)> = lines
        .iter()
        .map(|(i, _)| (*i, format::truncate(&view.snap.tenants[*i].model, 14)))
        .collect();
    let width = names
        .iter()
        .map(|(_, n)| n.chars().count())
        .max()
        .unwrap_or(0) as u16
        + 2;
    let height = names.len() as u16;
    if names.is_empty() || width > area.width / 2 || height > area.height * 2 / 3 {
        return;
    }
    let rect = Rect {
        x: area.x + 1,
        y: area.y,
        width,
        height,
    };
    let text: Vec<Line> = names
        .into_iter()
        .map(|(i, n)| {
            Line::from(vec![
                Span::styled("━ ", view.theme.series(i)),
                Span::styled(n, view.theme.series(i)),
            ])
        })
        .collect();
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text), rect);
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
