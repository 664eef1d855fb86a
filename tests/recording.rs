//! Recordings: write, read back, damage, replay pacing and control, CSV export.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use common::{TICK_S, header, run};
use perseus::session::{
    Recorder, RecordingIndex, RecordingReader, export_csv, read_recording, record_snapshots, replay,
};
use perseus::vocab::command::ReplayCommand;
use perseus::vocab::snapshot::{History, NoticeLevel, Snapshot};
use tokio::sync::{mpsc, watch};

fn record(dir: &Path, snaps: &[Snapshot]) -> std::path::PathBuf {
    let mut rec = Recorder::create(dir, "demo, with \"quotes\"/slashes", header()).unwrap();
    for s in snaps {
        rec.record(s).unwrap();
    }
    assert_eq!(rec.snapshots(), snaps.len() as u64);
    rec.path().to_path_buf()
}

#[test]
fn a_recording_reads_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(80, &["resnet50", "mobilenet_v2", "inception_v3"]);
    let path = record(dir.path(), &snaps);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with("-demo-with-quotes-slashes.jsonl"), "{name}");
    let rec = read_recording(&path).unwrap();
    assert_eq!(rec.header, header());
    assert_eq!(rec.damage, None);
    assert_eq!(rec.snapshots, snaps);
}

#[test]
fn two_recordings_in_the_same_second_get_distinct_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = Recorder::create(dir.path(), "x", header()).unwrap();
    let b = Recorder::create(dir.path(), "x", header()).unwrap();
    assert_ne!(a.path(), b.path());
}

#[test]
fn a_recording_cut_mid_line_replays_the_prefix_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(20, &["resnet50", "vgg16"]);
    let path = record(dir.path(), &snaps);
    let bytes = std::fs::read(&path).unwrap();
    // Cut in the middle of the last snapshot (line 21: header + 20 snapshots).
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let cut = last_start + (bytes.len() - last_start) / 2;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let rec = read_recording(&path).unwrap();
    assert_eq!(rec.snapshots, snaps[..19]);
    let damage = rec.damage.unwrap();
    assert_eq!(damage.line, 21);
    assert!(
        damage.message.starts_with("cut-off last line"),
        "{}",
        damage.message
    );
}

/// A recording of `snaps` whose line 12 (snapshot 10) no longer parses.
fn with_corrupt_line_12(dir: &Path, snaps: &[Snapshot]) -> std::path::PathBuf {
    let path = record(dir, snaps);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[11] = lines[11].replacen('{', "[", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn a_corrupted_middle_line_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(30, &["resnet50"]);
    let path = with_corrupt_line_12(dir.path(), &snaps);
    let rec = read_recording(&path).unwrap();
    let mut expected = snaps.clone();
    expected.remove(10);
    assert_eq!(rec.snapshots, expected, "every other line is read");
    let damage = rec.damage.unwrap();
    assert_eq!((damage.line, damage.lines), (12, 1));
    assert!(
        damage.message.starts_with("corrupted snapshot"),
        "{}",
        damage.message
    );
}

#[test]
fn every_damaged_line_is_counted_and_the_first_named() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(30, &["resnet50"]);
    let path = record(dir.path(), &snaps);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for i in [5, 6, 20] {
        lines[i] = "\u{1}garbage".to_string();
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let mut reader = RecordingReader::open(&path).unwrap();
    assert_eq!(reader.by_ref().count(), 27);
    let damage = reader.damage().unwrap();
    assert_eq!((damage.line, damage.lines), (6, 3));
    assert!(damage.to_string().contains("3 damaged lines"), "{damage}");
}

#[test]
fn an_export_of_a_damaged_recording_has_every_other_tick() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(30, &["resnet50", "vgg16"]);
    let path = with_corrupt_line_12(dir.path(), &snaps);
    let mut reader = RecordingReader::open(&path).unwrap();
    let mut out = Vec::new();
    let rows = export_csv(reader.by_ref(), &mut out).unwrap();
    assert_eq!(rows, 29 * 2);
    assert_eq!(reader.damage().map(|d| (d.line, d.lines)), Some((12, 1)));
    let mut csv = csv::Reader::from_reader(out.as_slice());
    let seqs: Vec<String> = csv
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .step_by(2)
        .collect();
    let want: Vec<String> = (0..30)
        .filter(|s| *s != 10)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seqs, want);
}

