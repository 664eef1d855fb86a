//! The engine against a fake server that fails, stalls and recovers on cue.
//!
//! The fake answers the control calls from a small model table; it opens no request connections,
//! so tenants' sends fail locally and what is tested is the engine's own logic: backoff,
//! reconnection, tenant set-up, statistics windows, recording.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::engine::connection::backoff;
use crate::engine::error::PersistError;
use crate::engine::hooks::{NoKnowledge, NoPersistence, NoTelemetry, Persistence, SnapshotSink};
use crate::engine::server::{Connector, IndexEntry, Link, ServerControl};
use crate::engine::{EngineConfig, EngineHandle, start_with};
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::{ModelConfig, ModelInstanceGroup, ModelMetadataResponse};
use crate::triton::{ConnectOptions, DurationStat, ModelStats, TritonError};
use crate::vocab::command::Command;
use crate::vocab::snapshot::{
    ClientBoundReason, ConnState, NoticeLevel, Phase, Snapshot, TargetInfo, TargetKind,
};
use crate::vocab::spec::{
    Arrival, CostSpec, InputData, Load, RunSpec, Sla, TargetSpec, TenantSpec,
};

#[derive(Default)]
struct FakeState {
    /// Connection attempts that fail before one succeeds.
    refuse_connects: u32,
    connects: u32,
    /// The server is unreachable: every call fails as a refused connection.
    down: bool,
    /// Models it serves; any other is NOT_FOUND.
    models: Vec<String>,
    /// Inferences reported so far per model (grows with each statistics poll).
    inferences: BTreeMap<String, u64>,
    /// The next statistics poll reports totals from zero again (a restarted server).
    reset_stats: bool,
    /// Tenant set-ups seen (each reads the model's metadata once).
    setups: u32,
    /// How long reading a model's metadata takes (a slow set-up), per model.
    setup_delay: BTreeMap<String, Duration>,
}

/// The fake server; clones share one state.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn serving(models: &[&str]) -> Fake {
        let fake = Fake::default();
        fake.with(|s| s.models = models.iter().map(|m| m.to_string()).collect());
        fake
    }

    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn refused() -> TritonError {
        TritonError::Connect {
            address: "fake:8001".into(),
            message: "Connection refused".into(),
        }
    }

    fn check_up(&self) -> Result<(), TritonError> {
        if self.with(|s| s.down) {
            Err(Fake::refused())
        } else {
            Ok(())
        }
    }

    fn check_model(&self, model: &str) -> Result<(), TritonError> {
        self.check_up()?;
        if self.with(|s| s.models.iter().any(|m| m == model)) {
            Ok(())
        } else {
            Err(TritonError::Status {
                code: tonic::Code::NotFound,
                message: format!("Request for unknown model: '{model}' is not found"),
            })
        }
    }
}

impl Connector for Fake {
    fn connect(&self) -> BoxFuture<'_, Result<Link, TritonError>> {
        Box::pin(async move {
            let refuse = self.with(|s| {
                s.connects += 1;
                s.connects <= s.refuse_connects || s.down
            });
            if refuse {
                return Err(Fake::refused());
            }
            Ok(Link {
                control: Arc::new(self.clone()),
                requests: Arc::new(Vec::new()),
            })
        })
    }
}

