//! Session files (DESIGN §3) validated into a [`RunSpec`].
//!
//! Beyond DESIGN §3's example, a session may set `warmup` and `tick` at the top level, `profile`
//! (a calibration profile such as `"perseus2019"`) and `tls = { ca, cert, key, domain }` in
//! `[target]`, and per tenant `data = "zero" | "random"`, `max_in_flight`, `deadline`, and, with
//! `arrival = "bursty"`, `burst = { factor = 4.0, on = "2s", off = "8s" }`: bursts at `factor` × the
//! mean rate lasting `on` on average, separated by quieter stretches of `off` on average, with the
//! long-run mean still equal to `rate` (so `factor` may not exceed `(on + off) / on`). A trace
//! arrival (`arrival = { trace = "gaps.txt" }`, one gap in µs a line, `#` comments allowed) is read
//! relative to the session file; without `rate` the tenant's rate is the trace's own mean rate.
//! Omitted SLAs default to [`crate::session::DEFAULT_SLA`]. Relative paths are stored absolute so that a saved
//! session works from any directory.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::fleet;
use super::limits;
use super::spanned::{Doc, Field, Result, SessionError, Table, did_you_mean};
use super::tenant::parse_tenant;
use crate::vocab::spec::{
    CostSpec, FleetSpec, NamedTarget, RunSpec, TargetSpec, TenantSpec, TlsSpec, Transport,
};

/// What the target can serve, so a session naming a model it lacks fails at load with a
/// suggestion instead of at the first request.
pub trait ModelLookup {
    /// Every model the target serves, with its largest batch (Triton's `max_batch_size`; 0, a
    /// model without a batch dimension, allows only batch 1). `None` when it cannot be known
    /// before connecting: names are then taken as written and batch sizes checked only for ≥ 1.
    fn models(&self, target: &TargetSpec) -> Option<BTreeMap<String, u32>>;

    /// GPUs the embedded emulator can play; `None` leaves `emulate` unchecked.
    fn gpus(&self) -> Option<Vec<String>> {
        None
    }

    /// Calibration profiles for an emulated GPU; `None` leaves `profile` unchecked.
    fn profiles(&self, _gpu: &str) -> Option<Vec<String>> {
        None
    }

    /// Instance names in the price catalog (`aws:g4dn.xlarge`); `None` leaves them unchecked.
    fn instances(&self) -> Option<Vec<String>> {
        None
    }

    /// The tick the user's config file sets for sessions that set none; `None`: the built-in one.
    /// Known while parsing so that a window shorter than it is an error with a line and column.
    fn default_tick(&self) -> Option<Duration> {
        None
    }
}

/// A fixed model list, whatever the target: for tests and for callers that resolved it already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticModels(pub BTreeMap<String, u32>);

