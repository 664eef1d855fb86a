//! The real binary, headless: `perseus run` on shipped sessions, its JSON schema, exit codes,
//! recording and export.

use std::path::{Path, PathBuf};

use serde_json::Value;

#[path = "support/standalone.rs"]
mod standalone;
use standalone::Standalone;
#[path = "support/cli.rs"]
mod cli;
use cli::{check_schema, num, perseus, serial, text, tmp};

#[test]
fn demo_run_writes_a_result_that_matches_the_schema() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let json = dir.path().join("out.json");
    let csv = dir.path().join("out.csv");
    let out = perseus(
        &[
            "run",
            "sessions/demo.toml",
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for model in ["resnet50", "mobilenet_v2", "inception_v3"] {
        assert!(stdout.contains(model), "summary names {model}:\n{stdout}");
    }
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    check_schema(&r);
    assert_eq!(r["target"]["kind"], "emulated");
    // Every GPU figure of an emulated run comes from the emulator, and NVML says why it is absent.
    assert_eq!(r["gpu"]["source"], "emulator", "{}", r["gpu"]);
    assert!(r["gpu"]["util_mean"].is_number());
    for t in r["tenants"].as_array().unwrap() {
        let target = num(&t["target_rate"], "target_rate");
        let achieved = num(&t["achieved_rate"], "achieved_rate");
        assert!(
            achieved > 0.8 * target,
            "{} achieved {achieved} of {target}",
            t["model"]
        );
        assert!(t["server_ms"].is_object(), "server-side figures: {t}");
    }
    // The demo mix's capacity on the T4's model: headroom and the savings at capacity, in the JSON
    // and the summary alike; no savings at the operating point.
    let capacity = &r["capacity"];
    assert_eq!(capacity["status"], "known", "{capacity}");
    assert_eq!(capacity["gpu"], "Tesla T4");
    let k = num(&capacity["headroom"], "capacity.headroom");
    assert!(k > 1.0, "the demo meets its SLAs with room: headroom {k}");
    let equivalents = num(&capacity["equivalents"], "capacity.equivalents");
    num(
        &capacity["savings_vs_timeslicing_pct"],
        "capacity.savings_vs_timeslicing_pct",
    );
    assert_eq!(capacity["tenants"].as_array().map(Vec::len), Some(3));
    assert!(
        stdout.contains(&format!(
            "headroom ×{k:.2} · at capacity {equivalents:.2} equivalents"
        )),
        "summary carries the capacity:\n{stdout}"
    );
    assert!(!stdout.contains("savings vs"), "{stdout}");
    let rows = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        rows.lines().count(),
        1 + 3,
        "header and one row per tenant:\n{rows}"
    );
}

#[test]
fn every_shipped_session_runs_briefly() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let sessions = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions");
    let mut ran = 0;
    for entry in std::fs::read_dir(&sessions).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let json = dir.path().join(format!("{name}.json"));
        let mut args = vec![
            "run",
            path.to_str().unwrap(),
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ];
        // The real-Triton example is pointed at an emulator of our own.
        let emu;
        if name == "triton-local.toml" {
            emu = Standalone::spawn(&["--gpu", "t4", "--models", "resnet50,mobilenet_v2,simple"]);
            args.extend(["--triton", emu.grpc.as_str()]);
        }
        let out = perseus(&args, dir.path());
        assert!(out.status.success(), "{name}: {}", text(&out));
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        check_schema(&r);
        ran += 1;
    }
    assert!(ran >= 6, "ran {ran} sessions");
}

