//! Themes: TOML files (`themes/*.toml` built in, more from the user's theme directories) turned into
//! ratatui styles.
//!
//! File parsing knows nothing of ratatui: [`ThemeFile`] holds strings, and [`Theme::from_file`]
//! converts them, so a bad colour is reported with the file and key that hold it. Missing keys fall
//! back to the built-in default, which lets a user theme change one colour without copying the rest.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// Built-in themes, in cycling order; `default` first because it is the fallback for missing keys.
const BUILT_IN: [(&str, &str); 4] = [
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
    ("colorblind", include_str!("../../themes/colorblind.toml")),
];

/// Name of the theme used when `NO_COLOR` is set.
pub const MONOCHROME: &str = "monochrome";

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    // Causes are not repeated in the message: whoever prints the error prints its chain.
    #[error("theme {origin}")]
    Parse {
        origin: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error(
        "theme {origin}: key `{key}`: `{value}` is not a colour (use a name such as `lightblue`, 0–255 or #rrggbb)"
    )]
    Colour {
        origin: String,
        key: String,
        value: String,
    },
    #[error("theme {origin}: `series` needs at least one colour")]
    NoSeries { origin: String },
    #[error("reading themes from {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown theme `{name}`; available: {available}")]
    Unknown { name: String, available: String },
}

/// The file as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThemeFile {
    pub text: Option<String>,
    pub dim: Option<String>,
    pub title: Option<String>,
    pub border: Option<String>,
    pub accent: Option<String>,
    pub selected_fg: Option<String>,
    pub selected_bg: Option<String>,
    pub ok: Option<String>,
    pub warn: Option<String>,
    pub bad: Option<String>,
    pub gauge_fill: Option<String>,
    pub gauge_empty: Option<String>,
    pub sla: Option<String>,
    pub series: Option<Vec<String>>,
}

impl ThemeFile {
    pub fn parse(text: &str, origin: &str) -> Result<Self, ThemeError> {
        toml::from_str(text).map_err(|source| ThemeError::Parse {
            origin: origin.to_string(),
            source: Box::new(source),
        })
    }
}

/// Styles the panels draw with.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub text: Style,
    pub dim: Style,
    pub title: Style,
    pub border: Style,
    pub accent: Style,
    pub selected: Style,
    pub ok: Style,
    pub warn: Style,
    pub bad: Style,
    pub gauge_fill: Style,
    pub gauge_empty: Style,
    pub sla: Style,
    /// One colour per tenant in charts, cycled.
    pub series: Vec<Style>,
}

impl Theme {
    /// Converts a parsed file, taking missing keys from `base`.
    pub fn from_file(name: &str, file: &ThemeFile, base: &Theme) -> Result<Theme, ThemeError> {
        let fg =
            |key: &str, value: &Option<String>, fallback: Style| -> Result<Style, ThemeError> {
                match value {
                    None => Ok(fallback),
                    Some(v) => Ok(Style::new().fg(colour(name, key, v)?)),
                }
            };
        let selected = match (&file.selected_fg, &file.selected_bg) {
            (None, None) => base.selected,
            (f, b) => {
                // Colours replace the monochrome fallback's reverse video rather than stacking on it.
                let mut style = Style::new();
                style.fg = base.selected.fg;
                style.bg = base.selected.bg;
                if let Some(f) = f {
                    style = style.fg(colour(name, "selected_fg", f)?);
                }
                if let Some(b) = b {
                    style = style.bg(colour(name, "selected_bg", b)?);
                }
                style
            }
        };
        let series = match &file.series {
            None => base.series.clone(),
            Some(list) if list.is_empty() => {
                return Err(ThemeError::NoSeries {
                    origin: name.to_string(),
                });
            }
            Some(list) => list
                .iter()
                .map(|v| colour(name, "series", v).map(|c| Style::new().fg(c)))
                .collect::<Result<_, _>>()?,
        };
        Ok(Theme {
            name: name.to_string(),
            text: fg("text", &file.text, base.text)?,
            dim: fg("dim", &file.dim, base.dim)?,
            title: fg("title", &file.title, base.title)?.add_modifier(Modifier::BOLD),
            border: fg("border", &file.border, base.border)?,
            accent: fg("accent", &file.accent, base.accent)?,
            selected,
            ok: fg("ok", &file.ok, base.ok)?,
            warn: fg("warn", &file.warn, base.warn)?,
            bad: fg("bad", &file.bad, base.bad)?.add_modifier(Modifier::BOLD),
            gauge_fill: fg("gauge_fill", &file.gauge_fill, base.gauge_fill)?,
            gauge_empty: fg("gauge_empty", &file.gauge_empty, base.gauge_empty)?,
            sla: fg("sla", &file.sla, base.sla)?,
            series,
        })
    }

