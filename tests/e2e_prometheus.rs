//! Crash-free rates in a real Prometheus: `collector-config/otelcol-stability.yaml`
//! in the OpenTelemetry Collector, scraped by Prometheus 2.42 (Debian's
//! package); 100 short-lived processes of two releases (one session each, 7
//! crashing, 3 killed and found by the next start through persistence) and a
//! request-mode server of a third. The PromQL of `crash-free-rate.md`, read
//! from the file, must give each release's crash-free rate to the session, over
//! the whole run and over a window that starts between the two releases' runs;
//! the Grafana dashboard must hold exactly those queries. And the per-arm query:
//! short-lived processes splitting `otel_session.ended` by a feature flag
//! (`OTEL_SESSION_METRICS_SPLIT`), in two arms and without the flag, must give
//! each arm's crash-free rate to the session.
//!
//! Needs the collector and Prometheus: `bash scripts/install-otelcol.sh` and
//! `bash scripts/install-prometheus.sh` (the README's test command runs both).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::otelcol::{config, Otelcol, Prometheus};
use support::{free_ports, run_child, run_child_with, Receiver};

const LIMIT: Duration = Duration::from_secs(60);
const SCRAPE: Duration = Duration::from_millis(500);

/// The ```promql blocks of crash-free-rate.md, in order.
fn documented_queries() -> Vec<String> {
    let text = std::fs::read_to_string(config("crash-free-rate.md")).expect("crash-free-rate.md");
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim()) {
            (None, "```promql") => current = Some(String::new()),
            (Some(q), "```") => {
                out.push(q.trim().to_string());
                current = None;
            }
            (Some(q), _) => {
                q.push_str(line);
                q.push('\n');
            }
            _ => {}
        }
    }
    out
}

fn normalize(q: &str) -> String {
    q.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The first documented query whose text contains `marker`.
fn query_with<'a>(queries: &'a [String], marker: &str) -> &'a str {
    queries
        .iter()
        .find(|q| q.contains(marker))
        .unwrap_or_else(|| panic!("no query in crash-free-rate.md mentions {marker}"))
}

/// Evaluates `promql` (its `1d` windows replaced by `window`) at `at`: the
/// value per value of `label` (`""`: without it).
fn per(
    prom: &Prometheus,
    label: &str,
    promql: &str,
    window: &str,
    at: f64,
) -> BTreeMap<String, f64> {
    let q = promql.replace("1d", window);
    prom.query(&q, at)
        .into_iter()
        .map(|(labels, v)| (labels[label].as_str().unwrap_or("").to_string(), v))
        .collect()
}

/// [`per`] release.
fn per_version(prom: &Prometheus, promql: &str, window: &str, at: f64) -> BTreeMap<String, f64> {
    per(prom, "service_version", promql, window, at)
}

/// The stability file in the Collector (traces and logs forwarded to
/// `backend`), scraped by a Prometheus of its own.
struct Stack {
    prom: Prometheus,
    col: Otelcol,
    backend: Receiver,
}

impl Stack {
    fn start() -> Stack {
        let backend = Receiver::start();
        let scrape_port = free_ports(1)[0];
        let col = Otelcol::start(
            &config("otelcol-stability.yaml"),
            &[
                ("OTELCOL_BACKEND", backend.addr.to_string()),
                ("OTELCOL_BATCH_TIMEOUT", "10ms".into()),
                (
                    "OTELCOL_PROMETHEUS_ENDPOINT",
                    format!("127.0.0.1:{scrape_port}"),
                ),
            ],
        );
        let prom = Prometheus::start(&[format!("127.0.0.1:{scrape_port}")], SCRAPE);
        Stack { prom, col, backend }
    }
}

/// What one release's processes do, in order.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Run {
    Ok,
    Errored,
    Crash,
    Kill,
}

fn plan(crashes: &[usize], kills: &[usize], errors_every: usize) -> Vec<Run> {
    (0..50)
        .map(|i| {
            if crashes.contains(&i) {
                Run::Crash
            } else if kills.contains(&i) {
                Run::Kill
            } else if i % errors_every == 4 {
                Run::Errored
            } else {
                Run::Ok
            }
        })
        .collect()
}

