//! The two bottom lines: the latest notice, and the key footer generated from the keymap (or the
//! rate prompt while one is being typed).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::tui::app::Mode;
use crate::tui::format;
use crate::tui::keymap::{Action, Scope, TABLE};
use crate::tui::screen::View;
use crate::vocab::snapshot::{Notice, NoticeLevel};
use crate::vocab::spec::Load;

/// `(keys, label)` pairs for the footer in this mode: each labelled entry with the keys of the
/// unlabelled entries that follow it (`↑/↓ select`, `space/P pause`).
pub fn items(view: &View) -> Vec<(String, &'static str)> {
    let replay = view.app.replay;
    let applies = |s: Scope| {
        matches!(
            (s, replay),
            (Scope::Both, _) | (Scope::Live, false) | (Scope::Replay, true)
        )
    };
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for e in TABLE.iter().filter(|e| applies(e.scope)) {
        let first = view
            .keymap
            .keys(e.action)
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        match (e.footer, out.last_mut()) {
            (Some(label), _) => out.push((first, label)),
            (None, Some(last)) if e.action != Action::Quit => {
                last.0.push('/');
                last.0.push_str(&first);
            }
            _ => {}
        }
    }
    out
}

pub fn render(frame: &mut Frame, area: Rect, view: &View) {
    let (snap, app, theme) = (view.snap, view.app, view.theme);
    if let Mode::TypingRate {
        tenant,
        buffer,
        error,
    } = &app.mode
    {
        let t = snap.tenants.iter().find(|t| t.id == *tenant);
        let model = t.map_or("?", |t| t.model.as_str());
        let what = match t.map(|t| &t.load) {
            Some(Load::Concurrency(_)) => "requests in flight",
            _ => "req/s",
        };
        let mut spans = vec![
            Span::styled(format!("{model} {what}: "), theme.accent),
            Span::styled(format!("{buffer}▏"), theme.text),
            Span::styled("  ⏎ set · esc cancel", theme.dim),
        ];
        if let Some(e) = error {
            spans.push(Span::styled(format!("  {e}"), theme.bad));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let mut spans = Vec::new();
    let mut used = 0usize;
    let suffix = if app.replay {
        "  editing disabled in replay"
    } else {
        ""
    };
    let budget = usize::from(area.width).saturating_sub(suffix.chars().count());
    // Help and quit always show; the rest fill what room is left, in table order.
    let width = |keys: &str, label: &str| keys.chars().count() + label.len() + 3;
    let all = items(view);
    let (essential, rest): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(_, l)| matches!(*l, "help" | "quit"));
    let reserved: usize = essential.iter().map(|(k, l)| width(k, l)).sum();
    let mut shown = Vec::new();
    for (keys, label) in rest {
        let w = width(&keys, label);
        if used + w + reserved > budget {
            break;
        }
        used += w;
        shown.push((keys, label));
    }
    for (keys, label) in shown.into_iter().chain(essential) {
        spans.push(Span::styled(format!(" {keys}"), theme.accent));
        spans.push(Span::styled(format!(" {label} "), theme.dim));
    }
    if !suffix.is_empty() {
        spans.push(Span::styled(suffix, theme.warn));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The newest notice, the dashboard's own or the engine's.
pub fn latest<'a>(view: &'a View) -> Option<&'a Notice> {
    let engine = view.snap.notices.last();
    match (&view.app.notice, engine) {
        (Some(a), Some(e)) => Some(if e.at_s > a.at_s { e } else { a }),
        (Some(a), None) => Some(a),
        (None, e) => e,
    }
}

pub fn render_notice(frame: &mut Frame, area: Rect, view: &View) {
    let theme = view.theme;
    let Some(n) = latest(view) else {
        return;
    };
    let style = match n.level {
        NoticeLevel::Info => theme.text,
        NoticeLevel::Warn => theme.warn,
        NoticeLevel::Error => theme.bad,
    };
    let width = usize::from(area.width).saturating_sub(11);
    let line = Line::from(vec![
        Span::styled(format!(" {} ", format::clock(n.at_s)), theme.dim),
        Span::styled(format::truncate(&n.text, width), style),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}