    /// For `NO_COLOR`: no colours at all, state carried by modifiers and symbols.
    pub fn monochrome() -> Theme {
        let plain = Style::new();
        Theme {
            name: MONOCHROME.to_string(),
            text: plain,
            dim: plain.add_modifier(Modifier::DIM),
            title: plain.add_modifier(Modifier::BOLD),
            border: plain,
            accent: plain.add_modifier(Modifier::BOLD),
            selected: plain.add_modifier(Modifier::REVERSED),
            ok: plain,
            warn: plain.add_modifier(Modifier::UNDERLINED),
            bad: plain.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            gauge_fill: plain,
            gauge_empty: plain.add_modifier(Modifier::DIM),
            sla: plain.add_modifier(Modifier::DIM),
            series: vec![plain],
        }
    }

    /// Style for the `i`-th tenant's chart series.
    pub fn series(&self, i: usize) -> Style {
        self.series
            .get(i % self.series.len().max(1))
            .copied()
            .unwrap_or(self.text)
    }

    /// The style for an SLA-related figure: met, at risk, missed, or unknown.
    pub fn for_state(&self, state: Option<Verdict>) -> Style {
        match state {
            Some(Verdict::Ok) => self.ok,
            Some(Verdict::Warn) => self.warn,
            Some(Verdict::Bad) => self.bad,
            None => self.dim,
        }
    }
}

/// How a figure stands against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Bad,
}

