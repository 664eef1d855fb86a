//! Recordings: a run's snapshots as JSON lines, so it can be shown again with no server at all.
//!
//! The file is append-only: a header line, then one snapshot a line, each written whole and
//! handed to the OS before the next tick. A crash therefore leaves a valid prefix (plus at most
//! one cut line). Readers stream the file a line at a time, skip any damaged line, and say which
//! lines they skipped instead of refusing the whole file.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, Write};
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
    #[error("{}: the file changed while it was being replayed: {message}", path.display())]
    Changed { path: PathBuf, message: String },
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

/// The damaged lines of a recording. Each one is skipped and the lines around it are still
/// replayed, so one bad byte costs one tick, not the rest of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// 1-based line of the first damaged snapshot.
    pub line: usize,
    /// What was wrong with that line.
    pub message: String,
    /// Damaged lines in all, the first included.
    pub lines: usize,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)?;
        if self.lines > 1 {
            write!(f, " ({} damaged lines skipped in all)", self.lines)?;
        }
        Ok(())
    }
}

/// Reads a recording one snapshot at a time, so memory stays that of one line however long the
/// run was. Iterating yields every readable snapshot in order; [`RecordingReader::damage`] then
/// says which lines were skipped.
#[derive(Debug)]
pub struct RecordingReader<R> {
    input: R,
    header: RecordingHeader,
    /// Line number of the last line read (the header is line 1).
    line: usize,
    /// Byte offset of the next line.
    offset: u64,
    damage: Option<Damage>,
    buf: Vec<u8>,
    done: bool,
}

impl RecordingReader<BufReader<File>> {
    /// Opens a recording file and reads its header.
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        let file = File::open(path).map_err(|source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        RecordingReader::new(BufReader::new(file), path)
    }
}

impl<R: BufRead> RecordingReader<R> {
    /// Reads the header from any byte stream; `path` names it in errors. Only an unreadable header
    /// is an error: damage further on is skipped and reported by [`RecordingReader::damage`].
    pub fn new(mut input: R, path: &Path) -> Result<Self, RecordingError> {
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
        let header: RecordingHeader = serde_json::from_slice(&buf)
            .map_err(|e| header_err(format!("bad header line: {e}")))?;
        if header.schema != RECORDING_SCHEMA {
            return Err(header_err(format!(
                "schema '{}', expected '{RECORDING_SCHEMA}'",
                header.schema
            )));
        }
        Ok(RecordingReader {
            input,
            header,
            line: 1,
            offset: n as u64,
            damage: None,
            buf,
            done: false,
        })
    }

    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The lines skipped so far (all of them once iteration has ended).
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    fn damaged(&mut self, message: String) {
        match &mut self.damage {
            Some(d) => d.lines += 1,
            None => {
                self.damage = Some(Damage {
                    line: self.line,
                    message,
                    lines: 1,
                })
            }
        }
    }

    /// The next readable snapshot with the byte offset its line starts at.
    pub fn next_with_offset(&mut self) -> Option<(u64, Snapshot)> {
        while !self.done {
            self.buf.clear();
            self.line += 1;
            let start = self.offset;
            let n = match self.input.read_until(b'\n', &mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    self.done = true;
                    self.damaged(format!("read error: {e}"));
                    return None;
                }
            };
            if n == 0 {
                self.done = true;
                return None;
            }
            self.offset += n as u64;
            let complete = self.buf.ends_with(b"\n");
            let text = self.buf.trim_ascii();
            if text.is_empty() && complete {
                continue;
            }
            match serde_json::from_slice::<Snapshot>(text) {
                Ok(s) => return Some((start, s)),
                Err(e) if complete => self.damaged(format!("corrupted snapshot: {e}")),
                Err(e) => self.damaged(format!(
                    "cut-off last line (the recording was interrupted): {e}"
                )),
            }
        }
        None
    }
}

impl<R: BufRead> Iterator for RecordingReader<R> {
    type Item = Snapshot;

    fn next(&mut self) -> Option<Snapshot> {
        self.next_with_offset().map(|(_, s)| s)
    }
}

/// A recording read back whole: the header, every readable snapshot and the damage skipped.
///
/// This holds every snapshot in memory, which suits tests and short files; export and replay
/// stream instead ([`RecordingReader`], [`RecordingIndex`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub header: RecordingHeader,
    pub snapshots: Vec<Snapshot>,
    pub damage: Option<Damage>,
}

/// Reads a whole recording; see [`Recording`].
pub fn read_recording(path: &Path) -> Result<Recording, RecordingError> {
    collect(RecordingReader::open(path)?)
}

/// Reads a whole recording from any byte stream; see [`Recording`].
pub fn parse_recording(input: impl BufRead, path: &Path) -> Result<Recording, RecordingError> {
    collect(RecordingReader::new(input, path)?)
}

fn collect<R: BufRead>(mut reader: RecordingReader<R>) -> Result<Recording, RecordingError> {
    let snapshots = reader.by_ref().collect();
    Ok(Recording {
        header: reader.header,
        snapshots,
        damage: reader.damage,
    })
}

/// Where each snapshot of a recording file starts, for replay to seek in: one pass reads the file,
/// and afterwards only the snapshot being shown is in memory.
#[derive(Debug)]
pub struct RecordingIndex {
    path: PathBuf,
    file: BufReader<File>,
    header: RecordingHeader,
    /// Byte offset and elapsed seconds of each readable snapshot, in file order.
    entries: Vec<(u64, f64)>,
    tick_s: f64,
    damage: Option<Damage>,
    buf: Vec<u8>,
}

impl RecordingIndex {
    /// Reads the recording once, keeping each snapshot's offset and time but not the snapshot.
    pub fn open(path: &Path) -> Result<Self, RecordingError> {
        let mut reader = RecordingReader::open(path)?;
        let mut entries = Vec::new();
        let mut tick_s = None;
        while let Some((offset, snap)) = reader.next_with_offset() {
            tick_s.get_or_insert(snap.tick_s);
            entries.push((offset, snap.elapsed_s));
        }
        let file = File::open(path).map_err(|source| RecordingError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(RecordingIndex {
            path: path.to_path_buf(),
            file: BufReader::new(file),
            header: reader.header,
            entries,
            tick_s: tick_s.unwrap_or_default(),
            damage: reader.damage,
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// Readable snapshots.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The damaged lines the index skipped.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// The tick length of the first snapshot (0 when there is none).
    pub fn tick_s(&self) -> f64 {
        self.tick_s
    }

    /// Seconds since the run began at snapshot `i`.
    pub fn elapsed_s(&self, i: usize) -> Option<f64> {
        self.entries.get(i).map(|(_, e)| *e)
    }

    /// Reads snapshot `i` from the file again.
    pub fn load(&mut self, i: usize) -> Result<Snapshot, RecordingError> {
        let changed = |message: String| RecordingError::Changed {
            path: self.path.clone(),
            message,
        };
        let (offset, _) = *self
            .entries
            .get(i)
            .ok_or_else(|| changed(format!("no snapshot {i}")))?;
        self.buf.clear();
        self.file
            .seek(io::SeekFrom::Start(offset))
            .and_then(|_| self.file.read_until(b'\n', &mut self.buf))
            .map_err(|e| changed(e.to_string()))?;
        serde_json::from_slice(self.buf.trim_ascii()).map_err(|e| changed(e.to_string()))
    }
}
