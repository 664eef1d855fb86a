//! The co-location frontier. For two tenants: each one's dedicated (solo) peak on its axis, the
//! straight line between them that time-slicing one GPU can at best reach, and the operating point
//! with its recent trail; a point beyond the line is co-location doing better than time-slicing.
//! The capacity point sits on the ray through the operating point, where the mix meets its SLAs at
//! the most: the verdict is read there, since below it the equivalents only measure the load. For
//! any other number of tenants the load as dedicated equivalents over time (Σ achieved / solo
//! peak), with the verdict at capacity in the title.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};

use crate::tui::format;
use crate::tui::latency::nice_ceiling;
use crate::tui::screen::View;
use crate::tui::series;
use crate::vocab::capacity::CapacityState;
use crate::vocab::snapshot::FrontierView;

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    match &view.snap.frontier {
        Some(f) if f.x.2 > 0.0 && f.y.2 > 0.0 => two_tenants(frame, area, view, f),
        _ => equivalents(frame, area, view),
    }
}

fn two_tenants(frame: &mut Frame, area: Rect, view: &View, f: &FrontierView) {
    let (snap, theme) = (view.snap, view.theme);
    let (xpeak, ypeak) = (f.x.2, f.y.2);
    let verdict = capacity_title(view);
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(" Frontier ", theme.title))
        .title(verdict);

    let trail_len = (view.app.chart_window_s() / snap.tick_s.max(0.01)).ceil() as usize;
    let trail: Vec<(f64, f64)> = {
        let s = &snap.history.frontier_trail;
        let skip = s.len().saturating_sub(trail_len);
        s.iter().skip(skip).collect()
    };
    let cap = f.capacity_point;
    let (cx, cy) = cap.unwrap_or((0.0, 0.0));
    let xmax = nice_ceiling(
        trail
            .iter()
            .fold(xpeak.max(f.point.0).max(cx), |m, p| m.max(p.0))
            * 1.15,
    );
    let ymax = nice_ceiling(
        trail
            .iter()
            .fold(ypeak.max(f.point.1).max(cy), |m, p| m.max(p.1))
            * 1.15,
    );
    let line = [(xpeak, 0.0), (0.0, ypeak)];
    let point = [f.point];
    // The ray from the origin through the operating point, out to the capacity point on it.
    let ray: Vec<(f64, f64)> = cap.map_or_else(Vec::new, |c| ray_points(c, 24));
    let capacity: Vec<(f64, f64)> = cap.into_iter().collect();

    let datasets = vec![
        dataset(
            Some("time-slicing"),
            Marker::Braille,
            GraphType::Line,
            theme.sla,
            &line,
        ),
        dataset(None, Marker::Braille, GraphType::Scatter, theme.dim, &trail),
        dataset(
            Some("dedicated peaks"),
            Marker::Dot,
            GraphType::Scatter,
            theme.accent,
            &line,
        ),
        dataset(None, Marker::Braille, GraphType::Scatter, theme.dim, &ray),
        dataset(
            Some("capacity"),
            Marker::Block,
            GraphType::Scatter,
            theme.ok,
            &capacity,
        ),
        dataset(
            Some("now"),
            Marker::Block,
            GraphType::Scatter,
            theme.title,
            &point,
        ),
    ];
    let x_title = format!(
        "{} req/s (solo {})",
        format::truncate(&f.x.1, 14),
        format::rate(xpeak)
    );
    let y_title = format!(
        "{} (solo {})",
        format::truncate(&f.y.1, 14),
        format::rate(ypeak)
    );
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .title(Span::styled(x_title, theme.dim))
                .style(theme.border)
                .bounds([0.0, xmax])
                .labels(vec![
                    Span::styled("0", theme.dim),
                    Span::styled(format!("{xmax:.0}"), theme.dim),
                ]),
        )
        .y_axis(
            Axis::default()
                .title(Span::styled(y_title, theme.dim))
                .style(theme.border)
                .bounds([0.0, ymax])
                .labels(vec![
                    Span::styled("0", theme.dim),
                    Span::styled(format!("{ymax:.0}"), theme.dim),
                ]),
        );
    frame.render_widget(chart, area);
}

