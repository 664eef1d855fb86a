//! The cost panel: what the shared GPU costs per hour and per million inferences, and — at the
//! mix's capacity, where the comparison means something — what dedicated GPUs and time-slicing
//! would cost for the same load.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use crate::tui::format;
use crate::tui::screen::View;
use crate::vocab::capacity::CapacityState;

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    let theme = view.theme;
    let Some(cost) = &view.snap.cost else {
        let block = Block::bordered()
            .border_style(theme.border)
            .title(Span::styled(" Cost ", theme.title));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no data (no price for this target)",
                theme.dim,
            )),
            inner,
        );
        return;
    };
    let instance = cost.instance.as_deref().unwrap_or("literal price");
    let title = format!(" Cost · {instance} {}/h ", format::usd(cost.usd_per_hour));
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    let na = || Span::styled("n/a", theme.dim);
    let per_million = |v: Option<f64>| {
        v.map_or_else(na, |v| {
            Span::styled(format!("{} per 1M", format::usd(v)), theme.text)
        })
    };

    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{:.0} inf/s", cost.throughput_per_s), theme.text),
            Span::styled(" · ", theme.dim),
            per_million(cost.usd_per_million),
            Span::styled(" · monthly ", theme.dim),
            Span::styled(format::usd(cost.monthly_usd), theme.text),
        ]),
        Line::from(vec![
            Span::styled(format!("goodput {:.0}/s", cost.goodput_per_s), theme.text),
            Span::styled(" · ", theme.dim),
            per_million(cost.goodput_usd_per_million),
        ]),
    ];
    lines.extend(capacity_lines(view));
    // Narrow panels wrap rather than cut the capacity lines mid-figure.
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

/// The capacity lines: headroom, equivalents and savings at capacity, the only place they mean
/// something, or why there are none.
fn capacity_lines(view: &View) -> Vec<Line<'static>> {
    let theme = view.theme;
    let state = view.snap.capacity.as_ref().map(|c| &c.state);
    let f = match state {
        Some(CapacityState::Known(f)) => f,
        Some(CapacityState::Unknown { reason }) => {
            return vec![Line::from(Span::styled(
                format!("capacity unknown: {reason}"),
                theme.dim,
            ))];
        }
        Some(CapacityState::Computing) => {
            return vec![Line::from(Span::styled("capacity: computing…", theme.dim))];
        }
        None => return Vec::new(),
    };
    let k = f.prediction.headroom;
    let mut first = vec![
        Span::styled("headroom ", theme.dim),
        Span::styled(
            format!("×{k:.1}"),
            if k >= 1.0 { theme.ok } else { theme.bad },
        ),
    ];
    match f.equivalents {
        Some(eq) => {
            first.push(Span::styled(" · at capacity ", theme.dim));
            first.push(Span::styled(format!("{eq:.2} equivalents"), theme.text));
            if let Some(s) = f.savings_vs_timeslicing_pct {
                first.push(Span::styled(" → ", theme.dim));
                first.push(savings(s, view));
                first.push(Span::styled(" than time-slicing", theme.dim));
            }
        }
        None => first.push(Span::styled(
            " · equivalents unknown (a solo peak)",
            theme.dim,
        )),
    }
    let mut second = vec![Span::styled("at capacity: ", theme.dim)];
    match (
        f.dedicated_instances,
        f.dedicated_usd_per_hour,
        f.savings_vs_dedicated_pct,
    ) {
        (Some(n), Some(usd), Some(s)) => {
            second.push(Span::styled(
                format!(
                    "{n} dedicated GPU{} {}/h → ",
                    if n == 1 { "" } else { "s" },
                    format::usd(usd)
                ),
                theme.text,
            ));
            second.push(savings(s, view));
        }
        _ => second.push(Span::styled("dedicated unknown", theme.dim)),
    }
    let model = match &f.prediction.profile {
        Some(p) => format!(" ({} {p} model)", f.prediction.gpu),
        None => format!(" ({} model)", f.prediction.gpu),
    };
    second.push(Span::styled(model, theme.dim));
    vec![Line::from(first), Line::from(second)]
}

/// "11% cheaper" in the good style, "4% dearer" in the bad one.
fn savings(pct: f64, view: &View) -> Span<'static> {
    let theme = view.theme;
    if pct >= 0.0 {
        Span::styled(format!("{pct:.0}% cheaper"), theme.ok)
    } else {
        Span::styled(format!("{:.0}% dearer", -pct), theme.bad)
    }
}