impl<S: Into<String>> FromIterator<(S, u32)> for StaticModels {
    fn from_iter<I: IntoIterator<Item = (S, u32)>>(iter: I) -> Self {
        StaticModels(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl ModelLookup for StaticModels {
    fn models(&self, _target: &TargetSpec) -> Option<BTreeMap<String, u32>> {
        Some(self.0.clone())
    }
}

/// Accepts any model name: for a Triton that cannot be reached until the run starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyModel;

impl ModelLookup for AnyModel {
    fn models(&self, _target: &TargetSpec) -> Option<BTreeMap<String, u32>> {
        None
    }
}

const MIN_TICK: Duration = Duration::from_millis(10);

/// Reads a session file from disk; see [`parse_session`].
pub fn load_session(file: &Path, models: &dyn ModelLookup) -> Result<RunSpec> {
    let text = read_session(file)?;
    parse_session(&text, file, models)
}

fn read_session(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).map_err(|e| SessionError {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read session file: {e}"),
    })
}

/// Validates a session file's text into a run. `file` names it in errors and anchors relative
/// paths (trace files, TLS files). A session with several `[[target]]` tables is refused here,
/// at its second target, after every part of it was checked: see [`parse_fleet_session`].
pub fn parse_session(text: &str, file: &Path, models: &dyn ModelLookup) -> Result<RunSpec> {
    let (mut fleet, spans) = parse_doc(text, file, models)?;
    if fleet.targets.len() > 1 {
        let doc = Doc { file, text };
        let key = "target[1]";
        return Err(doc.error(
            spans.get(1).cloned().unwrap_or(0..0),
            key,
            format!(
                "this command drives one target; the session has {} [[target]] tables \
                 (perseus run drives several)",
                fleet.targets.len()
            ),
        ));
    }
    let only = fleet.targets.pop().ok_or_else(|| {
        Doc { file, text }.error(0..0, "target", "expected at least one [[target]] table")
    })?;
    Ok(only.spec)
}

/// Validates a session file's text into its targets, each with its tenants and price; a single
/// `[target]` (or none) gives one unnamed target.
pub fn parse_fleet_session(text: &str, file: &Path, models: &dyn ModelLookup) -> Result<FleetSpec> {
    parse_doc(text, file, models).map(|(fleet, _)| fleet)
}

/// Reads a session file from disk; see [`parse_fleet_session`].
pub fn load_fleet_session(file: &Path, models: &dyn ModelLookup) -> Result<FleetSpec> {
    let text = read_session(file)?;
    parse_fleet_session(&text, file, models)
}

/// The session's targets and, for each, where its table starts.
fn parse_doc(
    text: &str,
    file: &Path,
    models: &dyn ModelLookup,
) -> Result<(FleetSpec, Vec<Range<usize>>)> {
    let doc = Doc { file, text };
    let root = DeTable::parse(text).map_err(|e| {
        if let Some(at) = mixed_target_tables(text) {
            return doc.error(
                at..at,
                "target",
                "a session has either one [target] or [[target]] tables, each with a name; \
                 this one mixes both",
            );
        }
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().replace('\n', "; ");
        doc.error(span, "", format!("invalid TOML: {message}"))
    })?;
    let root = Table::new(
        &doc,
        String::new(),
        root.get_ref(),
        &[
            "name", "duration", "warmup", "window", "tick", "target", "cost", "tenant",
        ],
    )?;
    let base = file.parent().unwrap_or(Path::new("."));

    let name = match root.get("name") {
        Some(f) => {
            let s = f.str("the session's name as a string")?.trim();
            if s.is_empty() {
                return Err(f.fail("expected a non-empty name"));
            }
            s.to_string()
        }
        None => file.file_stem().map_or_else(
            || "session".to_string(),
            |s| s.to_string_lossy().into_owned(),
        ),
    };
    let duration = opt_duration(&root, "duration", false, limits::MAX_DURATION)?
        .unwrap_or(RunSpec::DEFAULT_DURATION);
    let warmup =
        opt_duration(&root, "warmup", true, limits::MAX_WARMUP)?.unwrap_or(RunSpec::DEFAULT_WARMUP);
    let window = opt_duration(&root, "window", false, limits::MAX_WINDOW)?
        .unwrap_or(RunSpec::DEFAULT_WINDOW);
    let tick = parse_tick(&doc, &root, window, models)?;

    let cost = match root.get("cost") {
        Some(f) => parse_cost(&doc, f, models)?,
        None => CostSpec::default(),
    };
    let targets = match root.get("target") {
        Some(f) if matches!(f.value.get_ref(), DeValue::Array(_)) => {
            fleet::parse_targets(&doc, f, base, models, &cost)?
        }
        Some(f) => {
            let (target, transport) = parse_target(&doc, f, base, models)?;
            vec![fleet::ParsedTarget::single(
                target,
                transport,
                cost,
                f.span(),
            )]
        }
        None => vec![fleet::ParsedTarget::single(
            TargetSpec::Emulated {
                gpu: "t4".to_string(),
                profile: None,
            },
            None,
            cost,
            0..0,
        )],
    };

    let catalogs: Vec<_> = targets.iter().map(|t| models.models(&t.target)).collect();
    let mut tenants: Vec<Vec<TenantSpec>> = targets.iter().map(|_| Vec::new()).collect();
    if let Some(f) = root.get("tenant") {
        if matches!(f.value.get_ref(), DeValue::Table(_)) {
            return Err(f.fail("expected [[tenant]] with double brackets, one per tenant"));
        }
        let items = f.array("[[tenant]] tables")?;
        if let Some(extra) = items.get(limits::MAX_TENANTS) {
            let key = format!("tenant[{}]", limits::MAX_TENANTS);
            return Err(doc.error(
                extra.span(),
                &key,
                format!(
                    "a session holds at most {} tenants; this one has {}",
                    limits::MAX_TENANTS,
                    items.len()
                ),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let key = format!("tenant[{i}]");
            let field = Field {
                doc: &doc,
                key: &key,
                value: item,
            };
            let at = fleet::tenant_target(field, &targets)?;
            tenants[at].push(parse_tenant(field, catalogs[at].as_ref(), base)?);
        }
    }

    let spans = targets.iter().map(|t| t.span.clone()).collect();
    let targets = targets
        .into_iter()
        .zip(tenants)
        .map(|(t, tenants)| NamedTarget {
            name: t.name,
            spec: RunSpec {
                name: name.clone(),
                duration,
                warmup,
                window,
                tick,
                target: t.target,
                transport: t.transport,
                cost: t.cost,
                tenants,
            },
        })
        .collect();
    Ok((FleetSpec { targets }, spans))
}

/// Where the second kind of target header starts when a text has both `[target]` and
/// `[[target]]` (TOML itself only says "duplicate key").
fn mixed_target_tables(text: &str) -> Option<usize> {
    let mut single = false;
    let mut array = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let header: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let header = header.split('#').next().unwrap_or("");
        match header {
            "[target]" => single = true,
            "[[target]]" => array = true,
            _ => {}
        }
        if single && array {
            return Some(offset);
        }
        offset += line.len();
    }
    None
}

/// The session's `tick`, else the config file's, else the default; checked against the window.
fn parse_tick(
    doc: &Doc<'_>,
    root: &Table<'_, '_, '_>,
    window: Duration,
    models: &dyn ModelLookup,
) -> Result<Duration> {
    let own = opt_duration(root, "tick", false, limits::MAX_TICK)?;
    if let (Some(tick), Some(f)) = (own, root.get("tick"))
        && tick < MIN_TICK
    {
        return Err(f.fail("expected a tick of at least 10ms"));
    }
    let from_config = own.is_none().then(|| models.default_tick()).flatten();
    let tick = own.or(from_config).unwrap_or(RunSpec::DEFAULT_TICK);
    if window >= tick {
        return Ok(tick);
    }
    let whose = if from_config.is_some() {
        "the tick your config file sets"
    } else {
        "one tick"
    };
    let message = |which: &str| {
        format!(
            "{which} ({}) must be at least {whose} ({})",
            humantime::format_duration(window),
            humantime::format_duration(tick)
        )
    };
    Err(match root.get("window").or_else(|| root.get("tick")) {
        Some(f) => f.fail(message("the window")),
        None => doc.error(
            0..0,
            "window",
            format!("{}; set a longer window", message("the default window")),
        ),
    })
}

pub(super) fn opt_duration(
    t: &Table<'_, '_, '_>,
    key: &str,
    allow_zero: bool,
    max: Duration,
) -> Result<Option<Duration>> {
    let Some(f) = t.get(key) else {
        return Ok(None);
    };
    if allow_zero && matches!(f.value.get_ref(), DeValue::String(s) if is_zero_duration(s)) {
        return Ok(Some(Duration::ZERO));
    }
    f.duration(max).map(Some)
}

fn is_zero_duration(s: &str) -> bool {
    humantime::parse_duration(s).is_ok_and(|d| d.is_zero())
}

pub(super) fn choose(
    field: Field<'_, '_, '_>,
    what: &str,
    word: &str,
    known: Option<Vec<String>>,
) -> Result<()> {
    let Some(known) = known else {
        return Ok(());
    };
    if known.iter().any(|k| k == word) {
        return Ok(());
    }
    let hint = match did_you_mean(word, known.iter().map(String::as_str)) {
        Some(s) => format!("did you mean '{s}'?"),
        None => format!("known: {}", short_list(&known)),
    };
    Err(field.fail(format!("unknown {what} '{word}' ({hint})")))
}

fn short_list(names: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut s = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", … {} more", names.len() - SHOWN));
    }
    s
}