/// Evenly spaced points from the origin to `to` (a scatter, since a chart line would be drawn
/// beneath the markers it joins).
fn ray_points(to: (f64, f64), n: usize) -> Vec<(f64, f64)> {
    (1..n)
        .map(|i| {
            let s = i as f64 / n as f64;
            (to.0 * s, to.1 * s)
        })
        .collect()
}

/// The panel's verdict, taken at capacity: equivalents there and the headroom to reach them.
fn capacity_title(view: &View) -> Span<'static> {
    let theme = view.theme;
    match view.snap.capacity.as_ref().map(|c| &c.state) {
        Some(CapacityState::Known(f)) => {
            let k = f.prediction.headroom;
            match f.equivalents {
                Some(eq) => Span::styled(
                    format!(" at capacity {eq:.2}× (headroom ×{k:.1}) "),
                    if eq >= 1.0 { theme.ok } else { theme.warn },
                ),
                None => Span::styled(format!(" headroom ×{k:.1} "), theme.dim),
            }
        }
        Some(CapacityState::Computing) => Span::styled(" capacity: computing… ", theme.dim),
        Some(CapacityState::Unknown { .. }) => Span::styled(" capacity unknown ", theme.dim),
        None => Span::raw(""),
    }
}

fn equivalents(frame: &mut Frame, area: Rect, view: &View) {
    let (snap, theme) = (view.snap, view.theme);
    let current = snap.cost.as_ref().and_then(|c| c.dedicated_equivalents);
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(" Load: dedicated equivalents ", theme.title))
        .title(capacity_title(view));
    let window = view.app.chart_window_s();
    let now = snap.elapsed_s;
    let from = now - window;
    let pts = series::window_points(
        &snap.history.dedicated_equivalents,
        from,
        now,
        usize::from(area.width.saturating_sub(8)) * 2,
    );
    if pts.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let why = if current.is_none() {
            "no data (a tenant's solo peak is unknown)"
        } else {
            "no data yet"
        };
        frame.render_widget(Paragraph::new(Span::styled(why, theme.dim)), inner);
        return;
    }
    let top = nice_ceiling(pts.iter().fold(1.0_f64, |m, p| m.max(p.1)) * 1.15);
    let one = [(from, 1.0), (now, 1.0)];
    let datasets = vec![
        dataset(
            Some("time-slicing"),
            Marker::Braille,
            GraphType::Line,
            theme.sla,
            &one,
        ),
        dataset(
            Some("equivalents"),
            Marker::Braille,
            GraphType::Line,
            theme.accent,
            &pts,
        ),
    ];
    let chart = Chart::new(datasets)
        .block(block)
        .x_axis(
            Axis::default()
                .style(theme.border)
                .bounds([from, now])
                .labels(vec![
                    Span::styled(format!("-{}", format::span(window)), theme.dim),
                    Span::styled("now", theme.dim),
                ]),
        )
        .y_axis(
            Axis::default()
                .style(theme.border)
                .bounds([0.0, top])
                .labels(vec![
                    Span::styled("0", theme.dim),
                    Span::styled(format!("{top:.1}"), theme.dim),
                ]),
        );
    frame.render_widget(chart, area);
}

/// One series of a chart; unnamed ones stay out of the legend.
fn dataset<'a>(
    name: Option<&'static str>,
    marker: Marker,
    kind: GraphType,
    style: ratatui::style::Style,
    data: &'a [(f64, f64)],
) -> Dataset<'a> {
    let d = Dataset::default()
        .marker(marker)
        .graph_type(kind)
        .style(style)
        .data(data);
    match name {
        Some(n) => d.name(n),
        None => d,
    }
}
