//! Dialogs drawn over the screen: the help (generated from the keymap table), the model picker and
//! the remove confirmation.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Row, Table};

use crate::tui::app::Mode;
use crate::tui::format;
use crate::tui::keymap::{Entry, Scope, TABLE};
use crate::tui::screen::View;

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    match &view.app.mode {
        Mode::Help => help(frame, area, view),
        Mode::Picker { index } => picker(frame, area, view, *index),
        Mode::ConfirmRemove { model, .. } => confirm(frame, area, view, model),
        Mode::Normal | Mode::TypingRate { .. } => {}
    }
}

fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [v] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [h] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(v);
    h
}

fn help(frame: &mut Frame, area: Rect, view: &View) {
    let (theme, keymap, replay) = (view.theme, view.keymap, view.app.replay);
    let row = |e: &Entry, with_name: bool| {
        let off = matches!(
            (e.scope, replay),
            (Scope::Live, true) | (Scope::Replay, false)
        );
        let style = if off { theme.dim } else { theme.text };
        let mut description = e.description.to_string();
        if off {
            description.push_str(if replay {
                " (live only)"
            } else {
                " (replay only)"
            });
        }
        let mut cells = vec![
            Span::styled(keymap.label(e.action), theme.accent),
            Span::styled(description, style),
        ];
        if with_name {
            cells.push(Span::styled(e.name, theme.dim));
        }
        Row::new(cells)
    };
    let block = Block::bordered()
        .border_style(theme.accent)
        .title(Span::styled(
            " Keys (any key closes; rebind by name in the config file) ",
            theme.title,
        ));
    let one_column = TABLE.len() as u16 + 3;
    if area.height >= one_column {
        // As wide as the longest line needs (key, description with its replay note, config name,
        // spacing and borders), so no description is cut where the terminal has the room.
        let longest = TABLE
            .iter()
            .map(|e| e.description.chars().count() + " (replay only)".len())
            .max()
            .unwrap_or(0) as u16;
        let rect = centred(area, 12 + 2 + longest + 2 + 17 + 2, one_column);
        let table = Table::new(
            TABLE.iter().map(|e| row(e, true)),
            [
                Constraint::Length(12),
                Constraint::Fill(1),
                Constraint::Length(17),
            ],
        )
        .header(Row::new(vec!["key", "does", "config name"]).style(theme.dim))
        .column_spacing(2)
        .block(block);
        frame.render_widget(Clear, rect);
        frame.render_widget(table, rect);
        return;
    }
    // A short terminal gets the table in two halves side by side, without config names, so the
    // last entries (help, quit) are never cut off.
    let half = TABLE.len().div_ceil(2);
    let rect = centred(area, area.width, half as u16 + 2);
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let [left, right] = Layout::horizontal([Constraint::Fill(1), Constraint::Fill(1)])
        .spacing(1)
        .areas(inner);
    for (part, column) in [(&TABLE[..half], left), (&TABLE[half..], right)] {
        let table = Table::new(
            part.iter().map(|e| row(e, false)),
            [Constraint::Length(9), Constraint::Fill(1)],
        );
        frame.render_widget(table, column);
    }
}

fn picker(frame: &mut Frame, area: Rect, view: &View, index: usize) {
    let (snap, theme) = (view.snap, view.theme);
    let free = match (snap.gpu.memory_used_bytes, snap.gpu.memory_total_bytes) {
        (Some(u), Some(t)) => format!("{} GiB free", format::gib((t.value - u.value).max(0.0))),
        _ => "free memory unknown".to_string(),
    };
    let rows: Vec<Row> = snap
        .repository
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let fits = match m.fits {
                Some(true) => Span::styled("fits", theme.ok),
                Some(false) => Span::styled("does not fit", theme.bad),
                None => Span::styled("unknown", theme.dim),
            };
            let state = if m.loaded {
                "loaded".to_string()
            } else if m.state.is_empty() {
                "not loaded".to_string()
            } else {
                m.state.to_lowercase()
            };
            let row = Row::new(vec![
                Span::raw(if i == index { "▶" } else { "" }),
                Span::raw(format::truncate(&m.name, 24)),
                Span::raw(m.memory_bytes.map_or("?".to_string(), format::bytes)),
                fits,
                Span::styled(state, theme.dim),
            ]);
            if i == index {
                row.style(theme.selected)
            } else {
                row.style(theme.text)
            }
        })
        .collect();
    let height = (snap.repository.len() as u16 + 3).min(area.height.saturating_sub(2));
    let rect = centred(area, 72, height);
    // Keep the highlighted model inside the visible rows.
    let visible = usize::from(height.saturating_sub(3)).max(1);
    let first = (index + 1).saturating_sub(visible);
    let rows: Vec<Row> = rows.into_iter().skip(first).collect();
    let block = Block::bordered()
        .border_style(theme.accent)
        .title(Span::styled(
            format!(" Add a tenant · {free} "),
            theme.title,
        ))
        .title_bottom(Line::styled(
            " ↑/↓ choose · ⏎ add at 10/s poisson, SLA p95≤100ms · esc cancel ",
            theme.dim,
        ));
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(24),
            Constraint::Length(9),
            Constraint::Length(12),
            Constraint::Fill(1),
        ],
    )
    .header(Row::new(vec!["", "model", "memory", "GPU memory", "state"]).style(theme.dim))
    .column_spacing(1)
    .block(block);
    frame.render_widget(Clear, rect);
    frame.render_widget(table, rect);
}

fn confirm(frame: &mut Frame, area: Rect, view: &View, model: &str) {
    let theme = view.theme;
    let rect = centred(area, 56, 5);
    let block = Block::bordered()
        .border_style(theme.warn)
        .title(Span::styled(" Remove tenant ", theme.title));
    let text = vec![
        Line::styled(
            format!("Remove {}?", format::truncate(model, 32)),
            theme.text,
        ),
        Line::styled(
            "Its model is unloaded if no other tenant uses it.",
            theme.dim,
        ),
        Line::from(vec![
            Span::styled("y", theme.accent),
            Span::styled(" remove · ", theme.dim),
            Span::styled("n", theme.accent),
            Span::styled(" keep", theme.dim),
        ]),
    ];
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(block), rect);
}
