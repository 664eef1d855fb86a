//! Resolving what a run talks to: the embedded emulator or a real Triton, and what is known about it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use crate::catalog::Catalog;
use crate::cli::TargetArgs;
use crate::commands::hooks::{EmulatorKnowledge, ProbedKnowledge};
use crate::commands::{BadInput, Failure, TargetFailed};
use crate::emulator::{Emulator, EmulatorConfig, RunningEmulator, ServeLimits};
use crate::engine::hooks::TargetKnowledge;
use crate::measure::PeakCache;
use crate::session;
use crate::telemetry::NvmlChoice;
use crate::triton::{ConnectOptions, TlsOptions};
use crate::vocab::snapshot::{TargetInfo, TargetKind};
use crate::vocab::spec::{RunSpec, TargetSpec, TlsSpec, Transport};

/// A resolved target, keeping an embedded emulator alive for as long as it is held.
pub struct Target {
    pub info: TargetInfo,
    pub connect: ConnectOptions,
    pub metrics_url: Option<String>,
    pub knowledge: Arc<dyn TargetKnowledge>,
    pub nvml: NvmlChoice,
    pub embedded: Option<RunningEmulator>,
}

impl Target {
    pub async fn shutdown(self) {
        if let Some(emu) = self.embedded {
            emu.shutdown().await;
        }
    }
}

/// Applies `--triton` and friends over the session's `[target]`: the one place where the command
/// line's target flags meet the session's.
///
/// A flag overrides the session's value; the TLS flags override or complete the session's `tls`
/// field by field (a new `--triton` address keeps the session's TLS: a connection is never
/// downgraded to plaintext by a flag). TLS flags for the embedded emulator, which speaks
/// plaintext on loopback, are refused rather than ignored, and every TLS file is read here so
/// that a wrong path is a bad flag, not a failed connection.
pub fn apply_target_args(spec: &mut RunSpec, args: &TargetArgs) -> Result<(), Failure> {
    let flags = tls_flags(args);
    if args.triton.is_none() && matches!(spec.target, TargetSpec::Emulated { .. }) {
        if let Some((flag, _)) = flags.first() {
            return Err(Failure::BadInput(anyhow!(
                "{flag} applies to a real Triton (--triton, or triton in the session's [target]); \
                 the embedded emulator speaks plaintext on loopback"
            )));
        }
        let telemetry = [
            ("--metrics", args.metrics.is_some()),
            ("--gpu", args.gpu.is_some()),
        ];
        if let Some((flag, _)) = telemetry.iter().find(|(_, given)| *given) {
            return Err(Failure::BadInput(anyhow!(
                "{flag} applies to a real Triton (--triton, or triton in the session's [target]); \
                 the embedded emulator reports its own GPU"
            )));
        }
    }
    for (flag, path) in flags.iter().filter_map(|(f, p)| p.map(|p| (f, p))) {
        std::fs::File::open(path)
            .with_context(|| format!("{flag} {}", path.display()))
            .bad_input()?;
    }
    let session_tls = match &spec.target {
        TargetSpec::Triton { tls, .. } => tls.clone(),
        TargetSpec::Emulated { .. } => None,
    };
    if let Some(address) = &args.triton {
        spec.target = TargetSpec::Triton {
            address: address.clone(),
            metrics: args.metrics.clone(),
            gpu: args.gpu.clone(),
            tls: None,
        };
    }
    if let TargetSpec::Triton {
        metrics, gpu, tls, ..
    } = &mut spec.target
    {
        if args.metrics.is_some() {
            metrics.clone_from(&args.metrics);
        }
        if args.gpu.is_some() {
            gpu.clone_from(&args.gpu);
        }
        *tls = merge_tls(session_tls, args);
        if let (Some(tls), Some((flag, _))) = (tls.as_ref(), flags.first())
            && tls.ca_file.is_none()
        {
            return Err(Failure::BadInput(anyhow!(
                "{flag} needs the server's CA certificate too: --tls-ca FILE, or tls.ca in the \
                 session"
            )));
        }
    }
    Ok(())
}

/// The TLS flags given, with the file each names (`--tls-domain` names none).
fn tls_flags(args: &TargetArgs) -> Vec<(&'static str, Option<&Path>)> {
    let mut given = Vec::new();
    for (flag, path) in [
        ("--tls-ca", &args.tls_ca),
        ("--tls-cert", &args.tls_cert),
        ("--tls-key", &args.tls_key),
    ] {
        if let Some(p) = path {
            given.push((flag, Some(p.as_path())));
        }
    }
    if args.tls_domain.is_some() {
        given.push(("--tls-domain", None));
    }
    given
}

