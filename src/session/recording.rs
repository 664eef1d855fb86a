//! Recordings: a run's snapshots as JSON lines, so it can be shown again with no server at all.
//!
//! The file is append-only: a header line, then one snapshot a line, each written whole and
//! handed to the OS before the next tick. A crash therefore leaves a valid prefix (plus at most
//! one cut line), and the reader replays everything up to the first damaged line and says where
//! the damage is instead of refusing the whole file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::vocab::snapshot::{Snapshot, TargetInfo};

/// Schema of the header line; bumped on any incompatible change to the line format.
pub const RECORDING_SCHEMA: &str = "perseus.recording.v1";

/// The first line of a recording: what was run and against what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingHeader {
    pub schema: String,
    pub session: String,
    pub target: TargetInfo,
    /// Catalog name → version string (e.g. `"prices" → "2026-11-01"`), as the caller knows them.
    pub catalogs: BTreeMap<String, String>,
    /// RFC 3339, UTC, when the recording began.
    pub started_at: String,
}

impl RecordingHeader {
    /// A header stamped with the current schema and time.
    pub fn new(session: &str, target: TargetInfo, catalogs: BTreeMap<String, String>) -> Self {
        RecordingHeader {
            schema: RECORDING_SCHEMA.to_string(),
            session: session.to_string(),
            target,
            catalogs,
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:1: not a Perseus recording: {message}", path.display())]
    Header { path: PathBuf, message: String },
    #[error("cannot encode a snapshot: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Appends snapshots to a recording file.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: File,
    lines: u64,
}

/// A file-name-safe part from a session name: letters, digits, `-` and `_` only.
pub(super) fn file_stem(session: &str) -> String {
    let mut s: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    let s: String = s.trim_matches('-').chars().take(60).collect();
    if s.is_empty() { "run".to_string() } else { s }
}

/// `20261128T171500Z`: sortable, and free of characters some file systems refuse.
pub(super) fn timestamp() -> String {
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    t.chars().filter(|c| *c != '-' && *c != ':').collect()
}

impl Recorder {
    /// Starts `<dir>/<timestamp>-<session>.jsonl` (a numbered suffix if that exists) with the
    /// header line.
    pub fn create(
        dir: &Path,
        session_name: &str,
        header: RecordingHeader,
    ) -> Result<Recorder, RecordingError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RecordingError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let base = format!("{}-{}", timestamp(), file_stem(session_name));
        let mut n = 1;
        let (path, file) = loop {
            let name = if n == 1 {
                format!("{base}.jsonl")
            } else {
                format!("{base}-{n}.jsonl")
            };
            let path = dir.join(name);
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        let mut rec = Recorder {
            path,
            file,
            lines: 0,
        };
        rec.write_line(&header)?;
        Ok(rec)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Snapshots written so far.
    pub fn snapshots(&self) -> u64 {
        self.lines.saturating_sub(1)
    }

    /// Appends one snapshot and hands it to the OS before returning.
    pub fn record(&mut self, snap: &Snapshot) -> Result<(), RecordingError> {
        self.write_line(snap)
    }

    fn write_line<T: Serialize>(&mut self, value: &T) -> Result<(), RecordingError> {
        // One write of the whole line, so a crash cuts at most the line being written.
        let mut line = serde_json::to_vec(value)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|source| RecordingError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.lines += 1;
        Ok(())
    }
}

/// Records every snapshot the engine publishes until its sender goes away. A recorder that falls
/// behind skips to the latest snapshot (the watch channel keeps only that); gaps show in `seq`.
pub async fn record_snapshots(
    mut rec: Recorder,
    mut rx: watch::Receiver<Arc<Snapshot>>,
) -> Result<PathBuf, RecordingError> {
    loop {
        let snap = rx.borrow_and_update().clone();
        rec.record(&snap)?;
        if rx.changed().await.is_err() {
            return Ok(rec.path);
        }
    }
}

/// Where a recording stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line of the first unreadable snapshot.
    pub line: usize,
    pub message: String,
}

/// A recording read back: the header and every snapshot before any damage.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub header: RecordingHeader,
    pub snapshots: Vec<Snapshot>,
    pub damage: Option<Damage>,
}

/// Reads a recording; see [`parse_recording`].
pub fn read_recording(path: &Path) -> Result<Recording, RecordingError> {
    let file = File::open(path).map_err(|source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_recording(BufReader::new(file), path)
}

/// Reads a recording from any byte stream. Only an unreadable header is an error; damage
/// further on ends the recording there and is reported in [`Recording::damage`].
pub fn parse_recording(mut input: impl BufRead, path: &Path) -> Result<Recording, RecordingError> {
    let header_err = |message: String| RecordingError::Header {
        path: path.to_path_buf(),
        message,
    };
    let mut buf = Vec::new();
    let n = input
        .read_until(b'\n', &mut buf)
        .map_err(|source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if n == 0 {
        return Err(header_err("the file is empty".to_string()));
    }
    let header: RecordingHeader =
        serde_json::from_slice(&buf).map_err(|e| header_err(format!("bad header line: {e}")))?;
    if header.schema != RECORDING_SCHEMA {
        return Err(header_err(format!(
            "schema '{}', expected '{RECORDING_SCHEMA}'",
            header.schema
        )));
    }

    let mut snapshots = Vec::new();
    let mut damage = None;
    let mut line = 1;
    loop {
        buf.clear();
        line += 1;
        let n = match input.read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                damage = Some(Damage {
                    line,
                    message: format!("read error: {e}"),
                });
                break;
            }
        };
        if n == 0 {
            break;
        }
        let complete = buf.ends_with(b"\n");
        let text = buf.trim_ascii();
        if text.is_empty() && complete {
            continue;
        }
        match serde_json::from_slice::<Snapshot>(text) {
            Ok(s) => snapshots.push(s),
            Err(e) => {
                let what = if complete {
                    "corrupted snapshot"
                } else {
                    "cut-off last line (the recording was interrupted)"
                };
                let mut rest = 0;
                buf.clear();
                while matches!(input.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    rest += 1;
                    buf.clear();
                }
                let skipped = if rest > 0 {
                    format!("; {rest} later line(s) not replayed")
                } else {
                    String::new()
                };
                damage = Some(Damage {
                    line,
                    message: format!("{what}: {e}{skipped}"),
                });
                break;
            }
        }
    }
    Ok(Recording {
        header,
        snapshots,
        damage,
    })
}