impl ServerControl for Fake {
    fn server_live(&self) -> BoxFuture<'_, Result<bool, TritonError>> {
        Box::pin(async move { self.check_up().map(|()| true) })
    }
    fn server_version(&self) -> BoxFuture<'_, Result<String, TritonError>> {
        Box::pin(async move { self.check_up().map(|()| "fake-1".to_string()) })
    }
    fn model_ready<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<bool, TritonError>> {
        Box::pin(async move { self.check_model(model).map(|()| true) })
    }
    fn model_metadata<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelMetadataResponse, TritonError>> {
        Box::pin(async move {
            self.check_model(model)?;
            let delay = self.with(|s| {
                s.setups += 1;
                s.setup_delay.get(model).copied()
            });
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let tensor = |name: &str| TensorMetadata {
                name: name.into(),
                datatype: "INT32".into(),
                shape: vec![-1, 16],
            };
            Ok(ModelMetadataResponse {
                name: model.into(),
                versions: vec!["1".into()],
                platform: "fake".into(),
                inputs: vec![tensor("INPUT0")],
                outputs: vec![tensor("OUTPUT0")],
            })
        })
    }
    fn model_config<'a>(
        &'a self,
        model: &'a str,
    ) -> BoxFuture<'a, Result<ModelConfig, TritonError>> {
        Box::pin(async move {
            self.check_model(model)?;
            Ok(ModelConfig {
                name: model.into(),
                max_batch_size: 8,
                instance_group: vec![ModelInstanceGroup {
                    count: 1,
                    ..Default::default()
                }],
                ..Default::default()
            })
        })
    }
    fn load_model<'a>(
        &'a self,
        model: &'a str,
        _config_json: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TritonError>> {
        Box::pin(async move { self.check_model(model) })
    }
    fn unload_model<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<(), TritonError>> {
        Box::pin(async move { self.check_model(model) })
    }
    fn statistics(&self) -> BoxFuture<'_, Result<Vec<ModelStats>, TritonError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(self.with(|s| {
                let reset = std::mem::take(&mut s.reset_stats);
                let models = s.models.clone();
                models
                    .into_iter()
                    .map(|name| {
                        let n = s.inferences.entry(name.clone()).or_default();
                        *n = if reset { 10 } else { *n + 100 };
                        let stat = DurationStat {
                            count: *n,
                            ns: *n * 1_000_000,
                        };
                        ModelStats {
                            name,
                            version: "1".into(),
                            inference_count: *n,
                            execution_count: *n,
                            success: stat,
                            queue: stat,
                            compute_infer: stat,
                            ..Default::default()
                        }
                    })
                    .collect()
            }))
        })
    }
    fn repository_index(&self) -> BoxFuture<'_, Result<Vec<IndexEntry>, TritonError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(self.with(|s| {
                s.models
                    .iter()
                    .map(|m| IndexEntry {
                        name: m.clone(),
                        state: "READY".into(),
                    })
                    .collect()
            }))
        })
    }
}

fn tenant(model: &str) -> TenantSpec {
    TenantSpec {
        model: model.into(),
        load: Load::Rate {
            per_s: 5.0,
            arrival: Arrival::Constant,
        },
        batch: 1,
        sla: Sla {
            latency_ms: 100.0,
            percentile: 95.0,
        },
        instances: None,
        dynamic_batching: None,
        data: InputData::Zero,
        max_in_flight: TenantSpec::DEFAULT_MAX_IN_FLIGHT,
        deadline: TenantSpec::DEFAULT_DEADLINE,
        inputs: Vec::new(),
    }
}

fn config(tenants: Vec<TenantSpec>, persistence: Arc<dyn Persistence>) -> EngineConfig {
    EngineConfig {
        spec: RunSpec {
            name: "fake".into(),
            duration: Duration::from_secs(600),
            warmup: Duration::ZERO,
            window: Duration::from_secs(2),
            tick: Duration::from_millis(50),
            target: TargetSpec::Emulated {
                gpu: "t4".into(),
                profile: None,
            },
            transport: None,
            cost: CostSpec::UsdPerHour(1.0),
            tenants,
        },
        target: TargetInfo {
            kind: TargetKind::Triton,
            address: "fake:8001".into(),
            gpu: None,
            server_version: None,
            model_control: true,
        },
        connect: ConnectOptions::new("fake:8001"),
        connections: 1,
        headless: false,
        price: None,
        knowledge: Arc::new(NoKnowledge),
        telemetry: Arc::new(NoTelemetry),
        persistence,
        record: false,
    }
}

fn start(fake: &Fake, cfg: EngineConfig) -> EngineHandle {
    start_with(cfg, Arc::new(fake.clone())).unwrap()
}

