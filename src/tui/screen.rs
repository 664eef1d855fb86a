//! The whole screen: lays out the panels and draws the open dialog on top.
//!
//! ```text
//! ┌──────────────────────────────────────────────────────────────────────────────┐
//! │ header: target · GPU · session · state · elapsed · connection · rec · replay │ 1 line
//! ├ Tenants ─────────────────────────────────────────────────────────────────────┤
//! │ ▶ model  inst  batching  target  achieved  p50 p95 p99  SLA  attain  errs …  │ tenants + 3
//! ├ GPU ───────────────────────────┬ p99 latency ────────────────────────────────┤
//! │ util / SM gauges + sparklines  │ per-tenant p99 over the chart window,       │ 3 parts
//! │ memory bar, shares, power, …   │ dashed SLA lines                            │
//! ├ Cost ──────────────────────────┼ Frontier ───────────────────────────────────┤
//! │ $/h, $/1M, goodput, savings    │ two tenants: peaks, line, point, trail;     │ 2 parts
//! │                                │ more: dedicated equivalents over time       │ (dropped < 28 rows)
//! │                                │ (the what-if panel instead, while staging)  │
//! ├──────────────────────────────────────────────────────────────────────────────┤
//! │ latest notice                                                                │ 1 line
//! │ footer from the keymap (or the rate prompt)                                  │ 1 line
//! └──────────────────────────────────────────────────────────────────────────────┘
//! ```
//! Below 28 rows the frontier goes and cost takes the bottom row; below 80×24 only a message.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph};

use crate::tui::app::App;
use crate::tui::keymap::Keymap;
use crate::tui::theme::Theme;
use crate::tui::{cost, footer, frontier, gpu, header, latency, overlay, tenants, whatif};
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::Snapshot;

pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Everything a panel may read while drawing one frame.
pub struct View<'a> {
    /// The snapshot the panels draw: in a multi-target run, the selected tenant's target's.
    pub snap: &'a Snapshot,
    /// The whole fleet in a multi-target run, for the tenant table and the header.
    pub fleet: Option<&'a FleetView>,
    pub app: &'a App,
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
}

/// Where each panel goes for a terminal size; shared by drawing and mouse hit-testing so a click
/// lands on the row that was drawn there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLayout {
    pub header: Rect,
    pub tenants: Rect,
    pub gpu: Rect,
    pub latency: Rect,
    pub cost: Rect,
    pub frontier: Option<Rect>,
    pub notice: Rect,
    pub footer: Rect,
}

impl ScreenLayout {
    /// `None` when the terminal is too small to draw anything useful.
    pub fn new(area: Rect, tenant_count: usize) -> Option<ScreenLayout> {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            return None;
        }
        let max_rows = match area.height {
            40.. => 10,
            28..40 => 5,
            _ => 3,
        };
        let rows = tenant_count.clamp(1, max_rows) as u16;
        let with_frontier = area.height >= 28;
        let [header, tenants, middle, bottom, notice, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(rows + 3),
            Constraint::Fill(3),
            if with_frontier {
                Constraint::Fill(2)
            } else {
                Constraint::Length(6)
            },
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let split = if area.width >= 120 {
            [Constraint::Percentage(38), Constraint::Fill(1)]
        } else {
            [Constraint::Percentage(50), Constraint::Fill(1)]
        };
        let [gpu, latency] = Layout::horizontal(split).areas(middle);
        let (cost, frontier) = if with_frontier {
            let [c, f] = Layout::horizontal(split).areas(bottom);
            (c, Some(f))
        } else {
            (bottom, None)
        };
        Some(ScreenLayout {
            header,
            tenants,
            gpu,
            latency,
            cost,
            frontier,
            notice,
            footer,
        })
    }
}

/// Rows the tenant table needs: one per tenant, and in a fleet one more per target.
pub fn table_len(view: &View) -> usize {
    match view.fleet {
        Some(fleet) => crate::tui::fleet::table_rows(fleet).len(),
        None => view.snap.tenants.len(),
    }
}

pub fn draw(frame: &mut Frame, view: &View) {
    let area = frame.area();
    let Some(layout) = ScreenLayout::new(area, table_len(view)) else {
        too_small(frame, area, view.theme);
        return;
    };
    header::render(frame, layout.header, view);
    tenants::render(frame, layout.tenants, view);
    gpu::render(frame, layout.gpu, view);
    latency::render(frame, layout.latency, view);
    match (&view.app.staged, layout.frontier) {
        (Some(staged), Some(f)) => {
            cost::render(frame, layout.cost, view);
            whatif::render(frame, f, view, staged);
        }
        (Some(staged), None) => whatif::render(frame, layout.cost, view, staged),
        (None, f) => {
            cost::render(frame, layout.cost, view);
            if let Some(f) = f {
                frontier::render(frame, f, view);
            }
        }
    }
    if view.fleet.is_some() {
        let panels = [
            Some(layout.gpu),
            Some(layout.latency),
            Some(layout.cost),
            layout.frontier,
        ];
        for panel in panels.into_iter().flatten() {
            tag_target(frame, panel, view);
        }
    }
    footer::render_notice(frame, layout.notice, view);
    footer::render(frame, layout.footer, view);
    overlay::render(frame, area, view);
}

/// Names the target a panel shows on its top border, right-aligned, so that in a fleet no panel
/// can be read as another target's (the panels themselves stay single-target).
fn tag_target(frame: &mut Frame, area: Rect, view: &View) {
    let Some(fleet) = view.fleet else { return };
    let i = crate::tui::fleet::selected_target(fleet, view.app.selected);
    let Some(target) = fleet.targets.get(i) else {
        return;
    };
    let inside = Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(2),
        height: area.height.min(1),
        ..area
    };
    let tag = Line::styled(format!(" on {} ", target.name), view.theme.accent).right_aligned();
    frame.render_widget(Block::new().title_top(tag), inside);
}

fn too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let text = vec![
        Line::styled(
            format!("terminal too small (need {MIN_WIDTH}×{MIN_HEIGHT})"),
            theme.warn,
        ),
        Line::styled(
            format!("now {}×{}; q quits", area.width, area.height),
            theme.dim,
        ),
    ];
    let y = area.height.saturating_sub(2) / 2;
    let centre = Rect {
        y: area.y + y,
        height: area.height.saturating_sub(y).min(2),
        ..area
    };
    frame.render_widget(Paragraph::new(text).centered(), centre);
}
