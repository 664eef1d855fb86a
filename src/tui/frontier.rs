//! The co-location frontier. For two tenants: each one's dedicated (solo) peak on its axis, the
//! straight line between them that time-slicing one GPU can at best reach, and the operating point
//! with its recent trail; a point beyond the line is co-location doing better than time-slicing.
//! For any other number of tenants the same idea as one number over time: dedicated equivalents
//! (Σ achieved / solo peak), where 1.0 is what time-slicing gives.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::Span;
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};

use crate::tui::format;
use crate::tui::latency::nice_ceiling;
use crate::tui::screen::View;
use crate::tui::series;
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
    let eq = f.point.0 / xpeak + f.point.1 / ypeak;
    let verdict = if eq >= 1.0 {
        Span::styled(
            format!(
                " {eq:.2}× — beats time-slicing by {:.0}% ",
                (eq - 1.0) * 100.0
            ),
            theme.ok,
        )
    } else {
        Span::styled(
            format!(
                " {eq:.2}× — below time-slicing by {:.0}% ",
                (1.0 - eq) * 100.0
            ),
            theme.warn,
        )
    };
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
    let xmax = nice_ceiling(trail.iter().fold(xpeak.max(f.point.0), |m, p| m.max(p.0)) * 1.15);
    let ymax = nice_ceiling(trail.iter().fold(ypeak.max(f.point.1), |m, p| m.max(p.1)) * 1.15);
    let line = [(xpeak, 0.0), (0.0, ypeak)];
    let point = [f.point];

    let datasets = vec![
        Dataset::default()
            .name("time-slicing")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.sla)
            .data(&line),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Scatter)
            .style(theme.dim)
            .data(&trail),
        Dataset::default()
            .name("dedicated peaks")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(theme.accent)
            .data(&line),
        Dataset::default()
            .name("now")
            .marker(Marker::Block)
            .graph_type(GraphType::Scatter)
            .style(theme.title)
            .data(&point),
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

fn equivalents(frame: &mut Frame, area: Rect, view: &View) {
    let (snap, theme) = (view.snap, view.theme);
    let current = snap.cost.as_ref().and_then(|c| c.dedicated_equivalents);
    let mut block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(
            " Frontier: dedicated equivalents ",
            theme.title,
        ));
    if let Some(eq) = current {
        let style = if eq >= 1.0 { theme.ok } else { theme.warn };
        block = block.title(Span::styled(
            format!(" {eq:.2}× (time-slicing: 1.00×) "),
            style,
        ));
    }
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
        Dataset::default()
            .name("time-slicing")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.sla)
            .data(&one),
        Dataset::default()
            .name("equivalents")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.accent)
            .data(&pts),
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
