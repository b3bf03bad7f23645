//! The crate in a program built the way size- and speed-minded users ship:
//! fat LTO, one codegen unit, identical-code folding at link time (lld
//! `--icf=all`) and `panic = "abort"` (`tests/probe`, built by
//! `scripts/build-probe.sh`, which `scripts/test-all.sh` runs first).
//!
//! - Our `session.id` is told from one the application set by the key's
//!   address: the two keys are made at run time on the heap, so no linker can
//!   fold them into one (two statics could be).
//! - When panics abort, nothing is caught: a panic inside an `on_session`
//!   callback, an observer or on the main thread must still reach the exporter
//!   as a crash (status `crashed`, reason `crash`) before the process goes down.

mod support;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The probe program: `PROBE_BIN`, or where `scripts/build-probe.sh` puts it.
fn probe_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROBE_BIN") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/probe-target/release/otel-session-probe");
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/build-probe.sh` (the README's test command \
         does), or set PROBE_BIN",
        bin.display()
    );
    bin
}

struct Run {
    stdout: String,
    stderr: String,
    status: std::process::ExitStatus,
}

impl Run {
    fn get(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.stdout.lines().find_map(|l| l.strip_prefix(&prefix))
    }

    /// `(name, session id, status, reason)` of every lifecycle span, in order.
    fn spans(&self) -> Vec<[String; 4]> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("SPAN "))
            .map(|l| {
                let field = |k: &str| {
                    l.split(' ')
                        .find_map(|f| f.strip_prefix(&format!("{k}=")))
                        .unwrap_or_default()
                        .to_string()
                };
                [field("name"), field("id"), field("status"), field("reason")]
            })
            .collect()
    }
}

fn run(scenario: &str) -> Run {
    run_with(scenario, &[])
}

fn run_with(scenario: &str, envs: &[(&str, String)]) -> Run {
    let mut cmd = Command::new(probe_bin());
    cmd.arg(scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::child_env(&mut cmd, envs, |k| k.starts_with("OTEL_"));
    let mut child = cmd.spawn().expect("spawn the probe");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the probe ({scenario}) did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
        status,
    }
}

#[test]
fn our_stamp_is_told_from_the_applications_after_lto_and_identical_code_folding() {
    let r = run("origin");
    assert!(r.status.success(), "{}\n{}", r.stdout, r.stderr);
    let current = r.get("current").expect("current");
    assert_eq!(
        r.get("span.ours"),
        Some(current),
        "stamped once: {}",
        r.stdout
    );
    assert_eq!(
        r.get("span.theirs"),
        Some("the-apps-own"),
        "the application's own id kept, ours not added beside it: {}",
        r.stdout
    );
    assert_eq!(r.get("span.joined"), Some("caller-1"), "{}", r.stdout);
    assert_eq!(r.get("handled.after_ours"), Some("1"), "{}", r.stdout);
    assert_eq!(
        r.get("handled.after_theirs"),
        Some("2"),
        "a record carrying the current id, set by the application, counts once: {}",
        r.stdout
    );
    assert_eq!(
        r.get("handled.after_joined"),
        Some("2"),
        "a record stamped from a joined caller is not the app session's: {}",
        r.stdout
    );
}

/// The crash the probe's `scenario` makes ends `session` (status `crashed`,
/// reason `crash`) at the exporter, and the process then aborts.
fn crashed_before_abort(scenario: &str, session: impl Fn(&Run) -> String) {
    let r = run(scenario);
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        r.status.signal(),
        Some(libc::SIGABRT),
        "panics abort in this build: {}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.get("survived").is_none(), "{}", r.stdout);
    let id = session(&r);
    let ends: Vec<_> = r
        .spans()
        .into_iter()
        .filter(|[name, sid, ..]| name == "session.end" && *sid == id)
        .collect();
    assert_eq!(ends.len(), 1, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(ends[0][2], "crashed", "{}", r.stdout);
    assert_eq!(ends[0][3], "crash", "{}", r.stdout);
}

#[test]
fn a_panic_on_the_main_thread_is_a_crash_when_panics_abort() {
    crashed_before_abort("abort-main", |r| r.get("first").unwrap().to_string());
}

#[test]
fn a_panic_abort_build_reports_the_panic_first_and_its_next_start_the_signal() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = support::temp_dir("probe");
    let file = dir.join("session.json");
    let r = run_with(
        "abort-persist",
        &[("PROBE_PERSIST", file.display().to_string())],
    );
    assert_eq!(r.status.signal(), Some(libc::SIGABRT), "{}", r.stderr);
    let first = r.get("first").unwrap().to_string();
    // The hook's report, before the abort: one FATAL exception record.
    let line = format!("LOG event=exception severity=Some(Fatal) sid={first}\n");
    assert_eq!(r.stdout.matches(&line).count(), 1, "{}", r.stdout);

    // The next start (an unwinding build: the crash example) reads the marker
    // the abort left: one `app.crash` record naming SIGABRT and that session,
    // and no second crash counted (the hook ended the session already).
    let receiver = support::Receiver::start();
    let rotel = support::Rotel::start(receiver.addr);
    let next = support::run_child(
        "example:crash report",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_SESSION_PERSIST_PATH", file.display().to_string()),
            ("OTEL_METRICS_EXPORTER", "none".to_string()),
        ],
        Duration::from_secs(60),
    );
    assert!(next.status.success(), "{}", next.stderr);
    let got = receiver.wait_for(Duration::from_secs(10), |g| {
        g.logs.iter().any(|l| l.event_name == "app.crash")
    });
    let crashes: Vec<_> = got
        .logs
        .iter()
        .filter(|l| l.event_name == "app.crash")
        .collect();
    assert_eq!(crashes.len(), 1);
    assert_eq!(crashes[0].attrs["exception.type"], "SIGABRT");
    assert_eq!(crashes[0].sid(), Some(first.as_str()));
    let crashed_ends = got
        .spans
        .iter()
        .filter(|s| {
            s.name == "session.end"
                && s.attrs.get("otel_session.status").map(String::as_str) == Some("crashed")
        })
        .count();
    assert!(
        crashed_ends <= 1,
        "an end sent again is the same end, counted once"
    );
    drop(got);
}

#[test]
fn a_panic_in_an_on_session_callback_is_a_crash_when_panics_abort() {
    // The callback runs for the next session's candidate, before any state
    // changes: the session current when it panicked is the one that crashed.
    crashed_before_abort("abort-callback", |r| r.get("first").unwrap().to_string());
}

#[test]
fn a_panic_in_an_observer_is_a_crash_when_panics_abort() {
    // The observer panics on the second session's start, while that start is
    // being delivered: the second session crashed, and the crash is delivered
    // by the crash helper (the panicking thread never returns to delivery).
    crashed_before_abort("abort-observer", |r| {
        r.spans()
            .into_iter()
            .filter(|[name, ..]| name == "session.start")
            .nth(1)
            .map(|s| s[1].clone())
            .expect("a second session started")
    });
}