#[test]
fn bad_input_exits_2_and_names_the_place() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n\n[[tenant]]\nmodel = \"resnet5\"\nrate = 10\n",
    )
    .unwrap();
    let out = perseus(
        &["run", bad.to_str().unwrap(), "--duration", "1s"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:9") && err.contains("did you mean 'resnet50'"),
        "{err}"
    );
    let out = perseus(
        &["run", "sessions/demo.toml", "--duration", "soon"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn an_unreachable_target_exits_1() {
    let _one_at_a_time = serial();
    let dir = tmp();
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = perseus(
        &[
            "run",
            "sessions/demo.toml",
            "--duration",
            "1s",
            "--triton",
            &addr,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_recorded_run_replays_and_exports_with_the_run_totals() {
    let _one_at_a_time = serial();
    let dir = tmp();
    let json = dir.path().join("out.json");
    let out = perseus(
        &[
            "run",
            "sessions/demo.toml",
            "--duration",
            "3s",
            "--warmup",
            "0s",
            "--record",
            "--json",
            json.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let runs = dir.path().join("runs");
    let recording = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a recording in the data dir");
    let rec = perseus::session::read_recording(&recording).expect("the recording reads back");
    assert!(rec.damage.is_none(), "{:?}", rec.damage);
    assert!(
        rec.snapshots.len() >= 8,
        "{} snapshots",
        rec.snapshots.len()
    );

    // Replay at 4×: every snapshot comes back equal to the recorded one.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let replayed = rt.block_on(async {
        use perseus::vocab::command::ReplayCommand;
        let first = std::sync::Arc::new(rec.snapshots[0].clone());
        let (tx, mut rx) = tokio::sync::watch::channel(first);
        let (ctrl_tx, ctrl_rx) = tokio::sync::mpsc::channel(4);
        ctrl_tx.send(ReplayCommand::CycleSpeed).await.unwrap();
        ctrl_tx.send(ReplayCommand::CycleSpeed).await.unwrap();
        let n = rec.snapshots.len();
        let index = perseus::session::RecordingIndex::open(&recording).unwrap();
        let player = tokio::spawn(perseus::session::replay(index, tx, ctrl_rx));
        let mut seen = Vec::new();
        while seen.len() < n {
            if tokio::time::timeout(std::time::Duration::from_secs(10), rx.changed())
                .await
                .is_err()
            {
                break;
            }
            let s = rx.borrow_and_update().clone();
            if seen
                .last()
                .is_none_or(|l: &perseus::vocab::snapshot::Snapshot| l.seq != s.seq)
            {
                seen.push((*s).clone());
            }
        }
        player.abort();
        seen
    });
    assert!(!replayed.is_empty());
    for s in &replayed {
        let orig = rec
            .snapshots
            .iter()
            .find(|o| o.seq == s.seq)
            .expect("replayed snapshot was recorded");
        let mut a = s.clone();
        let mut b = orig.clone();
        a.replay = None;
        b.replay = None;
        a.history = Default::default();
        b.history = Default::default();
        assert_eq!(a, b, "snapshot {} differs after replay", s.seq);
    }
    let speeds: Vec<f64> = replayed
        .iter()
        .filter_map(|s| s.replay.map(|r| r.speed))
        .collect();
    assert!(speeds.contains(&4.0), "played at 4×: {speeds:?}");

    // Export: the last tick's totals equal the run's JSON result.
    let csv = dir.path().join("export.csv");
    let out = perseus(
        &[
            "export",
            recording.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = csv_text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name} in {header:?}"))
    };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows.len(),
        rec.snapshots.len() * 3,
        "one row per tick and tenant"
    );
    let result: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let last_seq = rows.last().unwrap()[col("seq")];
    for t in result["tenants"].as_array().unwrap() {
        let model = t["model"].as_str().unwrap();
        let row = rows
            .iter()
            .find(|r| r[col("seq")] == last_seq && r[col("model")] == model)
            .unwrap_or_else(|| panic!("last row for {model}"));
        for (column, key) in [
            ("total_sent", "sent"),
            ("total_ok", "ok"),
            ("total_errors", "errors"),
        ] {
            assert_eq!(
                row[col(column)].parse::<u64>().unwrap(),
                t[key].as_u64().unwrap(),
                "{model} {key}"
            );
        }
    }
}