fn colour(origin: &str, key: &str, value: &str) -> Result<Color, ThemeError> {
    Color::from_str(value.trim()).map_err(|_| ThemeError::Colour {
        origin: origin.to_string(),
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// The default theme with every key set; the base the others fill their gaps from.
fn default_theme() -> Result<Theme, ThemeError> {
    let (name, text) = BUILT_IN[0];
    let file = ThemeFile::parse(text, name)?;
    // Seed with monochrome so a key missing from the default file still yields a usable style.
    Theme::from_file(name, &file, &Theme::monochrome())
}

/// Every theme available, built-ins first, then user themes by file name (a user file named like a
/// built-in replaces it). With `no_color`, only the monochrome theme.
pub fn load_all(theme_dirs: &[PathBuf], no_color: bool) -> Result<Vec<Theme>, ThemeError> {
    if no_color {
        return Ok(vec![Theme::monochrome()]);
    }
    let base = default_theme()?;
    let mut themes = Vec::new();
    for (name, text) in BUILT_IN {
        let file = ThemeFile::parse(text, name)?;
        themes.push(Theme::from_file(name, &file, &base)?);
    }
    for dir in theme_dirs {
        for (name, path) in theme_files(dir)? {
            let text = std::fs::read_to_string(&path).map_err(|source| ThemeError::Dir {
                path: path.clone(),
                source,
            })?;
            let origin = path.display().to_string();
            let file = ThemeFile::parse(&text, &origin)?;
            let theme = Theme::from_file(&name, &file, &base)?;
            match themes.iter_mut().find(|t| t.name == name) {
                Some(existing) => *existing = theme,
                None => themes.push(theme),
            }
        }
    }
    themes.push(Theme::monochrome());
    Ok(themes)
}

/// `*.toml` files in a directory, sorted by name; a directory that does not exist has none (the
/// default config directory usually does not).
fn theme_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ThemeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ThemeError::Dir {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ThemeError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            files.push((stem.to_string(), path.clone()));
        }
    }
    files.sort();
    Ok(files)
}

/// Index of the theme named `name`, or an error listing the names that exist.
pub fn find(themes: &[Theme], name: &str) -> Result<usize, ThemeError> {
    themes
        .iter()
        .position(|t| t.name == name)
        .ok_or_else(|| ThemeError::Unknown {
            name: name.to_string(),
            available: themes
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error and its causes as `{:#}` prints them, each once.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(cause) = next {
            out.push(cause.to_string());
            next = cause.source();
        }
        out
    }

    #[test]
    fn a_bad_theme_file_names_the_file_and_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "text = [").unwrap();
        let err = load_all(&[dir.path().to_path_buf()], false).unwrap_err();
        let chain = chain(&err);
        assert!(chain[0].contains("mine.toml"), "{chain:?}");
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert!(
            !chain[0].contains(&chain[1]),
            "the cause is printed by the chain, not repeated in the message: {chain:?}"
        );
    }

    #[test]
    fn every_built_in_file_sets_every_key() {
        for (name, text) in BUILT_IN {
            let file = ThemeFile::parse(text, name).unwrap();
            assert!(
                file.text.is_some() && file.dim.is_some() && file.title.is_some(),
                "{name}"
            );
            assert!(
                file.ok.is_some() && file.warn.is_some() && file.bad.is_some(),
                "{name}"
            );
            assert!(file.sla.is_some() && file.series.is_some(), "{name}");
            assert!(
                file.gauge_fill.is_some() && file.gauge_empty.is_some(),
                "{name}"
            );
            assert!(
                file.selected_fg.is_some() && file.selected_bg.is_some(),
                "{name}"
            );
            assert!(file.border.is_some() && file.accent.is_some(), "{name}");
        }
    }

    #[test]
    fn built_ins_load_and_differ() {
        let themes = load_all(&[], false).unwrap();
        let names: Vec<_> = themes.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "default",
                "light",
                "high-contrast",
                "colorblind",
                MONOCHROME
            ]
        );
        for (i, a) in themes.iter().enumerate() {
            for b in &themes[i + 1..] {
                assert_ne!(a.ok, b.ok, "{} and {} share the ok colour", a.name, b.name);
            }
        }
    }

    #[test]
    fn no_color_gives_only_monochrome_without_colours() {
        let themes = load_all(&[], true).unwrap();
        assert_eq!(themes.len(), 1);
        let t = &themes[0];
        for style in [t.text, t.ok, t.warn, t.bad, t.selected, t.gauge_fill] {
            assert_eq!(style.fg, None);
            assert_eq!(style.bg, None);
        }
    }

    #[test]
    fn bad_colour_names_file_and_key() {
        let file = ThemeFile::parse("ok = \"chartreuse-ish\"", "mine.toml").unwrap();
        let err = Theme::from_file("mine", &file, &Theme::monochrome()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mine") && msg.contains("`ok`") && msg.contains("chartreuse-ish"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = ThemeFile::parse("okay = \"red\"", "mine.toml").unwrap_err();
        let chain = chain(&err);
        assert!(chain.join(": ").contains("okay"), "{chain:?}");
    }

    #[test]
    fn user_theme_overrides_one_key_and_inherits_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.toml"), "bad = \"#123456\"\n").unwrap();
        std::fs::write(dir.path().join("light.toml"), "ok = \"blue\"\n").unwrap();
        let themes = load_all(&[dir.path().to_path_buf()], false).unwrap();
        let default = &themes[find(&themes, "default").unwrap()];
        let mine = &themes[find(&themes, "mine").unwrap()];
        assert_eq!(mine.bad.fg, Some(Color::Rgb(0x12, 0x34, 0x56)));
        assert_eq!(mine.ok, default.ok);
        let light = &themes[find(&themes, "light").unwrap()];
        assert_eq!(light.ok.fg, Some(Color::Blue));
        assert!(
            find(&themes, "nope")
                .unwrap_err()
                .to_string()
                .contains("mine")
        );
    }
}
