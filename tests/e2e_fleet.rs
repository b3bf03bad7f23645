//! A session-affine collector fleet of real OpenTelemetry Collectors: two
//! agents run `collector-config/otelcol-agent.yaml` (the load-balancing exporter
//! routing on `session.id`, static resolver) in front of three gateways running
//! `collector-config/otelcol.yaml`, each forwarding to a receiver of its own in
//! this test. Four processes (app mode over gRPC and HTTP, request mode with
//! per-request ids, and request mode joining the sessions of another process
//! through another agent) send more than 200 sessions: every span and log record
//! of a session must land on exactly one gateway. Then a gateway stops mid-run:
//! what the agent does with its share (holds and retries, delivers on return;
//! drops, and says so in its log, when the agent stops first) is measured.
//!
//! Needs the collector: `bash scripts/install-otelcol.sh` (the README's test
//! command runs it).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::otelcol::{config, Otelcol};
use support::{run_child, ChildRun, Receiver};

const LIMIT: Duration = Duration::from_secs(90);

struct Gateway {
    backend: Receiver,
    col: Otelcol,
}

/// What the gateways hold for one session id: per gateway, the names of the
/// spans and the bodies / event names of the log records.
#[derive(Default, Debug)]
struct Landed {
    gateways: BTreeSet<usize>,
    spans: Vec<String>,
    logs: Vec<String>,
}

fn landed(gateways: &[Gateway]) -> BTreeMap<String, Landed> {
    let mut by_session: BTreeMap<String, Landed> = BTreeMap::new();
    for (g, gw) in gateways.iter().enumerate() {
        let got = gw.backend.received();
        for s in &got.spans {
            if let Some(sid) = s.sid() {
                let l = by_session.entry(sid.to_string()).or_default();
                l.gateways.insert(g);
                l.spans.push(s.name.clone());
            }
        }
        for r in &got.logs {
            if let Some(sid) = r.sid() {
                let l = by_session.entry(sid.to_string()).or_default();
                l.gateways.insert(g);
                // Lifecycle events by name; the app's records (the tracing
                // bridge names them after their source line) by message.
                let what = if r.event_name.starts_with("session.") {
                    r.event_name.clone()
                } else {
                    r.body.clone()
                };
                l.logs.push(what);
            }
        }
    }
    by_session
}

fn ids(run: &ChildRun, key: &str) -> Vec<String> {
    run.get(key)
        .unwrap_or_else(|| panic!("{key} missing: {}\n{}", run.stdout, run.stderr))
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn count(list: &[String], what: &str) -> usize {
    list.iter().filter(|x| x.as_str() == what).count()
}

/// An app session is whole: its lifecycle (start, end, the summary), its two
/// spans and its log record, plus `extra_requests` joined requests.
fn app_session_whole(l: &Landed, extra_requests: usize) -> bool {
    count(&l.spans, "session") == 1
        && count(&l.spans, "session.start") == 1
        && count(&l.spans, "session.end") == 1
        && count(&l.spans, "fleet-work") == 1
        && count(&l.spans, "fleet-step") == 1
        && count(&l.spans, "fleet-request") == extra_requests
        && count(&l.logs, "session.start") == 1
        && count(&l.logs, "session.end") == 1
        && count(&l.logs, "fleet log") == 1
        && count(&l.logs, "request log") == extra_requests
}

fn request_session_whole(l: &Landed) -> bool {
    l.spans == ["fleet-request"] && l.logs == ["request log"]
}

fn run_ok(scenario: &str, env: &[(&str, String)]) -> ChildRun {
    let run = run_child(scenario, env, LIMIT);
    assert!(run.status.success(), "{}\n{}", run.stdout, run.stderr);
    assert!(
        !run.stderr.contains("otel-session:"),
        "the app warned: {}",
        run.stderr
    );
    run
}

/// A process in app mode with `sessions` sessions (and its first one) through
/// `endpoint`: their ids.
fn run_app(endpoint: String, protocol: &str, service: &str, sessions: usize) -> Vec<String> {
    let run = run_ok(
        "fleet-app",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            ("E2E_SESSIONS", sessions.to_string()),
        ],
    );
    ids(&run, "SESSIONS")
}

