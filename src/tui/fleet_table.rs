//! The tenant table of a multi-target run: a header row per target (name, GPU, connection, $/h)
//! above its tenants, with the single-target table's columns.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};

use crate::tui::fleet::{self, TableRow};
use crate::tui::format;
use crate::tui::screen::View;
use crate::tui::tenants::{fit_columns, header_and_widths, offset, rows_area, tenant_row};
use crate::vocab::fleet::{FleetTarget, FleetView};
use crate::vocab::snapshot::{ConnState, Phase, TargetKind};

pub fn render(frame: &mut Frame, area: Rect, view: &View, fleet: &FleetView) {
    let (app, theme) = (view.app, view.theme);
    let columns = fit_columns(area.width.saturating_sub(2));
    let rows = fleet::table_rows(fleet);
    let rows_at = rows_area(area);
    let visible = usize::from(rows_at.height);
    let selected_id = app.selected.or_else(|| {
        let t = fleet.targets.get(fleet::selected_target(fleet, None))?;
        t.snapshot.tenants.first().map(|x| x.id)
    });
    let selected = rows
        .iter()
        .position(|r| fleet::row_tenant(fleet, *r).is_some_and(|id| Some(id) == selected_id));
    let first = offset(selected, visible);
    let shown: Vec<(usize, TableRow)> = rows
        .iter()
        .copied()
        .enumerate()
        .skip(first)
        .take(visible)
        .collect();
    let table_rows: Vec<Row> = shown
        .iter()
        .map(|&(i, row)| {
            let TableRow::Tenant { target, index } = row else {
                return Row::new(Vec::<Cell>::new());
            };
            let Some(t) = fleet
                .targets
                .get(target)
                .and_then(|x| x.snapshot.tenants.get(index))
            else {
                return Row::new(Vec::<Cell>::new());
            };
            tenant_row(t, Some(i) == selected, &columns, view)
        })
        .collect();
    let (header, widths) = header_and_widths(&columns, view);
    let tenants = rows.len() - fleet.targets.len();
    let more = if rows.len() > visible {
        format!(
            ", rows {}–{} shown",
            first + 1,
            (first + visible).min(rows.len())
        )
    } else {
        String::new()
    };
    let title = format!(
        " Tenants ({tenants} on {} targets{more}) · step ±{}/s ",
        fleet.targets.len(),
        app.step()
    );
    let block = Block::bordered()
        .border_style(theme.border)
        .title(Span::styled(title, theme.title));
    let table = Table::new(table_rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block);
    frame.render_widget(table, area);
    for (line, &(_, row)) in shown.iter().enumerate() {
        if let TableRow::Target(t) = row
            && let Some(target) = fleet.targets.get(t)
        {
            let at = Rect {
                y: rows_at.y + line as u16,
                height: 1,
                ..rows_at
            };
            frame.render_widget(Paragraph::new(group_line(target, view)), at);
        }
    }
}

/// A target's header row: its name, GPU, whether it is up, and what it costs.
fn group_line(target: &FleetTarget, view: &View) -> Line<'static> {
    let (snap, theme) = (&target.snapshot, view.theme);
    let gpu = snap
        .target
        .gpu
        .clone()
        .or_else(|| snap.gpu.name.clone())
        .unwrap_or_else(|| "GPU unknown".to_string());
    let place = match snap.target.kind {
        TargetKind::Emulated => format!("emulated {gpu}"),
        TargetKind::Triton => format!("triton {} · {gpu}", snap.target.address),
    };
    let (state, style) = match (snap.phase, snap.connection.state) {
        (Phase::Finished, _) => ("■ finished", theme.dim),
        (_, ConnState::Connected) => ("connected", theme.ok),
        (_, ConnState::Connecting) => ("connecting…", theme.warn),
        (_, ConnState::Disconnected) => ("disconnected", theme.bad),
    };
    let cost = snap.cost.as_ref().map_or("$?/h".to_string(), |c| {
        format!("{}/h", format::usd(c.usd_per_hour))
    });
    let sep = || Span::styled(" · ", theme.border);
    Line::from(vec![
        Span::styled(format!("▪ {}", target.name), theme.title),
        sep(),
        Span::styled(place, theme.text),
        sep(),
        Span::styled(state, style),
        sep(),
        Span::styled(cost, theme.accent),
        sep(),
        Span::styled(
            match snap.tenants.len() {
                1 => "1 tenant".to_string(),
                n => format!("{n} tenants"),
            },
            theme.dim,
        ),
    ])
}