/// One short-lived process of the "cli" scenario doing `run`, with `env`
/// (the endpoint, the release, …): its one session ends ok, errored, crashed
/// (a panic on the main thread) or not at all (killed).
fn run_process(run: Run, mut env: Vec<(&'static str, String)>) {
    let scenario = match run {
        Run::Ok => "cli",
        Run::Errored => {
            env.push(("E2E_ERROR", "1".into()));
            "cli"
        }
        Run::Crash => {
            env.push(("E2E_CRASH", "1".into()));
            "cli"
        }
        Run::Kill => "persist-kill",
    };
    let out = run_child(scenario, &env, LIMIT);
    if matches!(run, Run::Ok | Run::Errored) {
        assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    } else {
        assert!(!out.status.success(), "{run:?} must end the process");
    }
}

/// Runs a release's processes one after another, sharing one persistence file
/// (the next start finds a killed run's session).
fn run_release(endpoint: &str, version: &str, runs: &[Run], state: &std::path::Path) {
    for run in runs {
        run_process(
            *run,
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
                ("OTEL_SERVICE_NAME", "stability-cli".to_string()),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    format!("service.version={version}"),
                ),
                ("OTEL_SESSION_PERSIST_PATH", state.display().to_string()),
            ],
        );
    }
}

/// A moment (Unix seconds) at which Prometheus holds, for each value of
/// `label`, the total of `otel_session_ended_total` given (waits, bounded,
/// for one).
fn settled(prom: &Prometheus, label: &str, totals: &[(&str, f64)]) -> f64 {
    let want: BTreeMap<String, f64> = totals.iter().map(|(v, n)| (v.to_string(), *n)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = now_secs();
        // Two scrapes later, what Prometheus says held at `t`.
        std::thread::sleep(SCRAPE * 3);
        let got = per(
            prom,
            label,
            &format!("sum by ({label}) (otel_session_ended_total)"),
            "1d",
            t,
        );
        if got == want {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "never settled at {want:?}: {got:?}\n{}",
            prom.log()
        );
    }
}

