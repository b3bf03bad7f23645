//! A real backend shows our sessions: a child program using `init!()` sends
//! through rotel into Arize Phoenix, and the spans read back from Phoenix's REST
//! API group by `session.id` into the two sessions the program had.
//!
//! Needs Phoenix: `bash scripts/install-phoenix.sh` (the README's test command
//! runs it).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_ports, run_child, ChildRun, Rotel};

fn phoenix_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PHOENIX_BIN") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/phoenix/bin/phoenix");
    assert!(
        p.exists(),
        "Phoenix is not installed: run `bash scripts/install-phoenix.sh` (the README's test command does), or set PHOENIX_BIN"
    );
    p
}

struct Phoenix {
    child: Child,
    http: u16,
    grpc: u16,
    _dir: support::TempDir,
}

impl Phoenix {
    fn start() -> Phoenix {
        let ports = free_ports(2);
        let (http, grpc) = (ports[0], ports[1]);
        let dir = support::temp_dir(&format!("phoenix-{http}"));
        let mut cmd = Command::new(phoenix_bin());
        cmd.arg("serve")
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", http.to_string())
            .env("PHOENIX_GRPC_PORT", grpc.to_string())
            .env("PHOENIX_WORKING_DIR", &*dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        support::dies_with_test(&mut cmd);
        let child = cmd.spawn().expect("start phoenix");
        let mut p = Phoenix {
            child,
            http,
            grpc,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("phoenix exited: {st}");
            }
            if p.get("/healthz").is_some_and(|(code, _)| code == 200) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "phoenix did not come up in 120 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A plain HTTP/1.1 GET: (status, body).
    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.http)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        };
        Some((code, body))
    }

    /// Runs child `scenario` (with `more` in its environment) through a
    /// rotel that forwards to this Phoenix over gRPC, traces only (Phoenix
    /// takes no logs or metrics); the rotel is returned to stop at the end.
    fn run(&self, scenario: &str, more: &[(&'static str, String)]) -> (Rotel, ChildRun) {
        let forward = format!("127.0.0.1:{}", self.grpc).parse().unwrap();
        let rotel = Rotel::start(forward);
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
            ("OTEL_LOGS_EXPORTER", "none".to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ];
        env.extend(more.iter().cloned());
        let run = run_child(scenario, &env, Duration::from_secs(60));
        (rotel, run)
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        support::terminate(&mut self.child, Duration::from_secs(10));
    }
}

#[test]
fn phoenix_shows_our_sessions_grouped_by_session_id() {
    let phoenix = Phoenix::start();
    let (rotel, run) = phoenix.run("basic", &[("OTEL_SERVICE_NAME", "e2e-phoenix".to_string())]);
    assert!(run.status.success(), "{}", run.stderr);
    let (a, b) = (run.get("A").unwrap(), run.get("B").unwrap());

    // Read the spans back, grouped by session.id, until both sessions are whole.
    let deadline = Instant::now() + Duration::from_secs(60);
    let by_session = loop {
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if let Some((200, body)) = phoenix.get("/v1/projects/default/spans?limit=1000") {
            let json: serde_json::Value = serde_json::from_str(&body).expect("json");
            for span in json["data"].as_array().into_iter().flatten() {
                let sid = span["attributes"]["session.id"]
                    .as_str()
                    .unwrap_or("-")
                    .to_string();
                let name = span["name"].as_str().unwrap_or_default().to_string();
                groups.entry(sid).or_default().insert(name);
            }
        }
        let whole = |id: &str| groups.get(id).is_some_and(|g| g.contains("session"));
        if (whole(&a) && whole(&b)) || Instant::now() > deadline {
            break groups;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let names = |set: &[&str]| set.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        by_session.get(&a),
        Some(&names(&[
            "a-after-resume",
            "a-work",
            "session",
            "session.end",
            "session.pause",
            "session.resume",
            "session.start"
        ])),
        "session A in Phoenix: {by_session:?}"
    );
    assert_eq!(
        by_session.get(&b),
        Some(&names(&[
            "b-work",
            "session",
            "session.end",
            "session.start"
        ])),
        "session B in Phoenix: {by_session:?}"
    );
    assert!(
        by_session
            .get("-")
            .is_some_and(|g| g.contains("paused-work")),
        "{by_session:?}"
    );
    rotel.stop();
}

/// Phoenix's spans of one session (its `session.id`).
fn session_spans(phoenix: &Phoenix, sid: &str) -> Vec<serde_json::Value> {
    let Some((200, body)) = phoenix.get("/v1/projects/default/spans?limit=1000") else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["attributes"]["session.id"].as_str() == Some(sid))
        .cloned()
        .collect()
}

#[test]
fn a_crashed_sessions_timeline_in_phoenix_shows_the_panic_with_its_backtrace() {
    let phoenix = Phoenix::start();
    // Phoenix takes traces only: the crash is a span event there.
    let (rotel, run) = phoenix.run(
        "example:crash panic",
        &[("RUST_BACKTRACE", "0".to_string())],
    );
    assert_eq!(run.status.code(), Some(101), "{}", run.stderr);
    let sid = run.get("SESSION").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans = session_spans(&phoenix, &sid);
        let has = |name: &str| spans.iter().any(|s| s["name"] == name);
        // The failed span ends while the panic unwinds, after the crash's
        // flush: it comes with the guard's.
        if (has("session") && has("load-config")) || Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let summary = spans
        .iter()
        .find(|s| s["name"] == "session")
        .unwrap_or_else(|| panic!("no summary of {sid} in Phoenix: {spans:?}"));
    assert_eq!(summary["attributes"]["otel_session.status"], "crashed");
    let events = summary["events"].as_array().expect("events");
    let exception = events
        .iter()
        .find(|e| e["name"] == "exception")
        .unwrap_or_else(|| panic!("no exception event on the timeline: {events:?}"));
    let attrs = &exception["attributes"];
    assert_eq!(attrs["exception.type"], "panic");
    assert!(
        attrs["exception.message"]
            .as_str()
            .is_some_and(|m| m.contains("the config holds a number")),
        "{attrs}"
    );
    let trace = attrs["exception.stacktrace"].as_str().unwrap_or_default();
    assert!(
        trace
            .lines()
            .next()
            .unwrap_or_default()
            .contains("parse_config"),
        "the backtrace starts at the function that called expect: {attrs}"
    );
    assert!(
        !trace.contains("otel_session::") && !trace.contains("rust_begin_unwind"),
        "it starts at the panic, not in the hook: {trace}"
    );
    // The span it happened in failed, in the same session.
    let failed = spans
        .iter()
        .find(|s| s["name"] == "load-config")
        .unwrap_or_else(|| panic!("no load-config span: {spans:?}"));
    assert_eq!(failed["status_code"], "ERROR", "{failed}");
    rotel.stop();
}
