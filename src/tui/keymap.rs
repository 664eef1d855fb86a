//! Key bindings as data: one table of actions with their default keys and descriptions, from which
//! key dispatch, the help overlay and the footer are all generated, so they cannot disagree.
//!
//! Users override an action's keys by name in the config file (`rate_up = "+ = k"`); after
//! overrides, a key bound to two actions is an error naming both, rather than a silent winner.

use std::collections::BTreeMap;
use std::fmt;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Everything a key can ask for. Text entry in the rate prompt, picker and confirm dialogs is
/// handled by those modes directly and does not go through the keymap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    SelectUp,
    SelectDown,
    RateUp,
    RateDown,
    StepDown,
    StepUp,
    TypeRate,
    Pause,
    PauseAll,
    AddTenant,
    RemoveTenant,
    InstancesUp,
    InstancesDown,
    ToggleBatching,
    StageWhatIf,
    ApplyStaged,
    CycleWindow,
    ChartAll,
    CycleTheme,
    SaveSession,
    ToggleRecording,
    SeekBack,
    SeekForward,
    CycleSpeed,
    Help,
    Quit,
}

/// Where an action applies: editing a live run, controlling a replay, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Live,
    Replay,
    Both,
}

/// One row of the table.
pub struct Entry {
    pub action: Action,
    /// Name used in the config file.
    pub name: &'static str,
    pub default_keys: &'static str,
    /// One line for the help overlay.
    pub description: &'static str,
    /// A word or two for the footer; `None` keeps it out of the footer (help still lists it).
    pub footer: Option<&'static str>,
    pub scope: Scope,
}

const fn entry(
    action: Action,
    name: &'static str,
    default_keys: &'static str,
    description: &'static str,
    footer: Option<&'static str>,
    scope: Scope,
) -> Entry {
    Entry {
        action,
        name,
        default_keys,
        description,
        footer,
        scope,
    }
}

/// The table, in help order.
#[rustfmt::skip]
pub const TABLE: &[Entry] = &[
    entry(Action::SelectUp, "select_up", "up k", "select the tenant above", Some("select"), Scope::Both),
    entry(Action::SelectDown, "select_down", "down j", "select the tenant below", None, Scope::Both),
    entry(Action::RateUp, "rate_up", "+ =", "raise the selected tenant's rate by the step (concurrency by 1)", Some("rate"), Scope::Live),
    entry(Action::RateDown, "rate_down", "-", "lower the selected tenant's rate by the step (concurrency by 1)", None, Scope::Live),
    entry(Action::StepDown, "step_down", "[", "smaller rate step (1, 10, 100, 1000 req/s)", Some("step"), Scope::Live),
    entry(Action::StepUp, "step_up", "]", "larger rate step", None, Scope::Live),
    entry(Action::TypeRate, "type_rate", "enter", "type an exact rate (or concurrency) for the selected tenant", Some("set"), Scope::Live),
    entry(Action::Pause, "pause", "space", "pause/resume the selected tenant (replay: pause/resume playback)", Some("pause"), Scope::Both),
    entry(Action::PauseAll, "pause_all", "P", "pause/resume every tenant", None, Scope::Live),
    entry(Action::AddTenant, "add_tenant", "a", "add a tenant from the model repository", Some("add"), Scope::Live),
    entry(Action::RemoveTenant, "remove_tenant", "d", "remove the selected tenant (asks to confirm)", Some("remove"), Scope::Live),
    entry(Action::InstancesUp, "instances_up", "i", "one more model instance on the server", Some("instances"), Scope::Live),
    entry(Action::InstancesDown, "instances_down", "I", "one fewer model instance on the server", None, Scope::Live),
    entry(Action::ToggleBatching, "toggle_batching", "b", "turn the server's dynamic batching on/off", Some("batching"), Scope::Live),
    entry(Action::StageWhatIf, "stage_what_if", "W", "what-if: stage edits with predictions instead of applying them; again to discard", Some("what-if"), Scope::Live),
    entry(Action::ApplyStaged, "apply_staged", "A", "apply every staged what-if edit at once", None, Scope::Live),
    entry(Action::CycleWindow, "cycle_window", "w", "chart window: 10 s, 1 min, 10 min", Some("window"), Scope::Both),
    entry(Action::ChartAll, "chart_all", "c", "latency chart: selected tenant or all", Some("all"), Scope::Both),
    entry(Action::CycleTheme, "cycle_theme", "t", "next colour theme", Some("theme"), Scope::Both),
    entry(Action::SaveSession, "save_session", "s", "save the current setup as a session file", Some("save"), Scope::Live),
    entry(Action::ToggleRecording, "toggle_recording", "r", "start/stop recording snapshots", Some("rec"), Scope::Live),
    entry(Action::SeekBack, "seek_back", "left", "back 10 s in the recording", Some("seek"), Scope::Replay),
    entry(Action::SeekForward, "seek_forward", "right", "forward 10 s in the recording", None, Scope::Replay),
    entry(Action::CycleSpeed, "cycle_speed", "x", "playback speed 1×, 2×, 4×", Some("speed"), Scope::Replay),
    entry(Action::Help, "help", "?", "show/hide this help", Some("help"), Scope::Both),
    entry(Action::Quit, "quit", "q ctrl-c", "quit (stops the run)", Some("quit"), Scope::Both),
];