#[test]
fn the_documented_promql_gives_each_releases_crash_free_rate_to_the_session() {
    let Stack { prom, col, backend } = Stack::start();
    let endpoint = col.http_endpoint();
    let dir = support::tls::TempDir::new("stability");

    let v1 = plan(&[5, 15, 25, 35], &[10, 30], 9);
    let v2 = plan(&[8, 20, 40], &[22], 11);
    let count = |runs: &[Run], what: Run| runs.iter().filter(|r| **r == what).count();
    assert_eq!(count(&v1, Run::Crash) + count(&v2, Run::Crash), 7);
    assert_eq!(count(&v1, Run::Kill) + count(&v2, Run::Kill), 3);

    // The server answers 20 requests (2 panic, 2 handled errors), the CLIs of
    // release 1.0.0 run, a window starts, those of 2.0.0 run, the server
    // answers 20 more and exits.
    let mut window_start = 0.0;
    let server = run_child_with(
        "server-requests",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_SERVICE_NAME", "stability-server".into()),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.version=3.0.0".into()),
            ("OTEL_SESSION_MODE", "request".into()),
            ("E2E_REQUESTS", "20".into()),
        ],
        Duration::from_secs(300),
        |_| {
            run_release(&endpoint, "1.0.0", &v1, &dir.path("v1.session"));
            // The window starts at a moment whose scrape Prometheus has: a
            // scrape that fails (a loaded machine) marks the target's series
            // stale, and a window may not start on a gap.
            window_start = settled(
                &prom,
                "service_version",
                &[("1.0.0", 50.0), ("3.0.0", 20.0)],
            );
            std::thread::sleep(SCRAPE * 2);
            run_release(&endpoint, "2.0.0", &v2, &dir.path("v2.session"));
        },
    );
    assert!(
        server.status.success(),
        "{}\n{}",
        server.stdout,
        server.stderr
    );

    // The file's traces pipeline: each CLI session's summary reached the
    // backend, with the status the metrics counted.
    let summaries = backend.wait_for(Duration::from_secs(20), |r| {
        r.spans.iter().filter(|s| s.name == "session").count() >= 100
    });
    let mut statuses: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in summaries.spans.iter().filter(|s| s.name == "session") {
        let version = s
            .resource
            .get("service.version")
            .cloned()
            .unwrap_or_default();
        let status = s
            .attrs
            .get("otel_session.status")
            .cloned()
            .unwrap_or_default();
        *statuses.entry((version, status)).or_default() += 1;
    }
    let of = |v: &str, st: &str| statuses.get(&(v.to_string(), st.to_string())).copied();
    assert_eq!(
        summaries
            .spans
            .iter()
            .filter(|s| s.name == "session")
            .count(),
        100,
        "{statuses:?}"
    );
    assert_eq!(
        (of("1.0.0", "crashed"), of("1.0.0", "abnormal")),
        (Some(4), Some(2))
    );
    assert_eq!(
        (of("2.0.0", "crashed"), of("2.0.0", "abnormal")),
        (Some(3), Some(1))
    );
    drop(summaries);

    let queries = documented_queries();
    let crash_free = query_with(&queries, "1 - (\nsum by (service_version)");
    let ended = queries
        .iter()
        .find(|q| q.starts_with("sum by (service_version)") && !q.contains('/'))
        .expect("the sessions-ended query");
    let abnormal = query_with(&queries, "otel_session_status=\"abnormal\"");

    // Wait until Prometheus has scraped every session's end.
    let expected_ended = BTreeMap::from([
        ("1.0.0".to_string(), 50.0),
        ("2.0.0".to_string(), 50.0),
        ("3.0.0".to_string(), 40.0),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = BTreeMap::new();
    while Instant::now() < deadline {
        got = per_version(&prom, ended, "1d", now_secs());
        if got == expected_ended {
            break;
        }
        std::thread::sleep(SCRAPE);
    }
    let at = now_secs();
    let whole = format!("{}ms", ((at - window_start) * 1000.0) as u64 + 3_600_000);
    let late = format!("{}ms", ((at - window_start) * 1000.0) as u64);

    let expect_rate = |crashed: f64, total: f64| 1.0 - crashed / total;
    let expected_whole = BTreeMap::from([
        ("1.0.0".to_string(), expect_rate(4.0, 50.0)),
        ("2.0.0".to_string(), expect_rate(3.0, 50.0)),
        ("3.0.0".to_string(), expect_rate(4.0, 40.0)),
    ]);
    let measured_whole = per_version(&prom, crash_free, "1d", at);
    let measured_whole_range = per_version(&prom, crash_free, &whole, at);
    // From the window's start: release 1.0.0 ended nothing, 2.0.0 all of its
    // sessions, the server its second 20 requests.
    let expected_late_ended = BTreeMap::from([
        ("1.0.0".to_string(), 0.0),
        ("2.0.0".to_string(), 50.0),
        ("3.0.0".to_string(), 20.0),
    ]);
    let measured_late_ended = per_version(&prom, ended, &late, at);
    let measured_late = per_version(&prom, crash_free, &late, at);
    let measured_abnormal = per_version(&prom, abnormal, "1d", at);
    println!(
        "PROMETHEUS sessions ended per release: expected {expected_ended:?}, measured {got:?}"
    );
    println!(
        "PROMETHEUS crash-free rate per release over the run: expected {expected_whole:?}, \
         measured {measured_whole:?}"
    );
    println!(
        "PROMETHEUS from a window starting between the releases ({late}): sessions ended \
         expected {expected_late_ended:?}, measured {measured_late_ended:?}; crash-free {measured_late:?}"
    );
    println!("PROMETHEUS abnormal share per release: {measured_abnormal:?}");
    assert_eq!(
        got,
        expected_ended,
        "collector: {}\nprometheus: {}",
        col.log(),
        prom.log()
    );
    assert_eq!(measured_whole, expected_whole);
    assert_eq!(measured_whole_range, expected_whole);
    assert_eq!(measured_late_ended, expected_late_ended);
    assert_eq!(measured_late.get("2.0.0"), Some(&expect_rate(3.0, 50.0)));
    assert_eq!(measured_late.get("3.0.0"), Some(&expect_rate(2.0, 20.0)));
    assert_eq!(measured_abnormal.get("1.0.0"), Some(&(2.0 / 50.0)));
    assert_eq!(measured_abnormal.get("2.0.0"), Some(&(1.0 / 50.0)));
    assert_eq!(measured_abnormal.get("3.0.0"), Some(&0.0));
    // The README's first query, increase(), would have missed them.
    let naive = prom.query(
        "sum by (service_version) (increase(otel_session_ended_total[1d]))",
        at,
    );
    println!("PROMETHEUS increase() over the same data: {naive:?}");
    // What crash-free-rate.md says about it: nothing for short-lived processes.
    for (labels, v) in &naive {
        if labels["service_version"] != "3.0.0" {
            assert_eq!(*v, 0.0, "{labels}");
        }
    }
}

#[test]
fn the_documented_per_arm_query_gives_each_arms_crash_free_rate_to_the_session() {
    let Stack { prom, col, .. } = Stack::start();
    let endpoint = col.http_endpoint();
    // Short-lived processes of one release splitting otel_session.ended by
    // flag new-cart: arm `a` (2 of 6 crash), arm `b` (1 of 5 crashes, 1
    // errored) and, left out of the query, 3 without the flag (1 crashes).
    let arms: [(&str, &[Run]); 3] = [
        (
            "a",
            &[Run::Ok, Run::Crash, Run::Ok, Run::Ok, Run::Crash, Run::Ok],
        ),
        ("b", &[Run::Ok, Run::Errored, Run::Crash, Run::Ok, Run::Ok]),
        ("", &[Run::Ok, Run::Crash, Run::Ok]),
    ];
    for (variant, runs) in arms {
        for run in runs {
            let mut env = vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
                ("OTEL_SERVICE_NAME", "stability-flags".to_string()),
                ("OTEL_RESOURCE_ATTRIBUTES", "service.version=4.0.0".into()),
                ("OTEL_SESSION_METRICS_SPLIT", "feature_flag.new-cart".into()),
            ];
            if !variant.is_empty() {
                env.push(("E2E_FLAG", variant.to_string()));
            }
            run_process(*run, env);
        }
    }
    let label = "feature_flag_new_cart";
    settled(&prom, label, &[("", 3.0), ("a", 6.0), ("b", 5.0)]);
    let per_arm = query_with(&documented_queries(), label).to_string();
    let at = now_secs();
    let measured = per(&prom, label, &per_arm, "1d", at);
    let expected = BTreeMap::from([
        ("a".to_string(), 1.0 - 2.0 / 6.0),
        ("b".to_string(), 1.0 - 1.0 / 5.0),
    ]);
    let everyone = per_version(
        &prom,
        query_with(&documented_queries(), "1 - (\nsum by (service_version)"),
        "1d",
        at,
    );
    println!("PROMETHEUS crash-free rate per arm: expected {expected:?}, measured {measured:?}");
    println!("PROMETHEUS the same sessions per release: {everyone:?}");
    assert_eq!(measured, expected, "prometheus: {}", prom.log());
    // The release's rate counts every session, with the flag or without.
    assert_eq!(
        everyone,
        BTreeMap::from([("4.0.0".into(), 1.0 - 4.0 / 14.0)])
    );
}

#[test]
fn the_grafana_dashboard_holds_exactly_the_documented_queries() {
    let queries: Vec<String> = documented_queries().iter().map(|q| normalize(q)).collect();
    assert!(queries.len() >= 4, "{queries:?}");
    let text =
        std::fs::read_to_string(config("grafana-stability.json")).expect("grafana-stability.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL target");
            exprs.push(normalize(&expr.replace("$__range", "1d")));
        }
    }
    for e in &exprs {
        assert!(
            queries.contains(e),
            "a dashboard query not in crash-free-rate.md: {e}"
        );
    }
    for q in &queries {
        assert!(
            exprs.contains(q),
            "a documented query missing from the dashboard: {q}"
        );
    }
}
