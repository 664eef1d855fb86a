//! Where results go: files, or stdout for `-`, and what happens when writing fails.
//!
//! Results are the point of a run, so a destination that cannot be written is refused before the
//! run starts, files are written before anything goes to stdout (a closed pipe or a full disk on
//! stdout must not cost the JSON), and every failed write is reported instead of panicking.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};

use crate::commands::Failure;

/// One output a command was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

impl Sink {
    /// `-` means stdout, as in most command-line tools.
    pub fn from_arg(path: &Path) -> Sink {
        if path == Path::new("-") {
            Sink::Stdout
        } else {
            Sink::File(path.to_path_buf())
        }
    }

    pub fn is_stdout(&self) -> bool {
        *self == Sink::Stdout
    }

    /// Refuses a file that cannot be written (missing directory, no permission, a directory),
    /// so that the user learns it in a second rather than after the whole run. Nothing is left
    /// behind: a file that did not exist is created and removed again.
    pub fn check(&self, flag: &str) -> Result<(), Failure> {
        let Sink::File(path) = self else {
            return Ok(());
        };
        check_writable(path)
            .with_context(|| format!("{flag} {}", path.display()))
            .map_err(Failure::BadInput)
    }

    /// Writes `content` whole; a regular file is synced so that a full disk is reported here.
    pub fn write(&self, content: &str) -> anyhow::Result<()> {
        match self {
            Sink::Stdout => stdout(content),
            Sink::File(path) => write_file(path, content)
                .with_context(|| format!("cannot write {}", path.display())),
        }
    }
}

fn check_writable(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => bail!("is a directory"),
        // Opening without truncating proves the permission and changes nothing. Devices and
        // pipes are taken as they are: opening a pipe with no reader would block.
        Ok(m) if m.is_file() => {
            OpenOptions::new().write(true).open(path)?;
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bail!("{} is not a directory", dir.display()),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    bail!("directory {} does not exist", dir.display())
                }
                Err(e) => return Err(anyhow!(e).context(format!("{}", dir.display()))),
            }
            OpenOptions::new().write(true).create_new(true).open(path)?;
            std::fs::remove_file(path)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn write_file(path: &Path, content: &str) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(content.as_bytes())?;
    if file.metadata()?.is_file() {
        file.sync_all()?;
    }
    Ok(())
}

/// Writes to stdout, reporting a closed pipe or a full device instead of panicking as `print!`
/// does.
pub fn stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Writes to stderr; if even that fails there is no one left to tell.
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// [`stdout`] for a command whose output is its result.
pub fn print(text: &str) -> Result<(), Failure> {
    stdout(text).map_err(Failure::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_stdout() {
        assert!(Sink::from_arg(Path::new("-")).is_stdout());
        assert!(!Sink::from_arg(Path::new("./-")).is_stdout());
    }

    #[test]
    fn unwritable_destinations_are_refused_and_nothing_is_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("out.json");
        Sink::File(fresh.clone()).check("--json").unwrap();
        assert!(!fresh.exists(), "the check leaves no file");
        let missing = dir.path().join("no-such-dir").join("out.json");
        let e = Sink::File(missing).check("--json").unwrap_err().to_string();
        assert!(
            e.contains("no-such-dir") && e.contains("does not exist"),
            "{e}"
        );
        let e = Sink::File(dir.path().to_path_buf())
            .check("--csv")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--csv ") && e.contains("is a directory"),
            "{e}"
        );
        Sink::Stdout.check("--json").unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_device_is_an_error_not_a_panic() {
        let full = Path::new("/dev/full");
        Sink::File(full.to_path_buf()).check("--json").unwrap();
        let e = Sink::File(full.to_path_buf()).write("{}").unwrap_err();
        assert!(format!("{e:#}").contains("/dev/full"), "{e:#}");
    }
}