/// A key with its modifiers, as written in the config (`ctrl-c`, `P`, `space`, `f5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub code: KeyCodeOrd,
    pub ctrl: bool,
    pub alt: bool,
}

/// The subset of key codes a binding can name (crossterm's `KeyCode` is not `Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyCodeOrd {
    Char(char),
    F(u8),
    Up,
    Down,
    Left,
    Right,
    Enter,
    Esc,
    Backspace,
    Tab,
    Home,
    End,
    PageUp,
    PageDown,
    Delete,
    Insert,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("key binding for `{action}`: unknown action (known: {known})")]
    UnknownAction { action: String, known: String },
    #[error(
        "key binding for `{action}`: `{spec}` is not a key (examples: q, P, ctrl-c, space, enter, up, f5)"
    )]
    BadKey { action: String, spec: String },
    #[error("key binding for `{action}`: no keys given")]
    Empty { action: String },
    #[error("key `{key}` is bound to both `{first}` and `{second}`")]
    Duplicate {
        key: String,
        first: &'static str,
        second: &'static str,
    },
}

impl Key {
    /// Parses one key spec; `None` when it names no key.
    pub fn parse(spec: &str) -> Option<Key> {
        let mut rest = spec;
        let mut key = Key {
            code: KeyCodeOrd::Esc,
            ctrl: false,
            alt: false,
        };
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.len() > 5 && lower.starts_with("ctrl-") {
                key.ctrl = true;
                rest = &rest[5..];
            } else if rest.len() > 4 && lower.starts_with("alt-") {
                key.alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        key.code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCodeOrd::Char(if key.ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "space" => KeyCodeOrd::Char(' '),
                "up" => KeyCodeOrd::Up,
                "down" => KeyCodeOrd::Down,
                "left" => KeyCodeOrd::Left,
                "right" => KeyCodeOrd::Right,
                "enter" | "return" => KeyCodeOrd::Enter,
                "esc" | "escape" => KeyCodeOrd::Esc,
                "backspace" => KeyCodeOrd::Backspace,
                "tab" => KeyCodeOrd::Tab,
                "home" => KeyCodeOrd::Home,
                "end" => KeyCodeOrd::End,
                "pageup" => KeyCodeOrd::PageUp,
                "pagedown" => KeyCodeOrd::PageDown,
                "delete" | "del" => KeyCodeOrd::Delete,
                "insert" => KeyCodeOrd::Insert,
                f if f.starts_with('f') => match f[1..].parse::<u8>() {
                    Ok(n @ 1..=24) => KeyCodeOrd::F(n),
                    _ => return None,
                },
                _ => return None,
            },
        };
        Some(key)
    }