/// Waits (up to 20 s) for a snapshot satisfying `pred`.
async fn wait_for(h: &mut EngineHandle, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let snap = Arc::clone(&h.snapshots.borrow_and_update());
        if pred(&snap) {
            return snap;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached; last: phase {:?}, connection {:?}, notices {:?}",
            snap.phase,
            snap.connection,
            snap.notices
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), h.snapshots.changed()).await;
    }
}

fn has_notice(s: &Snapshot, level: NoticeLevel, text: &str) -> bool {
    s.notices
        .iter()
        .any(|n| n.level == level && n.text.contains(text))
}

async fn stop(h: EngineHandle) -> Arc<Snapshot> {
    let _ = h.commands.send(Command::Stop).await;
    h.done.await.unwrap()
}

#[test]
fn backoff_doubles_from_a_quarter_second_to_five() {
    let waits: Vec<u128> = (0..8).map(|r| backoff(r).as_millis()).collect();
    assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_with_backoff_until_it_connects() {
    let fake = Fake::serving(&["simple"]);
    fake.with(|s| s.refuse_connects = 2);
    let mut h = start(
        &fake,
        config(vec![tenant("simple")], Arc::new(NoPersistence)),
    );
    let waiting = wait_for(&mut h, |s| s.connection.retries >= 1).await;
    assert_eq!(waiting.connection.state, ConnState::Connecting);
    let why = waiting.connection.last_error.clone().unwrap_or_default();
    assert!(why.contains("Connection refused"), "{why}");
    let up = wait_for(&mut h, |s| s.phase == Phase::Measuring).await;
    assert_eq!(up.connection.state, ConnState::Connected);
    assert_eq!(up.connection.retries, 0);
    assert_eq!(up.target.server_version.as_deref(), Some("fake-1"));
    assert_eq!(
        fake.with(|s| s.connects),
        3,
        "two refusals, then one success"
    );
    assert_eq!(
        up.tenants[0].instances,
        Some(1),
        "read back from the config"
    );
    stop(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_server_is_polled_until_it_is_back_and_tenants_are_set_up_again() {
    let fake = Fake::serving(&["simple"]);
    let mut h = start(
        &fake,
        config(vec![tenant("simple")], Arc::new(NoPersistence)),
    );
    wait_for(&mut h, |s| s.phase == Phase::Measuring).await;
    let setups_before = fake.with(|s| s.setups);
    fake.with(|s| s.down = true);
    // Setting up a new tenant finds the server gone: that is a lost connection, not a bad tenant.
    h.commands
        .send(Command::AddTenant(Box::new(tenant("simple"))))
        .await
        .unwrap();
    let down = wait_for(&mut h, |s| s.connection.state == ConnState::Disconnected).await;
    assert!(
        has_notice(&down, NoticeLevel::Error, "lost the server"),
        "{:?}",
        down.notices
    );
    wait_for(&mut h, |s| s.connection.retries >= 1).await;
    fake.with(|s| s.down = false);
    let back = wait_for(&mut h, |s| {
        s.connection.state == ConnState::Connected
            && s.tenants.len() == 2
            && s.tenants.iter().all(|t| t.instances.is_some())
    })
    .await;
    assert!(has_notice(&back, NoticeLevel::Info, "server is back"));
    // Both tenants were set up again on the server that came back.
    assert!(fake.with(|s| s.setups) >= setups_before + 2);
    stop(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_fails_its_tenant_and_the_others_still_measure() {
    let fake = Fake::serving(&["simple"]);
    let mut h = start(
        &fake,
        config(
            vec![tenant("simple"), tenant("resnet5")],
            Arc::new(NoPersistence),
        ),
    );
    let snap = wait_for(&mut h, |s| s.phase == Phase::Measuring).await;
    assert_eq!(snap.connection.state, ConnState::Connected);
    let failed = snap
        .notices
        .iter()
        .find(|n| n.level == NoticeLevel::Error)
        .map(|n| n.text.clone())
        .unwrap_or_default();
    assert!(failed.contains("'resnet5'"), "{failed}");
    assert!(failed.contains("NOT_FOUND"), "{failed}");
    assert_eq!(snap.tenants[0].instances, Some(1));
    assert_eq!(snap.tenants[1].instances, None, "never set up");
    stop(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_that_go_back_restart_the_server_window() {
    let fake = Fake::serving(&["simple"]);
    let mut h = start(
        &fake,
        config(vec![tenant("simple")], Arc::new(NoPersistence)),
    );
    let before = wait_for(&mut h, |s| s.tenants[0].server.is_some()).await;
    assert!(before.tenants[0].server.is_some_and(|w| w.avg_batch == 1.0));
    fake.with(|s| s.reset_stats = true);
    let after = wait_for(&mut h, |s| {
        has_notice(s, NoticeLevel::Warn, "went back") && s.tenants[0].server.is_some()
    })
    .await;
    // Diffed only after the reset: every figure is what the fake reports per inference, never
    // a wrapped-around or negative count.
    let w = after.tenants[0].server.unwrap_or_default();
    assert!(
        w.inferences_per_s > 0.0 && w.inferences_per_s.is_finite(),
        "{w:?}"
    );
    assert!((w.queue_us - 1000.0).abs() < 1e-6, "{w:?}");
    assert_eq!(w.avg_batch, 1.0);
    stop(h).await;
}

/// A sink that holds every write until released, or fails from a given write on.
struct TestSink {
    written: Arc<Mutex<u64>>,
    gate: Option<std::sync::mpsc::Receiver<()>>,
    fail_from: Option<u64>,
}

impl SnapshotSink for TestSink {
    fn write(&mut self, _: &Snapshot) -> Result<(), PersistError> {
        if let Some(gate) = &self.gate {
            // Returns once the test drops its sender.
            let _ = gate.recv();
        }
        let mut n = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        *n += 1;
        if self.fail_from.is_some_and(|f| *n >= f) {
            return Err(PersistError::Write {
                path: PathBuf::from("/full/run.jsonl"),
                cause: std::io::Error::from_raw_os_error(28).into(),
            });
        }
        Ok(())
    }
    fn path(&self) -> String {
        "/full/run.jsonl".into()
    }
}

struct TestPersistence(Mutex<Option<TestSink>>);

impl Persistence for TestPersistence {
    fn save_session(&self, _: &RunSpec, _: Option<PathBuf>) -> Result<PathBuf, PersistError> {
        Err(PersistError::Unavailable { what: "saving" })
    }
    fn start_recording(&self, _: &RunSpec) -> Result<Box<dyn SnapshotSink>, PersistError> {
        let sink = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        match sink {
            Some(s) => Ok(Box::new(s)),
            None => Err(PersistError::Unavailable { what: "recording" }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_write_error_stops_recording_and_shows_in_the_snapshot() {
    let fake = Fake::serving(&["simple"]);
    let written = Arc::new(Mutex::new(0));
    let sink = TestSink {
        written: Arc::clone(&written),
        gate: None,
        fail_from: Some(3),
    };
    let mut cfg = config(
        vec![tenant("simple")],
        Arc::new(TestPersistence(Mutex::new(Some(sink)))),
    );
    cfg.record = true;
    let mut h = start(&fake, cfg);
    let snap = wait_for(&mut h, |s| s.recording_error.is_some()).await;
    let why = snap.recording_error.clone().unwrap_or_default();
    assert!(why.contains("recording stopped"), "{why}");
    assert!(why.contains("/full/run.jsonl"), "{why}");
    assert!(has_notice(&snap, NoticeLevel::Error, "recording stopped"));
    assert_eq!(snap.recording, None);
    let fin = stop(h).await;
    assert!(fin.recording_error.is_some(), "the final snapshot keeps it");
    assert_eq!(
        *written.lock().unwrap(),
        3,
        "nothing written after the failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_disk_does_not_hold_up_the_ticks() {
    let fake = Fake::serving(&["simple"]);
    let written = Arc::new(Mutex::new(0));
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let sink = TestSink {
        written: Arc::clone(&written),
        gate: Some(gate),
        fail_from: None,
    };
    let mut cfg = config(
        vec![tenant("simple")],
        Arc::new(TestPersistence(Mutex::new(Some(sink)))),
    );
    cfg.record = true;
    let mut h = start(&fake, cfg);
    // The first write blocks on the gate; ticks go on past the recorder's whole queue.
    let snap = wait_for(&mut h, |s| s.seq >= 100).await;
    assert_eq!(*written.lock().unwrap(), 0);
    assert!(snap.recording.is_some());
    assert!(has_notice(&snap, NoticeLevel::Warn, "skips snapshots"));
    drop(release);
    let fin = stop(h).await;
    // Released, the writer drains its queue before the run ends.
    let n = *written.lock().unwrap();
    assert!(n > 1 && n <= 66, "{n} written");
    assert_eq!(fin.recording_error, None);
}

#[path = "tests/capacity.rs"]
mod capacity;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_that_cannot_keep_its_schedule_is_flagged_client_bound() {
    // Far more arrivals than one clock can dispatch: it falls further behind every tick.
    let mut starved = tenant("simple");
    starved.load = Load::Rate {
        per_s: 50_000_000.0,
        arrival: Arrival::Constant,
    };
    let fake = Fake::serving(&["simple"]);
    let mut h = start(&fake, config(vec![starved], Arc::new(NoPersistence)));
    let snap = wait_for(&mut h, |s| {
        s.tenants[0].window.client_bound.is_some() && s.client.window.is_some()
    })
    .await;
    stop(h).await;
    let flag = snap.tenants[0]
        .window
        .client_bound
        .clone()
        .unwrap_or_default();
    assert!(
        flag.reasons.contains(&ClientBoundReason::LateSends),
        "{flag:?}"
    );
    assert!(flag.behind_ms > 10.0, "{flag:?}");
    assert!(
        flag.short().starts_with("client behind by"),
        "{}",
        flag.short()
    );
    let run = snap.client.window.clone().unwrap_or_default();
    assert!(
        run.reasons.contains(&ClientBoundReason::LateSends),
        "{run:?}"
    );
    // The flag travels with the snapshot, so a recording (and its replay) carries it.
    let json = serde_json::to_string(&*snap).unwrap_or_default();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back.client, snap.client);
    assert_eq!(back.tenants[0].window.client_bound, Some(flag));
}

/// Every tenant's arrivals start at one origin, once all are set up, and the measured period is the
/// run's duration from there, not rounded up to a tick: what `perseus predict` counts too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_share_one_origin_and_the_measured_period_ends_on_time() {
    // A burst of 25 sends 20 ms apart, then 2 s of quiet: which of them fall in the measured period
    // depends on where the period starts in the sequence.
    let mut burst = tenant("a");
    let mut gaps = vec![20_000; 25];
    gaps.push(2_000_000);
    burst.load = Load::Rate {
        per_s: 26.0 / 2.5,
        arrival: Arrival::Trace {
            path: PathBuf::from("burst.txt"),
            gaps_us: Arc::new(gaps),
        },
    };
    let fake = Fake::serving(&["a", "b"]);
    fake.with(|s| {
        s.setup_delay
            .insert("b".to_string(), Duration::from_millis(700))
    });
    let mut cfg = config(vec![burst, tenant("b")], Arc::new(NoPersistence));
    cfg.headless = true;
    cfg.spec.duration = Duration::from_millis(400);
    cfg.spec.tick = Duration::from_secs(1);
    let h = start(&fake, cfg);
    let fin = h.done.await.unwrap();
    assert_eq!(fin.phase, Phase::Finished);
    // Started at its own set-up, 0.7 s before the other's, the burst would be over before the
    // period began.
    let sent = fin.tenants[0].totals.sent;
    assert!((15..=25).contains(&sent), "{sent} of the burst measured");
    // Ended at the next 1 s tick, the period would be about twice as long.
    assert!(
        fin.measured_s >= 0.4 && fin.measured_s < 0.65,
        "{}",
        fin.measured_s
    );
}