fn merge_tls(session: Option<TlsSpec>, args: &TargetArgs) -> Option<TlsSpec> {
    if tls_flags(args).is_empty() {
        return session;
    }
    let mut tls = session.unwrap_or_default();
    if args.tls_ca.is_some() {
        tls.ca_file.clone_from(&args.tls_ca);
    }
    // clap makes --tls-cert and --tls-key come together: they replace the pair.
    if args.tls_cert.is_some() {
        tls.cert_file.clone_from(&args.tls_cert);
        tls.key_file.clone_from(&args.tls_key);
    }
    if args.tls_domain.is_some() {
        tls.domain.clone_from(&args.tls_domain);
    }
    Some(tls)
}

/// Starts the embedded emulator or prepares the connection to a real Triton.
pub async fn resolve(
    spec: &RunSpec,
    catalog: &Catalog,
    catalog_dir: Option<&Path>,
) -> Result<Target, Failure> {
    match &spec.target {
        TargetSpec::Emulated { gpu, profile } => {
            let gpu_spec = catalog
                .gpu(gpu)
                .ok_or_else(|| anyhow!("unknown GPU '{gpu}' in the catalog"))
                .bad_input()?
                .clone();
            let mut models: Vec<String> = Vec::new();
            for t in &spec.tenants {
                if !models.contains(&t.model) {
                    models.push(t.model.clone());
                }
            }
            let emu = Emulator::start(EmulatorConfig {
                gpu: gpu.clone(),
                profile: profile.clone(),
                models,
                grpc: loopback(),
                http: loopback(),
                metrics: loopback(),
                catalog_dir: catalog_dir.map(Path::to_path_buf),
                limits: embedded_limits(),
            })
            .await
            .context("starting the embedded emulator")
            .target_failed()?;
            let address = emu.grpc_addr.to_string();
            Ok(Target {
                info: TargetInfo {
                    kind: TargetKind::Emulated,
                    address: address.clone(),
                    gpu: Some(gpu_spec.display.clone()),
                    server_version: None,
                    model_control: true,
                },
                connect: ConnectOptions {
                    // The embedded emulator is always on this machine: shared memory by default.
                    transport: match legacy_grpc() {
                        true => Transport::Grpc,
                        false => spec.transport.unwrap_or(Transport::Shm),
                    },
                    legacy_grpc: legacy_grpc(),
                    ..ConnectOptions::new(&address)
                },
                metrics_url: Some(format!("http://{}/metrics", emu.metrics_addr)),
                knowledge: Arc::new(EmulatorKnowledge {
                    catalog: catalog.clone(),
                    gpu: gpu.clone(),
                    profile: profile.clone(),
                }),
                // Tried anyway so that the view says why a local GPU is not shown.
                nvml: NvmlChoice::Auto,
                embedded: Some(emu),
            })
        }
        TargetSpec::Triton {
            address,
            metrics,
            gpu,
            tls,
        } => {
            let mut connect = ConnectOptions::new(address);
            connect.tls = tls.as_ref().map(TlsOptions::from);
            connect.legacy_grpc = legacy_grpc();
            connect.transport = spec.transport.unwrap_or_default();
            // The session's check, again for an address that came from --triton.
            if connect.transport == Transport::Shm && !session::is_loopback(address) {
                return Err(Failure::BadInput(anyhow!(
                    "transport = \"shm\" needs the server on this machine (a loopback address \
                     such as 'localhost:8001'); '{address}' is not one"
                )));
            }
            let metrics_url = metrics.clone().or_else(|| default_metrics_url(address));
            Ok(Target {
                info: TargetInfo {
                    kind: TargetKind::Triton,
                    address: address.clone(),
                    gpu: None,
                    server_version: None,
                    model_control: true,
                },
                connect,
                metrics_url,
                knowledge: Arc::new(ProbedKnowledge {
                    catalog: catalog.clone(),
                    server: address.clone(),
                    cache: session::data_dir()
                        .ok()
                        .and_then(|d| PeakCache::open(&d.join("peaks")).ok()),
                }),
                nvml: match gpu {
                    Some(g) => NvmlChoice::Device(
                        g.parse()
                            .map_err(|e| anyhow!("--gpu {g}: {e}"))
                            .bad_input()?,
                    ),
                    None => NvmlChoice::Auto,
                },
                embedded: None,
            })
        }
    }
}

/// The embedded emulator's queue is this process's memory too: bounded a quarter above what the
/// run's requests may hold in flight, so that the load generator's bound binds first (a falling-
/// behind run drops at the client, flagged, rather than failing at the server) and the two
/// together stay far below what a standalone emulator allows.
fn embedded_limits() -> ServeLimits {
    let run = crate::loadgen::driver::MAX_RUN_IN_FLIGHT_BYTES;
    ServeLimits {
        max_queued_bytes: run + run / 4,
        legacy_grpc: legacy_grpc(),
        ..ServeLimits::default()
    }
}

