//! The peak resident memory of a child program, measured exactly.
//!
//! `getrusage(RUSAGE_CHILDREN)` / `wait4` report the larger of the child's peak
//! and the RSS of the process that forked it (Linux carries the pre-`exec` image's
//! high-water mark over into `ru_maxrss`), so from a test process of tens of MiB
//! they cannot show a peak of 12. Instead the child is traced (`PTRACE_TRACEME`)
//! and stopped as it exits (`PTRACE_O_TRACEEXIT`), while its memory is still
//! mapped, and `VmHWM` is read from `/proc/<pid>/status` then: the peak of the
//! program itself, from `exec` to exit.

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a measured child ended.
#[derive(Debug)]
pub struct PeakRun {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// `VmHWM` at exit, in KiB.
    pub peak_kib: u64,
    pub stdout: String,
    pub stderr: String,
}

fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `program` with only `envs` of the `OTEL_*` and `RUST_LOG` variables,
/// bounded by `limit`, and returns its exact peak RSS.
pub fn peak_rss(program: &Path, envs: &[(&str, String)], limit: Duration) -> PeakRun {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    super::child::child_env(&mut cmd, envs, |k| {
        k.starts_with("OTEL_") || k == "RUST_LOG"
    });
    // SAFETY: ptrace(TRACEME) is async-signal-safe; the child stops at its exec
    // for us to set the trace options.
    unsafe {
        cmd.pre_exec(|| {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {} traced ({e}): is ptrace allowed here?",
            program.display()
        )
    });
    let pid = child.id() as i32;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut status = 0;
    let mut peak_kib = 0;
    let mut options_set = false;
    let code = loop {
        // SAFETY: waiting on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            if start.elapsed() > limit {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("{} did not finish within {limit:?}", program.display());
            }
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
        if libc::WIFEXITED(status) {
            break Some(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            break None;
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let mut forward = sig;
            if !options_set && sig == libc::SIGTRAP {
                // The stop at exec: stop again at exit, kill it if we die.
                // SAFETY: our traced child, stopped.
                let set = unsafe {
                    libc::ptrace(
                        libc::PTRACE_SETOPTIONS,
                        pid,
                        0,
                        libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_EXITKILL,
                    )
                };
                assert_eq!(
                    set,
                    0,
                    "PTRACE_SETOPTIONS: {}",
                    std::io::Error::last_os_error()
                );
                options_set = true;
                forward = 0;
            } else if status >> 8 == (libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8)) {
                peak_kib = vm_hwm_kib(pid).expect("VmHWM readable at the exit stop");
                forward = 0;
            }
            // SAFETY: resume our traced child, passing its signal on.
            unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, forward) };
        }
    };
    drop(child); // already reaped above
    PeakRun {
        code,
        peak_kib,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}