    /// The binding a terminal key event matches. Shift is carried by the character itself (`P`, `?`),
    /// so it is ignored for characters; terminals disagree on whether they report it.
    pub fn from_event(event: &KeyEvent) -> Option<Key> {
        if event.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let code = match event.code {
            KeyCode::Char(c) => KeyCodeOrd::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            KeyCode::F(n) => KeyCodeOrd::F(n),
            KeyCode::Up => KeyCodeOrd::Up,
            KeyCode::Down => KeyCodeOrd::Down,
            KeyCode::Left => KeyCodeOrd::Left,
            KeyCode::Right => KeyCodeOrd::Right,
            KeyCode::Enter => KeyCodeOrd::Enter,
            KeyCode::Esc => KeyCodeOrd::Esc,
            KeyCode::Backspace => KeyCodeOrd::Backspace,
            KeyCode::Tab => KeyCodeOrd::Tab,
            KeyCode::Home => KeyCodeOrd::Home,
            KeyCode::End => KeyCodeOrd::End,
            KeyCode::PageUp => KeyCodeOrd::PageUp,
            KeyCode::PageDown => KeyCodeOrd::PageDown,
            KeyCode::Delete => KeyCodeOrd::Delete,
            KeyCode::Insert => KeyCodeOrd::Insert,
            _ => return None,
        };
        Some(Key {
            code,
            ctrl,
            alt: event.modifiers.contains(KeyModifiers::ALT),
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCodeOrd::Char(' ') => f.write_str("space"),
            KeyCodeOrd::Char(c) => write!(f, "{c}"),
            KeyCodeOrd::F(n) => write!(f, "f{n}"),
            KeyCodeOrd::Up => f.write_str("↑"),
            KeyCodeOrd::Down => f.write_str("↓"),
            KeyCodeOrd::Left => f.write_str("←"),
            KeyCodeOrd::Right => f.write_str("→"),
            KeyCodeOrd::Enter => f.write_str("⏎"),
            KeyCodeOrd::Esc => f.write_str("esc"),
            KeyCodeOrd::Backspace => f.write_str("backspace"),
            KeyCodeOrd::Tab => f.write_str("tab"),
            KeyCodeOrd::Home => f.write_str("home"),
            KeyCodeOrd::End => f.write_str("end"),
            KeyCodeOrd::PageUp => f.write_str("pgup"),
            KeyCodeOrd::PageDown => f.write_str("pgdn"),
            KeyCodeOrd::Delete => f.write_str("del"),
            KeyCodeOrd::Insert => f.write_str("ins"),
        }
    }
}

/// The resolved bindings: defaults with the user's overrides applied, checked for duplicates.
#[derive(Debug, Clone)]
pub struct Keymap {
    by_key: BTreeMap<Key, Action>,
    keys: BTreeMap<Action, Vec<Key>>,
}

impl Keymap {
    /// Builds the keymap; `overrides` maps an action name to its new keys, separated by spaces.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Keymap, KeymapError> {
        for name in overrides.keys() {
            if !TABLE.iter().any(|e| e.name == name) {
                return Err(KeymapError::UnknownAction {
                    action: name.clone(),
                    known: TABLE.iter().map(|e| e.name).collect::<Vec<_>>().join(", "),
                });
            }
        }
        let mut by_key: BTreeMap<Key, Action> = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for e in TABLE {
            let spec = overrides.get(e.name).map_or(e.default_keys, String::as_str);
            let mut list = Vec::new();
            for token in spec.split_whitespace() {
                let key = Key::parse(token).ok_or_else(|| KeymapError::BadKey {
                    action: e.name.to_string(),
                    spec: token.to_string(),
                })?;
                if let Some(&other) = by_key.get(&key) {
                    if other == e.action {
                        continue;
                    }
                    return Err(KeymapError::Duplicate {
                        key: key.to_string(),
                        first: entry_for(other).name,
                        second: e.name,
                    });
                }
                by_key.insert(key, e.action);
                list.push(key);
            }
            if list.is_empty() {
                return Err(KeymapError::Empty {
                    action: e.name.to_string(),
                });
            }
            keys.insert(e.action, list);
        }
        Ok(Keymap { by_key, keys })
    }