pub(super) fn nonempty<'t>(f: &Field<'_, 't, '_>, what: &str) -> Result<&'t str> {
    let s = f.str(what)?;
    if s.trim().is_empty() {
        return Err(f.fail(format!("expected {what}, found an empty string")));
    }
    Ok(s)
}

pub(super) fn absolute(base: &Path, p: &str) -> PathBuf {
    let joined = base.join(p);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// The keys of a `[target]` table; a `[[target]]` adds its name and price.
pub(super) const TARGET_KEYS: &[&str] = &[
    "emulate",
    "profile",
    "triton",
    "metrics",
    "gpu",
    "tls",
    "transport",
];

fn parse_target(
    doc: &Doc<'_>,
    f: Field<'_, '_, '_>,
    base: &Path,
    models: &dyn ModelLookup,
) -> Result<(TargetSpec, Option<Transport>)> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a [target] table")?,
        TARGET_KEYS,
    )?;
    target_of(doc, &t, base, models)
}

/// What a `[target]` or `[[target]]` table drives, and how requests carry their tensors.
pub(super) fn target_of(
    doc: &Doc<'_>,
    t: &Table<'_, '_, '_>,
    base: &Path,
    models: &dyn ModelLookup,
) -> Result<(TargetSpec, Option<Transport>)> {
    let transport = match t.get("transport") {
        Some(f) => Some(match f.str("\"grpc\" or \"shm\"")? {
            "grpc" => (Transport::Grpc, f),
            "shm" => (Transport::Shm, f),
            other => {
                return Err(f.fail(format!(
                    "expected \"grpc\" or \"shm\" (system shared memory), found '{other}'"
                )));
            }
        }),
        None => None,
    };
    if let Some(triton) = t.get("triton") {
        if t.get("emulate").is_some() {
            return Err(triton.fail(
                "choose one target: emulate (the embedded emulator) or triton (a real server)",
            ));
        }
        if let Some(p) = t.get("profile") {
            return Err(p.fail("a calibration profile applies only to an emulated target"));
        }
        let address = nonempty(&triton, "a gRPC address such as 'localhost:8001'")?;
        check_address(&triton, address)?;
        if let Some((Transport::Shm, f)) = &transport
            && !is_loopback(address)
        {
            return Err(f.fail(format!(
                "shared memory needs the server on this machine (a loopback address such as \
                 'localhost:8001'); '{address}' is not one"
            )));
        }
        let metrics = match t.get("metrics") {
            Some(m) => {
                let url = nonempty(&m, "a metrics URL such as 'http://localhost:8002/metrics'")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(m.fail(format!(
                        "expected an http:// or https:// URL such as 'http://localhost:8002/metrics', found '{url}'"
                    )));
                }
                Some(url.to_string())
            }
            None => None,
        };
        let gpu = match t.get("gpu") {
            Some(g) => Some(match g.value.get_ref() {
                DeValue::Integer(_) => g.u32("a GPU index or UUID", 0, 1023)?.to_string(),
                _ => nonempty(&g, "a GPU index or UUID")?.to_string(),
            }),
            None => None,
        };
        let tls = match t.get("tls") {
            Some(f) => Some(parse_tls(doc, f, base)?),
            None => None,
        };
        return Ok((
            TargetSpec::Triton {
                address: address.to_string(),
                metrics,
                gpu,
                tls,
            },
            transport.map(|(t, _)| t),
        ));
    }
    for key in ["metrics", "gpu", "tls"] {
        if let Some(f) = t.get(key) {
            return Err(f.fail(format!(
                "'{key}' applies only to a triton target (the emulator reports its own GPU)"
            )));
        }
    }
    let gpu = match t.get("emulate") {
        Some(e) => {
            let gpu = nonempty(&e, "a catalog GPU such as 't4'")?;
            choose(e, "GPU", gpu, models.gpus())?;
            gpu.to_string()
        }
        None => "t4".to_string(),
    };
    let profile = match t.get("profile") {
        Some(p) => {
            let name = nonempty(&p, "a calibration profile such as 'perseus2019'")?;
            choose(
                p,
                &format!("profile for {gpu}"),
                name,
                models.profiles(&gpu),
            )?;
            Some(name.to_string())
        }
        None => None,
    };
    Ok((
        TargetSpec::Emulated { gpu, profile },
        transport.map(|(t, _)| t),
    ))
}