#[tokio::test(start_paused = true)]
async fn a_damaged_recording_replays_every_other_snapshot_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(30, &["resnet50"]);
    let path = with_corrupt_line_12(dir.path(), &snaps);
    let index = RecordingIndex::open(&path).unwrap();
    assert_eq!(index.len(), 29);
    let (tx, rx) = watch::channel(Arc::new(snaps[0].clone()));
    let (ctrl_tx, ctrl_rx) = mpsc::channel(8);
    let watcher = tokio::spawn(watch_all(rx));
    drop(ctrl_tx);
    replay(index, tx, ctrl_rx).await;
    let published: Vec<_> = watcher
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, s)| s.replay.is_some())
        .collect();
    let seqs: Vec<u64> = published.iter().map(|(_, s)| s.seq).collect();
    let want: Vec<u64> = (0..30).filter(|s| *s != 10).collect();
    assert_eq!(seqs, want);
    for (_, s) in &published {
        let notice = s
            .notices
            .last()
            .expect("a notice on every replayed snapshot");
        assert_eq!(notice.level, NoticeLevel::Warn);
        assert!(
            notice
                .text
                .contains("is damaged, line 12: corrupted snapshot"),
            "{}",
            notice.text
        );
    }
}

#[test]
fn a_file_without_a_header_is_not_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.jsonl");
    std::fs::write(&path, "{\"seq\": 1}\n").unwrap();
    let e = read_recording(&path).unwrap_err();
    assert!(e.to_string().contains(":1: not a Perseus recording"), "{e}");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut h = header();
    h.schema = "perseus.recording.v0".into();
    writeln!(f, "{}", serde_json::to_string(&h).unwrap()).unwrap();
    let e = read_recording(&path).unwrap_err();
    assert!(
        e.to_string().contains("schema 'perseus.recording.v0'"),
        "{e}"
    );
}

/// Collects every published snapshot with the (virtual) time it was published at.
async fn watch_all(mut rx: watch::Receiver<Arc<Snapshot>>) -> Vec<(f64, Arc<Snapshot>)> {
    let t0 = tokio::time::Instant::now();
    let mut seen = vec![(0.0, rx.borrow_and_update().clone())];
    while rx.changed().await.is_ok() {
        seen.push((t0.elapsed().as_secs_f64(), rx.borrow_and_update().clone()));
    }
    seen
}

/// An index over a recording of `snaps`, with the directory that holds it (keep it alive).
fn recording_of(snaps: &[Snapshot]) -> (tempfile::TempDir, RecordingIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = RecordingIndex::open(&record(dir.path(), snaps)).unwrap();
    (dir, index)
}

#[tokio::test(start_paused = true)]
async fn replay_publishes_every_snapshot_in_order_at_the_recorded_pace() {
    let snaps = run(40, &["resnet50", "inception_v3"]);
    let (_dir, rec) = recording_of(&snaps);
    let (tx, rx) = watch::channel(Arc::new(snaps[0].clone()));
    let (ctrl_tx, ctrl_rx) = mpsc::channel(8);
    let watcher = tokio::spawn(watch_all(rx));
    // No commands: dropping the sender lets the replay play to the end and return.
    drop(ctrl_tx);
    replay(rec, tx, ctrl_rx).await;
    let seen = watcher.await.unwrap();
    // Everything the replay published (the channel's initial value has no replay position).
    let published: Vec<_> = seen
        .into_iter()
        .filter(|(_, s)| s.replay.is_some())
        .collect();
    assert_eq!(published.len(), snaps.len());
    let mut history = History::for_tick(TICK_S);
    for ((at, got), want) in published.iter().zip(&snaps) {
        let mut plain = (**got).clone();
        let info = plain.replay.take().unwrap();
        history.push(want);
        assert_eq!(
            *got.history, history,
            "history rebuilt as the engine builds it"
        );
        plain.history = want.history.clone();
        assert_eq!(&plain, want);
        assert!((info.position_s - want.elapsed_s).abs() < 1e-9);
        assert!((info.length_s - 39.0 * TICK_S).abs() < 1e-9);
        // Published at the recorded offset (virtual time, so exact to the millisecond).
        assert!(
            (at - want.elapsed_s).abs() < 1e-3,
            "{at} vs {}",
            want.elapsed_s
        );
    }
    assert!(
        published.last().unwrap().1.replay.unwrap().paused,
        "the end shows as paused"
    );
}