/// A server in request mode (per-request ids, joining) answering `requests`
/// requests, the first ones joining `join`: the ids of its own sessions.
fn run_server(
    endpoint: String,
    protocol: &str,
    service: &str,
    requests: usize,
    join: &[String],
) -> Vec<String> {
    let run = run_ok(
        "fleet-requests",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            ("OTEL_SESSION_MODE", "request".into()),
            ("OTEL_SESSION_REQUEST_IDS", "true".into()),
            ("OTEL_SESSION_PROPAGATE", "true".into()),
            ("E2E_REQUESTS", requests.to_string()),
            ("E2E_JOIN", join.join(",")),
        ],
    );
    assert_eq!(ids(&run, "JOINED"), join, "joined as asked");
    ids(&run, "REQUESTS")
}

/// Waits (bounded) until `done` holds for where the sessions landed.
fn wait_landed(
    gateways: &[Gateway],
    limit: Duration,
    done: impl Fn(&BTreeMap<String, Landed>) -> bool,
) -> BTreeMap<String, Landed> {
    let deadline = Instant::now() + limit;
    loop {
        let now = landed(gateways);
        if done(&now) || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_fleet_routed_on_session_id_keeps_every_session_on_one_gateway() {
    let mut gateways: Vec<Gateway> = (0..3)
        .map(|_| {
            let backend = Receiver::start();
            let col = Otelcol::start(
                &config("otelcol.yaml"),
                &[
                    ("OTELCOL_BACKEND", backend.addr.to_string()),
                    ("OTELCOL_BATCH_TIMEOUT", "10ms".into()),
                    ("OTELCOL_DEBUG_VERBOSITY", "basic".into()),
                ],
            );
            Gateway { backend, col }
        })
        .collect();
    let list = gateways
        .iter()
        .map(|g| format!("127.0.0.1:{}", g.col.grpc))
        .collect::<Vec<_>>()
        .join(", ");
    let agent_env = [("OTELCOL_GATEWAYS", format!("[{list}]"))];
    let agent_a = Otelcol::start(&config("otelcol-agent.yaml"), &agent_env);
    let mut agent_b = Otelcol::start(&config("otelcol-agent.yaml"), &agent_env);

    // ---- 4 processes, > 200 sessions.
    let app1 = run_app(agent_a.grpc_endpoint(), "grpc", "fleet-app-grpc", 60);
    let app2 = run_app(
        agent_b.http_endpoint(),
        "http/protobuf",
        "fleet-app-http",
        60,
    );
    // Joins 25 of the first process's sessions, through the other agent.
    let req3 = run_server(
        agent_b.grpc_endpoint(),
        "grpc",
        "fleet-server-joining",
        50,
        &app1[..25],
    );
    let req4 = run_server(
        agent_a.http_endpoint(),
        "http/protobuf",
        "fleet-server",
        50,
        &[],
    );
    let sessions = app1.len() + app2.len() + req3.len() + 25 + req4.len();
    assert!(sessions >= 200, "{sessions} sessions");

    let app: Vec<&String> = app1.iter().chain(&app2).collect();
    let requests: Vec<&String> = req3.iter().chain(&req4).collect();
    let whole = |m: &BTreeMap<String, Landed>| {
        app.iter().enumerate().all(|(i, id)| {
            let joined = usize::from(i < 25);
            m.get(*id).is_some_and(|l| app_session_whole(l, joined))
        }) && requests
            .iter()
            .all(|id| m.get(*id).is_some_and(request_session_whole))
    };
    let got = wait_landed(&gateways, Duration::from_secs(30), whole);
    let missing: Vec<_> = app
        .iter()
        .chain(&requests)
        .filter(|id| !got.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
    for (i, id) in app.iter().enumerate() {
        let l = &got[id.as_str()];
        assert!(app_session_whole(l, usize::from(i < 25)), "{id}: {l:?}");
    }
    for id in &requests {
        assert!(
            request_session_whole(&got[id.as_str()]),
            "{id}: {:?}",
            got[id.as_str()]
        );
    }
    let split: Vec<_> = got.iter().filter(|(_, l)| l.gateways.len() > 1).collect();
    let mut per_gateway = [0usize; 3];
    for l in got.values() {
        for g in &l.gateways {
            per_gateway[*g] += 1;
        }
    }
    println!(
        "FLEET sessions routed={} (app {}, request {}, joined across processes and agents 25) \
         split across gateways={} per gateway={per_gateway:?}",
        got.len(),
        app.len(),
        requests.len(),
        split.len()
    );
    assert!(
        split.is_empty(),
        "sessions split across gateways: {split:?}"
    );
    assert!(
        per_gateway.iter().all(|n| *n > 20),
        "every gateway gets a share: {per_gateway:?}"
    );

    // ---- A gateway stops mid-run; the agent holds its share and retries.
    for g in &gateways {
        g.backend.clear();
    }
    gateways[2].col.stop();
    let stopped_at = Instant::now();
    let app5 = run_app(agent_a.grpc_endpoint(), "grpc", "fleet-app-outage", 60);
    // What the two gateways left get: every session routed to them, whole.
    std::thread::sleep(Duration::from_secs(1));
    let during = landed(&gateways);
    let held: Vec<&String> = app5.iter().filter(|id| !during.contains_key(*id)).collect();
    for id in app5.iter().filter(|id| during.contains_key(*id)) {
        assert!(app_session_whole(&during[id], 0), "{id}: {:?}", during[id]);
    }
    assert!(
        !held.is_empty(),
        "some sessions route to the stopped gateway (1 in 3 of {})",
        app5.len()
    );
    gateways[2].col.restart();
    let restarted_at = Instant::now();
    let after = wait_landed(&gateways, Duration::from_secs(60), |m| {
        app5.iter()
            .all(|id| m.get(id).is_some_and(|l| app_session_whole(l, 0)))
    });
    let delivered_after = restarted_at.elapsed();
    let lost: Vec<&String> = app5
        .iter()
        .filter(|id| !after.get(*id).is_some_and(|l| app_session_whole(l, 0)))
        .collect();
    let rerouted = held
        .iter()
        .filter(|id| {
            after
                .get(id.as_str())
                .is_some_and(|l| !l.gateways.contains(&2))
        })
        .count();
    println!(
        "FLEET gateway 3 stopped for {:.1} s: {} of {} sessions routed to it were held by the \
         agent (retry_on_failure) and delivered {:.1} s after it came back, {} re-routed, {} lost",
        (restarted_at - stopped_at).as_secs_f64(),
        held.len(),
        app5.len(),
        delivered_after.as_secs_f64(),
        rerouted,
        lost.len()
    );
    assert!(lost.is_empty(), "lost while a gateway was away: {lost:?}");
    assert_eq!(rerouted, 0, "the static resolver does not re-route");
    assert!(after.values().all(|l| l.gateways.len() == 1));

    // ---- The agent stops while the gateway is away: its share is dropped,
    // and the agent says so.
    gateways[2].col.stop();
    let app6 = run_app(agent_b.grpc_endpoint(), "grpc", "fleet-app-agent-stops", 30);
    std::thread::sleep(Duration::from_secs(1));
    agent_b.stop();
    gateways[2].col.restart();
    std::thread::sleep(Duration::from_secs(2));
    let end = landed(&gateways);
    let dropped: Vec<usize> = (0..app6.len())
        .filter(|i| !end.contains_key(&app6[*i]))
        .collect();
    // What those sessions were: 5 spans (start, end, the summary, two of the
    // app's) and 3 log records (start, end, the app's), plus an ERROR record
    // in every third.
    let spans_lost = 5 * dropped.len();
    let logs_lost: usize = dropped.iter().map(|i| 3 + usize::from(i % 3 == 1)).sum();
    let log = agent_b.log();
    let said = |signal: &str| -> usize {
        log.lines()
            .filter(|l| l.contains("Dropping data"))
            .filter(|l| l.contains(&format!("\"otelcol.signal\": \"{signal}\"")))
            .filter_map(|l| {
                let n = l.split("\"dropped_items\": ").nth(1)?;
                n.trim_end_matches('}').trim().parse::<usize>().ok()
            })
            .sum()
    };
    println!(
        "FLEET agent stopped while gateway 3 was away: {} of {} sessions dropped ({spans_lost} \
         spans, {logs_lost} log records); the agent's log says it dropped {} spans and {} log \
         records",
        dropped.len(),
        app6.len(),
        said("traces"),
        said("logs")
    );
    assert!(
        !dropped.is_empty(),
        "some of its share was routed to gateway 3"
    );
    assert_eq!(
        said("traces"),
        spans_lost,
        "every lost span is in the agent's log: {log}"
    );
    assert_eq!(
        said("logs"),
        logs_lost,
        "every lost log record is in the agent's log"
    );
}