/// Whether `host:port` names this machine, so that shared memory can reach the server.
pub fn is_loopback(address: &str) -> bool {
    let address = address
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_address(f: &Field<'_, '_, '_>, address: &str) -> Result<()> {
    let bad = || {
        f.fail(format!(
            "expected host:port such as 'localhost:8001' (no scheme), found '{address}'"
        ))
    };
    if address.contains("://") {
        return Err(bad());
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

fn parse_tls(doc: &Doc<'_>, f: Field<'_, '_, '_>, base: &Path) -> Result<TlsSpec> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a table such as { ca = \"ca.pem\", domain = \"triton.example\" }")?,
        &["ca", "cert", "key", "domain"],
    )?;
    // Read now, so that a wrong path is an error at its line rather than a failed connection.
    let path = |key: &str| -> Result<Option<PathBuf>> {
        let Some(f) = t.get(key) else {
            return Ok(None);
        };
        let written = nonempty(&f, "a file path")?;
        let shown = base.join(written);
        std::fs::File::open(&shown)
            .map_err(|e| f.fail(format!("cannot read '{}': {e}", shown.display())))?;
        Ok(Some(absolute(base, written)))
    };
    let tls = TlsSpec {
        ca_file: path("ca")?,
        cert_file: path("cert")?,
        key_file: path("key")?,
        domain: match t.get("domain") {
            Some(d) => Some(nonempty(&d, "the server's TLS domain name")?.to_string()),
            None => None,
        },
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        let given = t.get("cert").or_else(|| t.get("key")).unwrap_or(f);
        return Err(given.fail("a client certificate needs both 'cert' and 'key'"));
    }
    Ok(tls)
}

fn parse_cost(doc: &Doc<'_>, f: Field<'_, '_, '_>, models: &dyn ModelLookup) -> Result<CostSpec> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a [cost] table")?,
        &["instance", "usd_per_hour"],
    )?;
    Ok(cost_of(&t, models)?.unwrap_or_default())
}

/// The price a table's `instance` or `usd_per_hour` gives; `None` when it names neither.
pub(super) fn cost_of(t: &Table<'_, '_, '_>, models: &dyn ModelLookup) -> Result<Option<CostSpec>> {
    match (t.get("instance"), t.get("usd_per_hour")) {
        (Some(_), Some(p)) => Err(p.fail("give either instance or usd_per_hour, not both")),
        (Some(i), None) => {
            let name = nonempty(&i, "a catalog instance such as 'aws:g4dn.xlarge'")?;
            choose(i, "instance", name, models.instances())?;
            Ok(Some(CostSpec::Instance(name.to_string())))
        }
        (None, Some(p)) => {
            let what = "a price in US dollars per GPU-hour above zero";
            let usd = p.number(what)?;
            if usd <= 0.0 || usd > 10_000.0 {
                return Err(p.fail(format!("expected {what} (at most 10000), found {usd}")));
            }
            Ok(Some(CostSpec::UsdPerHour(usd)))
        }
        (None, None) => Ok(None),
    }
}