#[tokio::test(start_paused = true)]
async fn speed_pause_and_seek_steer_the_replay() {
    let snaps = run(200, &["resnet50"]); // 49.75 s of recording
    let (_dir, rec) = recording_of(&snaps);
    let (tx, mut rx) = watch::channel(Arc::new(snaps[0].clone()));
    let (ctrl, ctrl_rx) = mpsc::channel(8);
    let player = tokio::spawn(replay(rec, tx, ctrl_rx));
    let info = |rx: &mut watch::Receiver<Arc<Snapshot>>| rx.borrow_and_update().replay.unwrap();

    tokio::time::sleep(std::time::Duration::from_millis(2_010)).await;
    let i = info(&mut rx);
    assert_eq!((i.position_s, i.speed, i.paused), (2.0, 1.0, false));

    // 4×: two more seconds of wall time cover eight recorded seconds.
    ctrl.send(ReplayCommand::CycleSpeed).await.unwrap();
    ctrl.send(ReplayCommand::CycleSpeed).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let i = info(&mut rx);
    assert_eq!(i.speed, 4.0);
    assert!((i.position_s - 10.0).abs() <= TICK_S, "{}", i.position_s);

    // Paused: time passes, the position does not.
    ctrl.send(ReplayCommand::TogglePause).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let paused_at = info(&mut rx);
    assert!(paused_at.paused);
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    assert_eq!(info(&mut rx).position_s, paused_at.position_s);

    // Seek back 10 s: history is rebuilt from the start up to the new position.
    ctrl.send(ReplayCommand::Seek(-10.0)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let snap = rx.borrow_and_update().clone();
    let back = snap.replay.unwrap();
    assert!((back.position_s - (paused_at.position_s - 10.0)).abs() < 1e-9);
    let mut history = History::for_tick(TICK_S);
    for s in snaps
        .iter()
        .take_while(|s| s.elapsed_s <= back.position_s + 1e-9)
    {
        history.push(s);
    }
    assert_eq!(*snap.history, history);
    assert_eq!(snap.seq, (back.position_s / TICK_S).round() as u64);

    // Seek past the end: held at the last snapshot, which shows as paused.
    ctrl.send(ReplayCommand::Seek(1e6)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let end = rx.borrow_and_update().clone();
    assert_eq!(end.seq, 199);
    assert!(end.replay.unwrap().paused);

    drop(ctrl);
    player.await.unwrap();
}

/// The export's columns, in order, as the README documents them.
const CSV_COLUMNS: &[&str] = &[
    "seq",
    "elapsed_s",
    "measured_s",
    "phase",
    "tenant_id",
    "model",
    "paused",
    "load",
    "target",
    "arrival",
    "batch",
    "offered_per_s",
    "achieved_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "service_p99_ms",
    "sla_latency_ms",
    "sla_percentile",
    "attainment",
    "sla_met",
    "goodput_per_s",
    "errors",
    "dropped",
    "late",
    "in_flight",
    "total_sent",
    "total_ok",
    "total_errors",
    "total_dropped",
    "total_late",
    "total_achieved_per_s",
    "server_queue_us",
    "server_compute_infer_us",
    "server_avg_batch",
    "gpu_util",
    "gpu_sm_activity",
    "gpu_memory_used_mb",
    "gpu_power_w",
    "usd_per_hour",
    "usd_per_million",
    "goodput_usd_per_million",
    "dedicated_equivalents",
];

#[test]
fn csv_has_one_row_per_tick_and_tenant() {
    let snaps = run(37, &["resnet50", "mobilenet_v2", "inception,v3"]);
    let mut out = Vec::new();
    let rows = export_csv(snaps.clone(), &mut out).unwrap();
    assert_eq!(rows, 37 * 3);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().next().unwrap(), CSV_COLUMNS.join(","));
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap(), CSV_COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 37 * 3);
    assert!(records.iter().all(|r| r.len() == CSV_COLUMNS.len()));
    let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    // Last row: the last tick's last tenant; its totals are the recorded ones.
    let last = snaps.last().unwrap();
    let t = &last.tenants[2];
    let cells = records.last().unwrap();
    assert_eq!(&cells[col("seq")], last.seq.to_string());
    // The model name holds a comma: quoted on the line, whole in the cell.
    assert!(text.lines().last().unwrap().contains(",\"inception,v3\","));
    assert_eq!(&cells[col("model")], "inception,v3");
    assert_eq!(&cells[col("total_sent")], t.totals.sent.to_string());
    assert_eq!(&cells[col("total_errors")], t.totals.errors.to_string());
    assert_eq!(&cells[col("usd_per_million")], "0.487");
    // A tenant row without server figures leaves those cells empty rather than zero.
    assert_eq!(&cells[col("server_queue_us")], "");
}

#[tokio::test]
async fn the_recorder_task_follows_the_engine_channel_until_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let snaps = run(12, &["resnet50"]);
    let rec = Recorder::create(dir.path(), "live", header()).unwrap();
    let (tx, rx) = watch::channel(Arc::new(snaps[0].clone()));
    let task = tokio::spawn(record_snapshots(rec, rx));
    for s in &snaps[1..] {
        tokio::task::yield_now().await;
        tx.send_replace(Arc::new(s.clone()));
    }
    drop(tx);
    let path = task.await.unwrap().unwrap();
    let back = read_recording(&path).unwrap();
    // The watch channel may coalesce a slow recorder's ticks, but never reorders them and always
    // delivers the first and the last.
    let seqs: Vec<u64> = back.snapshots.iter().map(|s| s.seq).collect();
    assert_eq!(seqs.first(), Some(&0));
    assert_eq!(seqs.last(), Some(&11));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    for s in &back.snapshots {
        assert_eq!(s, &snaps[s.seq as usize]);
    }
}
