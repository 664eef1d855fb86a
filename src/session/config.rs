//! The user's `config.toml`: defaults for the dashboard that outlive a session.
//!
//! Found in the platform config directory (`~/.config/perseus/config.toml` on Linux) or at the
//! path in `PERSEUS_CONFIG`. A missing file at the default place simply means defaults; a path the
//! user gave that is missing is an error, and so is a file that exists but does not parse, because
//! silently ignoring a typo in someone's settings is worse than saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use directories::ProjectDirs;
use serde::{Deserialize, Deserializer};

/// Environment variable naming the config file to use instead of the default location.
pub const CONFIG_ENV: &str = "PERSEUS_CONFIG";
/// Environment variable naming the data directory (recordings, saved sessions, logs, caches).
pub const DATA_DIR_ENV: &str = "PERSEUS_DATA_DIR";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error("no home directory to keep Perseus's files in; set {DATA_DIR_ENV}")]
    NoHome,
}

/// Dashboard settings; every field is optional in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Theme name (`themes/*.toml` or a user theme in the config directory).
    pub theme: String,
    /// Frames per second the dashboard redraws at, independent of the engine tick.
    pub render_fps: u32,
    /// Engine tick: how often a snapshot is published.
    #[serde(deserialize_with = "tick_duration")]
    pub tick: Duration,
    /// Key binding overrides: action name → key spec, handed to the TUI's keymap as is.
    pub keys: BTreeMap<String, String>,
    /// Directory with catalog overrides (`gpus.toml`, `models.toml`), relative to this file.
    pub catalog_dir: Option<PathBuf>,
    /// Price catalog override, relative to this file.
    pub prices: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            theme: "default".to_string(),
            render_fps: 10,
            tick: crate::vocab::spec::RunSpec::DEFAULT_TICK,
            keys: BTreeMap::new(),
            catalog_dir: None,
            prices: None,
        }
    }
}

/// Bounded here, inside deserialization, so that the error carries the value's line and column.
fn tick_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let tick = humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "expected a duration such as \"250ms\", found '{s}' ({e})"
        ))
    })?;
    if tick > super::limits::MAX_TICK {
        return Err(serde::de::Error::custom(format!(
            "expected a tick of at most {}, found '{s}'",
            humantime::format_duration(super::limits::MAX_TICK)
        )));
    }
    Ok(tick)
}

fn project_dirs() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "perseus")
}

/// Where the config file is looked for when `PERSEUS_CONFIG` is not set.
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|p| p.config_dir().join("config.toml"))
}

/// The data directory: `PERSEUS_DATA_DIR`, else the platform's (`~/.local/share/perseus`).
pub fn data_dir() -> Result<PathBuf, ConfigError> {
    match std::env::var_os(DATA_DIR_ENV) {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
        _ => project_dirs()
            .map(|p| p.data_dir().to_path_buf())
            .ok_or(ConfigError::NoHome),
    }
}

/// Where recordings go.
pub fn runs_dir() -> Result<PathBuf, ConfigError> {
    Ok(data_dir()?.join("runs"))
}

/// Where the TUI saves sessions when the user gives no path.
pub fn sessions_dir() -> Result<PathBuf, ConfigError> {
    Ok(data_dir()?.join("sessions"))
}

impl Config {
    /// The user's config and the file it came from (`None`: defaults, no file found).
    pub fn load() -> Result<(Config, Option<PathBuf>), ConfigError> {
        if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(p);
            return Config::load_from(&path).map(|c| (c, Some(path)));
        }
        let Some(path) = default_config_path() else {
            return Ok((Config::default(), None));
        };
        if !path.exists() {
            return Ok((Config::default(), None));
        }
        Config::load_from(&path).map(|c| (c, Some(path)))
    }

    /// Reads one config file; a missing file is an error here.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks a config file's text; relative paths are taken from `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = super::spanned::line_col(text, e.span().map_or(0, |s| s.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().replace('\n', "; "),
            }
        })?;
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message: message.to_string(),
        };
        if !(1..=120).contains(&config.render_fps) {
            return Err(invalid(
                "render_fps",
                "expected between 1 and 120 frames per second",
            ));
        }
        if config.tick < Duration::from_millis(10) {
            return Err(invalid("tick", "expected a tick of at least 10ms"));
        }
        if config.theme.trim().is_empty() {
            return Err(invalid("theme", "expected a theme name"));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.catalog_dir, &mut config.prices]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_is_exactly_the_defaults() {
        let sample = include_str!("../../config.sample.toml");
        let parsed = Config::parse(sample, Path::new("config.sample.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn sample_config_mentions_every_field() {
        let sample = include_str!("../../config.sample.toml");
        for key in [
            "theme",
            "render_fps",
            "tick",
            "[keys]",
            "catalog_dir",
            "prices",
        ] {
            assert!(
                sample.contains(key),
                "config.sample.toml does not document {key}"
            );
        }
    }

    #[test]
    fn fields_override_defaults_and_paths_are_relative_to_the_file() {
        let text = "theme = \"light\"\nrender_fps = 20\ntick = \"500ms\"\nprices = \"p.toml\"\n\
                    [keys]\nquit = \"Q\"\n";
        let c = Config::parse(text, Path::new("/etc/perseus/config.toml")).unwrap();
        assert_eq!(c.theme, "light");
        assert_eq!(c.render_fps, 20);
        assert_eq!(c.tick, Duration::from_millis(500));
        assert_eq!(c.prices, Some(PathBuf::from("/etc/perseus/p.toml")));
        assert_eq!(c.keys.get("quit").map(String::as_str), Some("Q"));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_place() {
        let e = Config::parse("\n\nthem = \"x\"\n", Path::new("c.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("c.toml:3:1: unknown field `them`"), "{msg}");
        let e = Config::parse("tick = \"fast\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("expected a duration"), "{e}");
        let e = Config::parse("tick = \"500000000000y\"\n", Path::new("c.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("c.toml:1:8: expected a tick of at most 1m, found '500000000000y'"),
            "{e}"
        );
        assert!(Config::parse("tick = \"1m\"\n", Path::new("c.toml")).is_ok());
        let e = Config::parse("render_fps = 0\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.toml: render_fps: expected between 1 and 120 frames per second"
        );
    }

    #[test]
    fn a_missing_file_the_user_named_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load_from(&dir.path().join("nope.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }
}
