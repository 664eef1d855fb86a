//! The cost panel: what the shared GPU costs per hour and per million inferences, what the same
//! load would cost on dedicated GPUs, and how co-location compares with time-slicing.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use crate::tui::format;
use crate::tui::screen::View;

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
    let mut dedicated = vec![Span::styled("dedicated: ", theme.dim)];
    match (
        cost.dedicated_instances,
        cost.dedicated_usd_per_hour,
        cost.dedicated_equivalents,
    ) {
        (Some(n), Some(usd), eq) => {
            dedicated.push(Span::styled(
                format!(
                    "{n} GPU{} {}/h",
                    if n == 1 { "" } else { "s" },
                    format::usd(usd)
                ),
                theme.text,
            ));
            if let Some(eq) = eq {
                dedicated.push(Span::styled(format!(" ({eq:.2} equivalents)"), theme.dim));
            }
        }
        _ => dedicated.push(Span::styled("unknown (a solo peak is unknown)", theme.dim)),
    }
    lines.push(Line::from(dedicated));
    lines.push(Line::from(vec![
        Span::styled("saves ", theme.dim),
        savings(cost.savings_vs_dedicated_pct, view),
        Span::styled(" vs dedicated · ", theme.dim),
        savings(cost.savings_vs_timeslicing_pct, view),
        Span::styled(" vs time-slicing", theme.dim),
    ]));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn savings(pct: Option<f64>, view: &View) -> Span<'static> {
    let theme = view.theme;
    match pct {
        None => Span::styled("n/a", theme.dim),
        Some(p) if p >= 0.0 => Span::styled(format!("{p:.0}%"), theme.ok),
        Some(p) => Span::styled(format!("{p:.0}%"), theme.bad),
    }
}
