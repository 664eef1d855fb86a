use super::*;

fn tenant(model: &str) -> TenantBlock {
    TenantBlock {
        model: model.to_string(),
        arrival: "poisson".to_string(),
        target_rate: Some(150.0),
        concurrency: None,
        achieved_rate: 149.5,
        sent: 1500,
        ok: 1495,
        errors: 0,
        errors_by_code: Default::default(),
        first_error_by_code: Default::default(),
        dropped: 0,
        late: 0,
        latency_ms: Percentiles::default(),
        service_latency_ms: Percentiles::default(),
        server_ms: None,
        client_ms: None,
        send_lateness_ms: None,
        server_latency_ms: None,
        client_tail_ms: None,
        avg_batch: None,
        sla: SlaBlock {
            latency_ms: 100.0,
            percentile: 95.0,
            attainment: Some(0.999),
            met: Some(true),
        },
        goodput: 149.0,
        solo_peak: None,
        solo_peak_kind: "unknown".to_string(),
        client_bound: None,
        saturated: None,
    }
}

fn result(tenants: Vec<TenantBlock>) -> RunResult {
    RunResult {
        schema: SCHEMA.to_string(),
        session: "demo, \"quoted\"".to_string(),
        target: TargetBlock {
            kind: "emulated".to_string(),
            gpu: None,
            address: "127.0.0.1:1".to_string(),
        },
        duration_s: 10.0,
        tenants,
        gpu: None,
        cost: None,
        capacity: None,
        client_bound: None,
    }
}

const COLUMNS: &str = "session,model,arrival,target_rate,concurrency,achieved_rate,sent,ok,\
    errors,dropped,late,mean_ms,p50_ms,p90_ms,p95_ms,p99_ms,max_ms,service_p50_ms,\
    service_p99_ms,server_queue_ms,server_compute_infer_ms,avg_batch,sla_latency_ms,\
    sla_percentile,attainment,sla_met,goodput,solo_peak,client_bound,target_saturated";

#[test]
fn the_csv_header_is_the_documented_one_and_cells_are_quoted() {
    let text = csv(&result(vec![tenant("resnet50"), tenant("a,b")])).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], COLUMNS);
    assert!(
        lines[2].starts_with("\"demo, \"\"quoted\"\"\",\"a,b\",poisson,150.0,,"),
        "{}",
        lines[2]
    );
    // Unknown figures are empty cells, never zero.
    assert!(
        lines[1].ends_with(",0.999,true,149.0,,,false"),
        "{}",
        lines[1]
    );
    // No tenants: still the header.
    assert_eq!(csv(&result(Vec::new())).unwrap(), format!("{COLUMNS}\n"));
}

#[test]
fn a_client_bound_run_says_so_in_table_csv_and_json() {
    use crate::vocab::snapshot::ClientBoundReason;
    let flag = ClientBound {
        reasons: vec![ClientBoundReason::LateSends],
        behind_ms: 12.0,
        late_share: 0.2,
        dropped_share: 0.0,
        cpu_share: Some(0.55),
        cores: 2,
    };
    let mut bound = tenant("resnet50");
    bound.late = 300;
    bound.client_bound = Some(flag.clone());
    let mut r = result(vec![bound, tenant("mobilenet_v2")]);
    r.client_bound = Some(flag);
    let table = table(&r);
    assert!(
        table.contains("warning: the load generator was the bottleneck (late sends)"),
        "{table}"
    );
    assert!(
        table.contains("resnet50: client behind by 12 ms (20.0% of arrivals late"),
        "{table}"
    );
    assert!(!table.contains("mobilenet_v2: client"), "{table}");
    let text = csv(&r).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap_or("")
            .ends_with(",late sends,false"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["client_bound"]["reasons"][0], "late_sends");
    assert_eq!(json["tenants"][0]["client_bound"]["behind_ms"], 12.0);
    assert!(json["tenants"][1]["client_bound"].is_null());
    // A light run has no warning.
    assert!(!super::table(&result(vec![tenant("a")])).contains("warning"));
}

#[test]
fn a_p95_that_is_mostly_the_clients_tail_says_so_and_one_that_is_not_does_not() {
    let with = |model: &str, p95: f64, server: f64, turnaround: f64| {
        let mut t = tenant(model);
        t.ok = 100;
        t.latency_ms.p95 = p95;
        t.server_latency_ms = Some(ServerLatency {
            p95: Some(server),
            ..ServerLatency::default()
        });
        t.client_ms = Some(turnaround);
        t
    };
    // 7.50 ms at the client, 3.40 at the server, 0.95 transport: 3.15 ms is the client's tail.
    // Within a tenth of the p95, the other's is the GPU's figure.
    let mut r = result(vec![
        with("resnet50", 7.5, 3.4, 0.95),
        with("mobilenet_v2", 10.0, 8.6, 0.5),
    ]);
    r.fill_client_tails();
    let (busy, quiet) = (&r.tenants[0], &r.tenants[1]);
    assert!((busy.client_tail_ms.unwrap() - 3.15).abs() < 1e-9);
    assert!(busy.tail_is_the_clients());
    assert!(quiet.client_tail_ms.is_some() && !quiet.tail_is_the_clients());
    let table = table(&r);
    assert!(
        table.contains("note: part of these p95s is the client's scheduling"),
        "{table}"
    );
    assert!(
        table.contains("  resnet50: 3.15 of 7.50 ms (42%)"),
        "{table}"
    );
    assert!(!table.contains("mobilenet_v2: "), "{table}");
    // Two tenants of one model share its server-side p95, so neither has a tail of its own; nor
    // has a tenant without the server's p95.
    let mut blind = tenant("a");
    blind.ok = 100;
    blind.client_ms = Some(1.0);
    let mut r = result(vec![
        with("resnet50", 7.5, 3.4, 0.95),
        with("resnet50", 7.5, 3.4, 0.95),
        blind,
    ]);
    r.fill_client_tails();
    assert!(r.tenants.iter().all(|t| t.client_tail_ms.is_none()));
    assert!(!super::table(&r).contains("note:"));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["tenants"][0].get("client_tail_ms").is_none(), "{json}");
}