/// `PERSEUS_LEGACY_GRPC=1` sends over plain gRPC as first shipped (see
/// [`ConnectOptions::legacy_grpc`]), and the embedded emulator serves it so; undocumented for
/// users, it is the benchmark's baseline.
fn legacy_grpc() -> bool {
    std::env::var_os("PERSEUS_LEGACY_GRPC").is_some_and(|v| v == "1")
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Triton serves metrics on port 8002 of the same host by default.
fn default_metrics_url(grpc: &str) -> Option<String> {
    let host = grpc
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(grpc);
    (!host.is_empty()).then(|| format!("http://{host}:8002/metrics"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{AnyModel, parse_session};

    fn spec(target: &str) -> RunSpec {
        let text = format!("{target}\n[[tenant]]\nmodel = \"simple\"\nrate = 1\n");
        parse_session(&text, Path::new("s.toml"), &AnyModel).unwrap()
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/tls")
            .join(name)
    }

    fn tls_of(spec: &RunSpec) -> Option<TlsSpec> {
        match &spec.target {
            TargetSpec::Triton { tls, .. } => tls.clone(),
            TargetSpec::Emulated { .. } => None,
        }
    }

    #[test]
    fn tls_flags_apply_to_a_triton_named_in_the_session() {
        let mut s = spec("[target]\ntriton = \"example.com:8001\"");
        let args = TargetArgs {
            tls_ca: Some(fixture("ca.pem")),
            tls_domain: Some("triton.example".into()),
            ..TargetArgs::default()
        };
        apply_target_args(&mut s, &args).unwrap();
        let tls = tls_of(&s).expect("TLS is on");
        assert_eq!(tls.ca_file, Some(fixture("ca.pem")));
        assert_eq!(tls.domain.as_deref(), Some("triton.example"));
    }

    #[test]
    fn flags_complete_the_sessions_tls_and_a_new_address_keeps_it() {
        let ca = fixture("ca.pem");
        let mut s = spec(&format!(
            "[target]\ntriton = \"example.com:8001\"\ntls = {{ ca = \"{}\", domain = \"a\" }}",
            ca.display()
        ));
        let args = TargetArgs {
            triton: Some("other.example:8001".into()),
            tls_cert: Some(fixture("client.pem")),
            tls_key: Some(fixture("client.key")),
            ..TargetArgs::default()
        };
        apply_target_args(&mut s, &args).unwrap();
        let tls = tls_of(&s).expect("TLS kept");
        assert_eq!(tls.ca_file, Some(ca));
        assert_eq!(tls.domain.as_deref(), Some("a"));
        assert_eq!(tls.cert_file, Some(fixture("client.pem")));
        assert_eq!(tls.key_file, Some(fixture("client.key")));
        assert!(
            matches!(&s.target, TargetSpec::Triton { address, .. } if address == "other.example:8001")
        );
    }

    #[test]
    fn tls_flags_for_the_emulator_a_missing_file_or_no_ca_are_bad_input() {
        let args = TargetArgs {
            tls_ca: Some(fixture("ca.pem")),
            ..TargetArgs::default()
        };
        let e = apply_target_args(&mut spec(""), &args).unwrap_err();
        assert!(matches!(e, Failure::BadInput(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("--tls-ca applies to a real Triton"),
            "{e}"
        );

        let mut s = spec("[target]\ntriton = \"example.com:8001\"");
        let missing = TargetArgs {
            tls_ca: Some(fixture("no-such-ca.pem")),
            ..TargetArgs::default()
        };
        let e = apply_target_args(&mut s, &missing).unwrap_err();
        assert!(matches!(e, Failure::BadInput(_)));
        assert!(
            e.to_string().contains("--tls-ca") && e.to_string().contains("no-such-ca.pem"),
            "{e}"
        );

        let domain_only = TargetArgs {
            tls_domain: Some("x".into()),
            ..TargetArgs::default()
        };
        let e = apply_target_args(&mut s, &domain_only).unwrap_err();
        assert!(e.to_string().contains("needs the server's CA"), "{e}");
    }

    #[test]
    fn telemetry_flags_for_the_emulator_are_bad_input_not_ignored() {
        for (args, flag) in [
            (
                TargetArgs {
                    metrics: Some("http://localhost:8002/metrics".into()),
                    ..TargetArgs::default()
                },
                "--metrics",
            ),
            (
                TargetArgs {
                    gpu: Some("0".into()),
                    ..TargetArgs::default()
                },
                "--gpu",
            ),
        ] {
            let e = apply_target_args(&mut spec(""), &args).unwrap_err();
            assert!(matches!(e, Failure::BadInput(_)), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("{flag} applies to a real Triton")),
                "{e}"
            );
            let mut s = spec("[target]\ntriton = \"example.com:8001\"");
            apply_target_args(&mut s, &args).unwrap();
        }
    }

    #[test]
    fn without_tls_flags_the_session_is_left_as_it_is() {
        let mut s = spec("[target]\ntriton = \"example.com:8001\"");
        let before = s.clone();
        apply_target_args(&mut s, &TargetArgs::default()).unwrap();
        assert_eq!(s, before);
    }
}