    pub fn action_for(&self, event: &KeyEvent) -> Option<Action> {
        Key::from_event(event).and_then(|k| self.by_key.get(&k).copied())
    }

    pub fn keys(&self, action: Action) -> &[Key] {
        self.keys.get(&action).map_or(&[], Vec::as_slice)
    }

    /// Keys of an action joined for display (`↑ k`).
    pub fn label(&self, action: Action) -> String {
        self.keys(action)
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The table row for an action (every action has exactly one).
pub fn entry_for(action: Action) -> &'static Entry {
    TABLE
        .iter()
        .find(|e| e.action == action)
        .unwrap_or(&TABLE[TABLE.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_exactly_one_entry_and_a_unique_name() {
        let mut names = std::collections::BTreeSet::new();
        let mut actions = std::collections::BTreeSet::new();
        for e in TABLE {
            assert!(names.insert(e.name), "duplicate name {}", e.name);
            assert!(actions.insert(e.action), "duplicate action {:?}", e.action);
        }
        assert_eq!(entry_for(Action::SelectUp).name, "select_up");
    }

    #[test]
    fn defaults_have_no_duplicates() {
        let km = Keymap::new(&BTreeMap::new()).unwrap();
        assert_eq!(km.label(Action::Quit), "q ctrl-c");
    }

    #[test]
    fn parses_specs() {
        let ctrl_c = Key::parse("ctrl-c").unwrap();
        assert!(ctrl_c.ctrl);
        assert_eq!(ctrl_c.code, KeyCodeOrd::Char('c'));
        assert_eq!(Key::parse("-").unwrap().code, KeyCodeOrd::Char('-'));
        assert_eq!(Key::parse("ctrl--").unwrap().code, KeyCodeOrd::Char('-'));
        assert_eq!(Key::parse("F5").unwrap().code, KeyCodeOrd::F(5));
        assert_eq!(Key::parse("P").unwrap().code, KeyCodeOrd::Char('P'));
        assert!(Key::parse("f99").is_none());
        assert!(Key::parse("ctrl-").is_none());
        assert!(Key::parse("banana").is_none());
    }

    #[test]
    fn shift_is_ignored_for_characters() {
        let km = Keymap::new(&BTreeMap::new()).unwrap();
        let ev = KeyEvent::new(KeyCode::Char('P'), KeyModifiers::SHIFT);
        assert_eq!(km.action_for(&ev), Some(Action::PauseAll));
        let ev = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(km.action_for(&ev), Some(Action::Quit));
    }

    #[test]
    fn override_replaces_defaults() {
        let overrides = BTreeMap::from([("quit".to_string(), "Q f10".to_string())]);
        let km = Keymap::new(&overrides).unwrap();
        let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(km.action_for(&q), None);
        let f10 = KeyEvent::new(KeyCode::F(10), KeyModifiers::NONE);
        assert_eq!(km.action_for(&f10), Some(Action::Quit));
    }

    #[test]
    fn duplicate_binding_names_both_actions() {
        let overrides = BTreeMap::from([("cycle_theme".to_string(), "q".to_string())]);
        let err = Keymap::new(&overrides).unwrap_err();
        assert_eq!(
            err,
            KeymapError::Duplicate {
                key: "q".into(),
                first: "cycle_theme",
                second: "quit"
            }
        );
    }

    #[test]
    fn bad_overrides_are_clear_errors() {
        let unknown = BTreeMap::from([("fly".to_string(), "f".to_string())]);
        assert!(matches!(
            Keymap::new(&unknown),
            Err(KeymapError::UnknownAction { .. })
        ));
        let bad = BTreeMap::from([("quit".to_string(), "ctrl-banana".to_string())]);
        assert!(matches!(Keymap::new(&bad), Err(KeymapError::BadKey { .. })));
        let empty = BTreeMap::from([("quit".to_string(), "  ".to_string())]);
        assert!(matches!(
            Keymap::new(&empty),
            Err(KeymapError::Empty { .. })
        ));
    }
}
