//! The what-if panel: the staged setup beside the live one, with the GPU model's prediction for
//! it (p95 at the SLA percentile, attainment, capacity). It takes the frontier's place while a
//! staging is open, since the frontier describes the live setup only.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use crate::tui::format;
use crate::tui::screen::View;
use crate::vocab::capacity::{CapacityEstimate, CapacityState, TenantPrediction};
use crate::vocab::command::StagedSetup;
use crate::vocab::spec::Load;

pub fn render(frame: &mut Frame, area: Rect, view: &View, staged: &StagedSetup) {
    let theme = view.theme;
    let block = Block::bordered()
        .border_style(theme.accent)
        .title(Span::styled(" What-if: staged, not applied ", theme.title))
        .title(Span::styled(
            format!(
                " {} applies · {} discards ",
                view.keymap.label(crate::tui::keymap::Action::ApplyStaged),
                view.keymap.label(crate::tui::keymap::Action::StageWhatIf)
            ),
            theme.dim,
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // A prediction for an earlier staging would describe other edits: shown only when it matches.
    let estimate = view
        .snap
        .whatif
        .as_ref()
        .filter(|w| w.stage == staged.stage)
        .and_then(|w| w.estimate.as_ref());
    let predictions: &[TenantPrediction] = match estimate {
        Some(CapacityEstimate::Known(p)) => &p.tenants,
        _ => &[],
    };
    let rate = |l: &Load| match l {
        Load::Rate { per_s, .. } => format::rate(*per_s),
        Load::Concurrency(n) => format!("c{n}"),
    };
    let mut rows: Vec<Row> = Vec::new();
    for (i, (id, spec)) in staged.tenants.iter().enumerate() {
        let live = id.and_then(|id| view.snap.tenants.iter().find(|t| t.id == id));
        let was = live.map_or_else(|| "new".to_string(), |t| rate(&t.load));
        let p = predictions.get(i).map(|p| p.now);
        let cell = |text: String, ok: Option<bool>| match ok {
            Some(true) => Span::styled(text, theme.ok),
            Some(false) => Span::styled(text, theme.bad),
            None => Span::styled(text, theme.text),
        };
        rows.push(Row::new(vec![
            Span::styled(format::truncate(&spec.model, 14), theme.text),
            Span::styled(format!("{was} → {}", rate(&spec.load)), theme.text),
            Span::styled(
                spec.instances.map_or("–".to_string(), |n| n.to_string()),
                theme.text,
            ),
            Span::styled(
                if spec.dynamic_batching.is_some() {
                    "dyn"
                } else {
                    "–"
                },
                theme.text,
            ),
            p.map_or_else(
                || Span::styled("…", theme.dim),
                |p| cell(format!("{:.1}ms", p.latency_ms), Some(p.meets_sla)),
            ),
            p.map_or_else(
                || Span::styled("…", theme.dim),
                |p| cell(format!("{:.1}%", p.attainment * 100.0), None),
            ),
        ]));
    }
    for t in &view.snap.tenants {
        if !staged.tenants.iter().any(|(id, _)| *id == Some(t.id)) {
            rows.push(Row::new(vec![
                Span::styled(format::truncate(&t.model, 14), theme.dim),
                Span::styled(format!("{} → removed", rate(&t.load)), theme.dim),
            ]));
        }
    }
    let header = Row::new(["model", "rate", "inst", "batch", "p(SLA)", "attain"]).style(theme.dim);
    let widths = [
        Constraint::Length(14),
        Constraint::Length(18),
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(7),
    ];
    let table_height = inner.height.saturating_sub(1);
    let table = Table::new(rows, widths).header(header);
    frame.render_widget(
        table,
        Rect {
            height: table_height,
            ..inner
        },
    );
    let line = Line::from(capacity_comparison(view, estimate));
    frame.render_widget(
        Paragraph::new(line),
        Rect {
            y: inner.y + table_height,
            height: inner.height.min(1),
            ..inner
        },
    );
}

/// "capacity: live ×1.6 · staged ×2.0", or what is missing.
fn capacity_comparison(view: &View, staged: Option<&CapacityEstimate>) -> Vec<Span<'static>> {
    let theme = view.theme;
    let live = match view.snap.capacity.as_ref().map(|c| &c.state) {
        Some(CapacityState::Known(f)) => format!("×{:.1}", f.prediction.headroom),
        Some(CapacityState::Computing) => "computing…".to_string(),
        Some(CapacityState::Unknown { .. }) | None => "unknown".to_string(),
    };
    let staged = match staged {
        Some(CapacityEstimate::Known(p)) => {
            let style = if p.headroom >= 1.0 {
                theme.ok
            } else {
                theme.bad
            };
            Span::styled(format!("×{:.1}", p.headroom), style)
        }
        Some(CapacityEstimate::Unknown { reason }) => {
            Span::styled(format!("unknown: {reason}"), theme.dim)
        }
        None => Span::styled("computing…", theme.dim),
    };
    vec![
        Span::styled("headroom: live ", theme.dim),
        Span::styled(live, theme.text),
        Span::styled(" · staged ", theme.dim),
        staged,
    ]
}
