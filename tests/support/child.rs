//! Child programs the end-to-end tests run: `examples/e2e_child.rs` scenarios and
//! other examples, with a clean `OTEL_*` environment, bounded in time, talking
//! back through `KEY=value` lines and `WAIT`.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment that points a child at `endpoint` over OTLP/gRPC, plus `more`.
pub fn grpc_env(
    endpoint: impl Into<String>,
    more: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.into()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_string()),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// What a child scenario printed and how it ended.
pub struct ChildRun {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ChildRun {
    /// The value of a `KEY=value` line the scenario printed.
    pub fn get(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(|v| v.trim().to_string()))
    }
}

/// An example program (`examples/NAME.rs`), built next to the tests.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --examples` first (scripts/test-all.sh does)",
        bin.display()
    );
    bin
}

/// Runs `e2e_child SCENARIO` (or, for `example:NAME [ARG]`, that example) with `envs`, bounded by `limit`; `input` is written
/// to its stdin line by line when it prints `WAIT` (for phased scenarios).
pub fn run_child(scenario: &str, envs: &[(&str, String)], limit: Duration) -> ChildRun {
    run_child_with(scenario, envs, limit, |_| {})
}

/// A test's child process: this process's variables `strip` picks are removed,
/// then `envs` are set, and the child dies with the test (`PR_SET_PDEATHSIG`).
pub fn child_env(cmd: &mut Command, envs: &[(&str, String)], strip: impl Fn(&str) -> bool) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if strip(&k) {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    dies_with_test(cmd);
}

/// The child `cmd` starts is killed when this test process dies
/// (`PR_SET_PDEATHSIG`), so a failed or killed test leaves nothing running.
pub fn dies_with_test(cmd: &mut Command) {
    // SAFETY: prctl only (async-signal-safe); it asks the kernel to kill the
    // child when this process dies.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// As [`run_child`]; `on_wait` runs each time the child prints a `WAIT` line, then
/// the child is told to go on.
pub fn run_child_with(
    scenario: &str,
    envs: &[(&str, String)],
    limit: Duration,
    mut on_wait: impl FnMut(usize),
) -> ChildRun {
    use std::io::{BufRead as _, BufReader, Write as _};
    // `example:NAME` or `example:NAME ARG` runs that example, else e2e_child.
    let (program, arg) = match scenario.strip_prefix("example:") {
        Some(name) => match name.split_once(' ') {
            Some((name, arg)) => (example_bin(name), Some(arg)),
            None => (example_bin(name), None),
        },
        None => (example_bin("e2e_child"), Some(scenario)),
    };
    let mut cmd = Command::new(program);
    cmd.args(arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    child_env(&mut cmd, envs, |k| k.starts_with("OTEL_"));
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn e2e_child");
    let mut stdin = child.stdin.take();
    let out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let out_t = std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let mut waits = 0;
    let status = loop {
        while let Ok(line) = line_rx.try_recv() {
            if line.trim() == "WAIT" {
                on_wait(waits);
                waits += 1;
                if let Some(i) = stdin.as_mut() {
                    let _ = writeln!(i, "go");
                    let _ = i.flush();
                }
            }
            stdout.push_str(&line);
            stdout.push('\n');
        }
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("e2e_child {scenario} did not finish within {limit:?}; printed:\n{stdout}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(stdin);
    let _ = out_t.join();
    while let Ok(line) = line_rx.try_recv() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    ChildRun {
        status,
        stdout,
        stderr: err_t.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}
