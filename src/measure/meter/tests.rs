use super::*;
use crate::vocab::snapshot::ClientBoundReason;

const TICK: Duration = Duration::from_millis(250);

fn sla(latency_ms: f64, percentile: f64) -> Sla {
    Sla {
        latency_ms,
        percentile,
    }
}

fn meter(window_s: u64) -> TenantMeter {
    TenantMeter::new(
        sla(50.0, 95.0),
        Duration::from_secs(window_s),
        TICK,
        Instant::now(),
    )
    .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A send time for tests with no measured period (every record counts).
fn at() -> Instant {
    Instant::now()
}

#[test]
fn only_requests_sent_in_the_measured_period_count() {
    // The 3 s warm-up ends at `start`; the server stalls across it, so requests sent in the
    // warm-up complete after it, beside requests sent after it.
    let t0 = Instant::now() + Duration::from_secs(3600);
    let start = t0 + Duration::from_secs(3);
    let mut m = meter(1);
    // Warm-up: 10 sent, 2 completed before the end of warm-up.
    for i in 0..10 {
        m.record_sent(t0 + ms(100 * i));
    }
    m.record_ok(t0, ms(5), ms(5));
    m.record_ok(t0 + ms(100), ms(5), ms(5));
    m.record_drop(t0 + ms(2900));
    m.tick_elapsed(TICK);
    m.start_measuring(start);
    // The stall: a warm-up send is recorded only now (its send time is before the boundary).
    m.record_sent(start - ms(1));
    // After the boundary: 4 sent, the 9 warm-up requests still in flight all complete, one
    // with an error, and 3 of the 4 new ones complete.
    for i in 0..4 {
        m.record_sent(start + ms(10 * i));
    }
    for i in 2..10 {
        m.record_ok(t0 + ms(100 * i), ms(3500), ms(3500));
    }
    m.record_error(start - ms(1), "UNAVAILABLE");
    for i in 0..3 {
        m.record_ok(start + ms(10 * i), ms(5), ms(5));
    }
    m.record_late(start + ms(30));
    m.tick_elapsed(TICK);
    let t = m.totals(0.25);
    assert_eq!((t.sent, t.ok, t.errors, t.dropped, t.late), (4, 3, 0, 0, 1));
    // The Prometheus buckets count exactly the measured completions.
    assert_eq!(t.latency_buckets.counts.iter().sum::<u64>(), t.ok);
    assert_eq!(t.service_latency_buckets.counts.iter().sum::<u64>(), t.ok);
    assert_eq!(t.ok_within_sla, 3);
    assert!((t.latency_buckets.sum_ms - 15.0).abs() < 0.1);
    assert!(t.ok + t.errors <= t.sent);
    assert!((t.achieved_per_s - 12.0).abs() < 1e-9);
    // Only measured requests in the totals' latencies: none of the 3.5 s stalls.
    assert!(t.latency_ms.max < 10.0, "{:?}", t.latency_ms);
    // The live window still shows what happened in it, warm-up sends included.
    let w = m.window_stats();
    assert_eq!(w.errors, 1);
    assert!((w.achieved_per_s - (2.0 + 8.0 + 3.0) / 0.5).abs() < 1e-9);
    assert_eq!(w.in_flight, 1);
}

#[test]
fn window_figures_from_known_inputs() {
    let m = meter(1);
    let rec = m.recorder();
    // 100 requests, latencies 1..=100 ms from intended send, service latency half that.
    for i in 1..=100 {
        rec.record_sent(at());
        rec.record_ok(at(), ms(i), ms(i) / 2);
    }
    let mut m = m;
    for _ in 0..4 {
        m.tick_elapsed(TICK);
    }
    let w = m.window_stats();
    // 100 ok over 1 s of window
    assert!((w.achieved_per_s - 100.0).abs() < 1e-9);
    assert!((w.offered_per_s - 100.0).abs() < 1e-9);
    assert!((w.latency_ms.p95 - 95.0).abs() <= 0.1);
    assert!((w.service_latency_ms.p95 - 47.5).abs() <= 0.05);
    // SLA 50 ms: 50 of 100 within → attainment 0.5, goodput 50/s, p95 = 95 > 50 → missed
    assert_eq!(w.attainment, Some(0.5));
    assert!((w.goodput_per_s - 50.0).abs() < 1e-9);
    assert_eq!(w.sla_met, Some(false));
    assert_eq!(w.in_flight, 0);
}

#[test]
fn errors_and_drops_are_misses() {
    let mut m = meter(1);
    // 8 ok within SLA, 1 timeout, 1 drop: attainment 8 / 10
    for _ in 0..9 {
        m.record_sent(at());
    }
    for _ in 0..8 {
        m.record_ok(at(), ms(10), ms(10));
    }
    m.record_error(at(), "DEADLINE_EXCEEDED");
    m.record_drop(at());
    m.tick_elapsed(TICK);
    let w = m.window_stats();
    assert_eq!(w.attainment, Some(0.8));
    // every completion within 50 ms, but an error and a drop: not met
    assert_eq!(w.sla_met, Some(false));
    assert_eq!(w.errors, 1);
    assert_eq!(w.dropped, 1);
    // offered counts the dropped arrival: (9 sent + 1 dropped) / 0.25 s
    assert!((w.offered_per_s - 40.0).abs() < 1e-9);
    let t = m.totals(0.25);
    assert_eq!(t.errors_by_code.get("DEADLINE_EXCEEDED"), Some(&1));
    assert_eq!(t.attainment, Some(0.8));
}

#[test]
fn met_at_the_percentile_boundary() {
    // p95 ≤ 50 ms needs ⌈0.95 × 20⌉ = 19 of 20 within 50 ms.
    let mut m = meter(1);
    for i in 0..20 {
        m.record_sent(at());
        m.record_ok(at(), if i < 19 { ms(50) } else { ms(400) }, ms(1));
    }
    m.tick_elapsed(TICK);
    assert_eq!(m.window_stats().sla_met, Some(true));
    m.record_sent(at());
    m.record_ok(at(), ms(51), ms(1)); // now 19 of 21 within; ⌈0.95 × 21⌉ = 20 needed
    m.tick_elapsed(TICK);
    assert_eq!(m.window_stats().sla_met, Some(false));
}

#[test]
fn empty_window_has_no_verdict() {
    let mut m = meter(1);
    m.tick_elapsed(TICK);
    let w = m.window_stats();
    assert_eq!(w.attainment, None);
    assert_eq!(w.sla_met, None);
    assert_eq!(w.achieved_per_s, 0.0);
}

#[test]
fn window_forgets_while_totals_keep() {
    let mut m = meter(1); // 4 ticks
    m.record_sent(at());
    m.record_error(at(), "UNAVAILABLE");
    m.tick_elapsed(TICK);
    for _ in 0..4 {
        m.record_sent(at());
        m.record_ok(at(), ms(5), ms(5));
        m.tick_elapsed(TICK);
    }
    let w = m.window_stats();
    assert_eq!(w.errors, 0);
    assert_eq!(w.sla_met, Some(true));
    let t = m.totals(1.25);
    assert_eq!((t.sent, t.ok, t.errors), (5, 4, 1));
    assert_eq!(t.sla_met, Some(false));
    m.start_measuring(Instant::now());
    assert_eq!(m.totals(0.0).sent, 0);
    assert_eq!(m.window_stats().achieved_per_s, 4.0);
}

#[test]
fn in_flight_tracks_sends_and_completions() {
    let mut m = meter(1);
    for _ in 0..5 {
        m.record_sent(at());
    }
    m.record_ok(at(), ms(1), ms(1));
    m.record_error(at(), "UNAVAILABLE");
    m.tick_elapsed(TICK);
    assert_eq!(m.window_stats().in_flight, 3);
}

#[test]
fn early_window_rates_use_covered_time() {
    let mut m = meter(10);
    for _ in 0..50 {
        m.record_sent(at());
        m.record_ok(at(), ms(1), ms(1));
    }
    m.tick_elapsed(TICK);
    // 50 in the first 0.25 s is 200/s, not 5/s over the nominal 10 s window
    assert!((m.window_stats().achieved_per_s - 200.0).abs() < 1e-9);
    assert_eq!(m.window_span(), TICK);
}

#[test]
fn recorders_on_many_threads_lose_nothing() {
    let mut m = meter(1);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let rec = m.recorder();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    rec.record_sent(at());
                    rec.record_ok(at(), ms(i % 100), ms(1));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    m.tick_elapsed(TICK);
    assert_eq!(m.totals(1.0).ok, 4000);
}

#[test]
fn probe_window_reads_the_sla_percentile_and_clears() {
    let mut m = meter(1);
    for i in 1..=100 {
        m.record_sent(at());
        m.record_ok(at(), ms(i), ms(1));
    }
    m.tick_elapsed(Duration::from_secs(1));
    let p = m.probe_window();
    // SLA percentile 95 → the 95th of 1..=100 ms
    assert!((p.latency_ms - 95.0).abs() <= 0.1, "{}", p.latency_ms);
    assert!((p.achieved_per_s - 100.0).abs() < 1e-9);
    m.clear_window();
    assert_eq!(m.probe_window().achieved_per_s, 0.0);
    // totals are not the window's: clearing the window keeps them
    assert_eq!(m.totals(1.0).ok, 100);
}

fn cpu(share: f64) -> SpanContext {
    SpanContext {
        cpu_share: Some(share),
        server_ms: None,
    }
}

#[test]
fn a_generator_that_falls_behind_is_flagged_in_window_and_totals() {
    let mut m = meter(1);
    m.start_measuring(Instant::now());
    let rec = m.recorder();
    // On time: 100 arrivals a tick, the worst 2 ms late.
    for _ in 0..4 {
        for i in 0..100 {
            rec.record_dispatch(at(), ms(i % 3));
        }
        m.tick_elapsed(TICK);
    }
    let (w, t) = m.stats_with_client(1.0, cpu(0.3), cpu(0.3), 2);
    assert_eq!((w.client_bound, t.client_bound), (None, None));
    // Then every arrival later than the one before, tick after tick.
    for k in 1..=4 {
        for i in 0..100 {
            rec.record_dispatch(at(), ms(10 * k + i / 10));
        }
        m.tick_elapsed(TICK);
    }
    let (w, t) = m.stats_with_client(2.0, cpu(0.3), cpu(0.3), 2);
    let w = w.client_bound.expect("window flagged");
    assert_eq!(
        w.reasons,
        vec![
            ClientBoundReason::LateSends,
            ClientBoundReason::FallingBehind
        ]
    );
    assert_eq!(w.behind_ms, 49.0);
    let t = t.client_bound.expect("totals flagged");
    assert!(t.reasons.contains(&ClientBoundReason::FallingBehind));
    assert!(
        (t.late_share - 390.0 / 800.0).abs() < 1e-9,
        "{}",
        t.late_share
    );
}

#[test]
fn drops_the_server_caused_are_saturation_not_the_clients() {
    let mut m = meter(1);
    m.start_measuring(Instant::now());
    let rec = m.recorder();
    // Half the arrivals find the bound full; those sent are answered after 290 ms.
    for _ in 0..4 {
        for i in 0..100 {
            rec.record_dispatch(at(), ms(1));
            if i % 2 == 0 {
                rec.record_drop(at());
            } else {
                let sent = at();
                rec.record_sent(sent);
                rec.record_ok(sent, ms(900), ms(290));
            }
        }
        m.tick_elapsed(TICK);
    }
    let held = SpanContext {
        cpu_share: Some(0.3),
        server_ms: Some(285.0),
    };
    let (w, t) = m.stats_with_client(1.0, held, held, 2);
    assert_eq!((&w.client_bound, &t.client_bound), (&None, &None));
    let s = w.saturated.expect("window saturated");
    assert!((s.dropped_share - 0.5).abs() < 1e-9, "{s:?}");
    assert!((s.service_ms - 290.0).abs() < 1.0, "{s:?}");
    assert!(t.saturated.is_some());
    // The same drops with a server that answers in 5 ms: the client held the requests.
    let quick = SpanContext {
        server_ms: Some(5.0),
        ..held
    };
    let (w, _) = m.stats_with_client(1.0, quick, quick, 2);
    assert_eq!(w.saturated, None);
    assert_eq!(
        w.client_bound.expect("client flagged").reasons,
        vec![ClientBoundReason::Dropped]
    );
}

#[test]
fn bad_settings_are_errors() {
    let now = Instant::now();
    let w = Duration::from_secs(1);
    assert!(TenantMeter::new(sla(0.0, 95.0), w, TICK, now).is_err());
    assert!(TenantMeter::new(sla(10.0, 100.0), w, TICK, now).is_err());
    assert!(TenantMeter::new(sla(10.0, 95.0), ms(10), TICK, now).is_err());
}

/// Send lateness counts the measured period's sends only, into the totals' quantiles, and a send
/// beyond the threshold counts as late as well.
#[test]
fn send_lateness_is_measured_over_the_measured_period() {
    let t0 = Instant::now() + Duration::from_secs(3600);
    let start = t0 + Duration::from_secs(3);
    let mut m = meter(1);
    let recorder = m.recorder();
    assert_eq!(m.totals(1.0).send_lateness_ms, None, "nothing sent yet");
    m.start_measuring(start);
    // A warm-up send, recorded late, stays out.
    recorder.record_lateness(start - ms(1), ms(500), ms(1));
    for i in 0..100 {
        let lateness = Duration::from_micros(if i < 90 { 100 } else { 5_000 });
        recorder.record_lateness(start + ms(i), lateness, ms(1));
    }
    m.tick_elapsed(TICK);
    let t = m.totals(1.0);
    assert_eq!(t.late, 10);
    let q = t.send_lateness_ms.expect("measured sends");
    assert_eq!(q.validate(), Ok(()));
    assert!((q.value_at(0.5) - 0.1).abs() < 0.001, "{q:?}");
    assert!((q.value_at(1.0) - 5.0).abs() < 0.01, "{q:?}");
    // Another tick keeps the totals: nothing is lost when the live histogram is swapped out.
    m.tick_elapsed(TICK);
    assert_eq!(m.totals(1.0).send_lateness_ms, Some(q));
}
