//! The fatal-signal handler (Unix): on SIGSEGV, SIGBUS, SIGILL, SIGFPE or
//! SIGABRT it writes the [`marker`](super::marker) file's crash record, then
//! chains to the previous action. Owns the marker's descriptor and these
//! dispositions; may use `libc`, `marker` and `unsafe` (each block with its
//! `// SAFETY:` reason). The handler is async-signal-safe (no allocation,
//! lock, formatting or `std::thread::current()`), records once per process
//! and runs on the alternate signal stack, so stack overflows are recorded:
//! std gives each thread it spawns one (for its "has overflowed its stack"
//! message), [`arm`] the arming thread if it has none. A published descriptor
//! is never closed, so a racing handler never writes to a reused number.

use std::fs::File;
use std::io;
use std::mem::{zeroed, ManuallyDrop};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::FileExt;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::SeqCst};
use std::sync::Once;

use libc::{c_int, c_void, sigaction, siginfo_t, SIG_DFL, SIG_IGN};
use libc::{SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV};

use super::marker::{self, Identity, MARKER_LEN, STATE_OFFSET, THREAD_NAME_LEN};

/// The signals handled, in the order of [`PREVIOUS`].
const SIGNALS: [c_int; 5] = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT];
/// The marker file's descriptor; -1 when disarmed (nothing is written).
static FD: AtomicI32 = AtomicI32::new(-1);
/// Set by the first signal recorded: one record per process.
static WRITTEN: AtomicBool = AtomicBool::new(false);
/// Installs the handlers once per process.
static INSTALL: Once = Once::new();
/// The OS error of the installation, 0 if it succeeded.
static INSTALL_ERROR: AtomicI32 = AtomicI32::new(0);
/// The action each of [`SIGNALS`] had before ours: `sa_sigaction`, `sa_flags`.
static PREVIOUS: [(AtomicUsize, AtomicI32); 5] =
    [const { (AtomicUsize::new(SIG_DFL), AtomicI32::new(0)) }; 5];

/// A handler installed with `SA_SIGINFO`.
type InfoHandler = extern "C" fn(c_int, *mut siginfo_t, *mut c_void);
/// A handler installed without `SA_SIGINFO`.
type PlainHandler = extern "C" fn(c_int);

/// Arms the crash marker: truncates `file` to [`MARKER_LEN`], writes the clean
/// marker of `identity`, installs the handlers (once per process) and keeps
/// the descriptor for them (the `File` is leaked; arming again `dup2`s the new
/// file over the same descriptor, closing the old file).
pub(crate) fn arm(file: File, identity: &Identity) -> io::Result<()> {
    file.set_len(MARKER_LEN as u64)?;
    file.write_all_at(&marker::armed(identity), 0)?;
    INSTALL.call_once(|| {
        let error = install().map_or_else(|e| e.raw_os_error().unwrap_or(libc::EIO), |()| 0);
        INSTALL_ERROR.store(error, SeqCst);
    });
    if INSTALL_ERROR.load(SeqCst) != 0 {
        return Err(io::Error::from_raw_os_error(INSTALL_ERROR.load(SeqCst)));
    }
    let new = file.into_raw_fd();
    let Err(current) = FD.compare_exchange(-1, new, SeqCst, SeqCst) else {
        return Ok(());
    };
    // SAFETY: `new` is ours (closed here); `current` is a descriptor kept
    // open forever: dup2 makes it refer to the new file, closing the old.
    unsafe {
        let moved = libc::dup2(new, current);
        let error = io::Error::last_os_error();
        libc::close(new);
        if moved < 0 {
            return Err(error);
        }
        libc::fcntl(current, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Ok(())
}

/// Disarms: the handlers stay installed and only chain; nothing is written.
/// The descriptor stays open (a handler may be about to use it).
pub(crate) fn disarm() {
    FD.store(-1, SeqCst);
}

/// Writes `bytes` at `offset` in the armed marker file (the watchdog's hang
/// block); fails if disarmed or once a crash is recorded (never hides it).
pub(crate) fn write_at(offset: u64, bytes: &[u8]) -> io::Result<()> {
    let fd = FD.load(SeqCst);
    if fd < 0 || WRITTEN.load(SeqCst) {
        return Err(io::Error::other(
            "crash marker disarmed or recording a crash",
        ));
    }
    // SAFETY: `fd` is open (a descriptor in FD is never closed) and the
    // `File` is never dropped, so it does not close it either.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    file.write_all_at(bytes, offset)
}

/// Installs [`handler`] for [`SIGNALS`], each previous action saved first.
fn install() -> io::Result<()> {
    ensure_alternate_stack()?;
    for (signal, (action, flags)) in SIGNALS.into_iter().zip(&PREVIOUS) {
        // SAFETY: sigaction is plain data, valid zeroed; the pointers are to
        // locals or null. The previous action is saved before ours is set.
        unsafe {
            let (mut previous, mut new): (sigaction, sigaction) = (zeroed(), zeroed());
            let failed = sigaction(signal, null(), &mut previous) != 0;
            action.store(previous.sa_sigaction, SeqCst);
            flags.store(previous.sa_flags, SeqCst);
            new.sa_sigaction = handler as InfoHandler as libc::sighandler_t;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            if failed || sigaction(signal, &new, null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Gives the calling thread an alternate signal stack (leaked) if it has none.
fn ensure_alternate_stack() -> io::Result<()> {
    // SAFETY: stack_t is plain data, valid zeroed; a null new stack only
    // queries; the memory given is leaked, so it outlives the thread.
    unsafe {
        let mut stack: libc::stack_t = zeroed();
        if libc::sigaltstack(null(), &mut stack) == 0 && stack.ss_flags & libc::SS_DISABLE == 0 {
            return Ok(());
        }
        stack.ss_size = libc::SIGSTKSZ + 4 * 4096;
        stack.ss_sp = Vec::leak(vec![0u8; stack.ss_size]).as_mut_ptr().cast();
        stack.ss_flags = 0;
        if libc::sigaltstack(&stack, null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The handler: records the first fatal signal, then chains.
extern "C" fn handler(signal: c_int, info: *mut siginfo_t, context: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo_t (SA_SIGINFO) or null.
    let code = unsafe { info.as_ref() }.map_or(0, |info| info.si_code);
    record(signal, info, code);
    chain(signal, info, context, code);
}

/// Writes the crash record, unless disarmed or already written.
fn record(signal: c_int, info: *mut siginfo_t, code: c_int) {
    let fd = FD.load(SeqCst);
    if fd < 0 || WRITTEN.swap(true, SeqCst) {
        return;
    }
    let fault = code > 0 && matches!(signal, SIGSEGV | SIGBUS | SIGILL | SIGFPE);
    // SAFETY: `info` is valid or null; si_addr is the member filled for a fault
    // (si_code > 0) of these signals; timespec is plain data, valid zeroed.
    let (address, now) = unsafe {
        let mut now: libc::timespec = zeroed();
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        let info = info.as_ref().filter(|_| fault);
        (info.map_or(0, |info| info.si_addr() as u64), now)
    };
    let (seconds, nanos) = (now.tv_sec.max(0) as u64, now.tv_nsec.max(0) as u64);
    let at = seconds.saturating_mul(1_000_000_000).saturating_add(nanos);
    let (thread_id, thread_name) = this_thread();
    let record = marker::crash_record(signal, code, address, at, thread_id, &thread_name);
    let offset = STATE_OFFSET as libc::off_t;
    // SAFETY: `fd` is open (never closed once stored); `record` is a local.
    unsafe { libc::pwrite(fd, record.as_ptr().cast(), record.len(), offset) };
}

/// The OS id and the name (NUL-padded) of the calling thread.
fn this_thread() -> (u64, [u8; THREAD_NAME_LEN]) {
    let mut name = [0u8; THREAD_NAME_LEN];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: gettid takes nothing; PR_GET_NAME writes ≤ 16 bytes to the local.
    let id = unsafe {
        libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr());
        libc::syscall(libc::SYS_gettid) as u64
    };
    #[cfg(target_vendor = "apple")]
    // SAFETY: thread 0 is the calling one; both write locals of the given size.
    let id = unsafe {
        let mut id = 0;
        libc::pthread_threadid_np(0, &mut id);
        libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr().cast(), name.len());
        id
    };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    let id = 0;
    name[THREAD_NAME_LEN - 1] = 0;
    (id, name)
}

/// Hands the signal to the previous action. A handler is called (it may print,
/// abort, or restore the default and return so a fault repeats); a default or
/// ignore (a fault cannot be ignored) is restored. A sent signal (`si_code` ≤
/// 0: `kill`, `raise`, `abort`) whose action is now the default is raised
/// again, delivered on return (blocked until then); a fault re-executes.
fn chain(signal: c_int, info: *mut siginfo_t, context: *mut c_void, code: c_int) {
    let Some(index) = SIGNALS.iter().position(|&s| s == signal) else {
        return;
    };
    let previous = PREVIOUS[index].0.load(SeqCst);
    let with_info = PREVIOUS[index].1.load(SeqCst) & libc::SA_SIGINFO != 0;
    // SAFETY: `previous` was installed with 3 arguments if SA_SIGINFO, else 1;
    // sigaction is plain data, valid zeroed (SIG_DFL is 0, an empty mask).
    unsafe {
        let mut action: sigaction = zeroed();
        if previous == SIG_DFL || previous == SIG_IGN {
            sigaction(signal, &action, null_mut());
        } else {
            if with_info {
                std::mem::transmute::<usize, InfoHandler>(previous)(signal, info, context);
            } else {
                std::mem::transmute::<usize, PlainHandler>(previous)(signal);
            }
            sigaction(signal, null(), &mut action);
        }
        if code <= 0 && action.sa_sigaction == SIG_DFL {
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, ExitStatus, Stdio};
    use std::time::{Duration, Instant, SystemTime};

    use marker::{Death, Marker};

    /// Set in a child: the test it runs as the crashing child.
    const CASE: &str = "OTEL_SESSION_CRASH_TEST_CASE";
    /// Set in a child: its marker file.
    const MARKER: &str = "OTEL_SESSION_CRASH_TEST_MARKER";

    /// How a child ended: its status, stderr, pid and marker.
    type Run = (ExitStatus, String, u32, Result<Marker, String>);

    /// In test `case`'s child: runs `before_arm`, arms, runs `crash` (no core
    /// file; exits 3 if still alive). In the test: runs that child (20 s max).
    fn crash_child(case: &str, before_arm: Option<fn()>, crash: impl FnOnce()) -> Run {
        if std::env::var(CASE).is_ok_and(|c| c == case) {
            // SAFETY: rlimit is plain data, zero: no core file for the crash.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zeroed()) };
            before_arm.inspect(|before_arm| before_arm());
            let file = File::create(std::env::var_os(MARKER).unwrap()).unwrap();
            let identity = Identity {
                pid: std::process::id(),
                started_at: SystemTime::now(),
                instance_id: None,
                version: None,
            };
            arm(file, &identity).unwrap();
            crash();
            std::process::exit(3);
        }
        let base = std::env::temp_dir().join(format!("otel-session-{case}-{}", std::process::id()));
        let (path, errors) = (base.with_extension("marker"), base.with_extension("stderr"));
        let test = format!("{}::{case}", module_path!().split_once("::").unwrap().1);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &test, "--nocapture"])
            .env(CASE, case)
            .env(MARKER, &path)
            .stdout(Stdio::null())
            .stderr(File::create(&errors).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            match child.try_wait().unwrap() {
                Some(status) => break status, // SIGKILL: killed at the deadline
                None if Instant::now() > deadline => child.kill().unwrap(),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let stderr = std::fs::read_to_string(&errors).unwrap_or_default();
        let marker = std::fs::read(&path).map_err(|e| e.to_string());
        let _ = (std::fs::remove_file(path), std::fs::remove_file(errors));
        let marker = marker.and_then(|bytes| marker::parse(&bytes));
        (status, stderr, child.id(), marker)
    }

    /// Raises `signal` in this child.
    fn raise(signal: c_int) {
        // SAFETY: raising a signal is sound; the child is meant to die of it.
        unsafe { libc::raise(signal) };
    }

    /// Checks the child died of one of `dies_of`, having recorded `signal`
    /// just now on a named thread; returns the code, address, thread name.
    fn assert_recorded(run: &Run, dies_of: &[c_int], signal: c_int) -> (i32, u64, String) {
        let (status, stderr, pid, marker) = run;
        let died_of = status.signal().unwrap_or(0);
        assert!(dies_of.contains(&died_of), "{status:?} {stderr}");
        let marker = marker.as_ref().unwrap();
        let Some(Death::Signal {
            signal: got,
            code,
            fault_address,
            at,
            thread_id,
            thread_name,
        }) = marker.death.clone()
        else {
            panic!("{marker:?} {stderr}");
        };
        assert_eq!((got, marker.identity.pid), (signal, *pid), "{stderr}");
        assert!(SystemTime::now().duration_since(at).unwrap() < Duration::from_secs(60));
        assert!(thread_id != 0 && at >= marker.identity.started_at);
        let name = thread_name.unwrap_or_default();
        assert!(!name.is_empty());
        (code, fault_address, name)
    }

    #[test]
    fn raised_sigsegv_is_recorded() {
        let run = crash_child("raised_sigsegv_is_recorded", None, || raise(SIGSEGV));
        assert_recorded(&run, &[SIGSEGV], SIGSEGV);
    }

    #[test]
    fn abort_is_recorded() {
        let run = crash_child("abort_is_recorded", None, || std::process::abort());
        assert_recorded(&run, &[SIGABRT], SIGABRT);
    }

    /// Recurses until the stack overflows.
    fn recurse(depth: u64) -> u64 {
        let frame = std::hint::black_box([depth as u8; 4096]);
        if std::hint::black_box(depth) == u64::MAX {
            return 0;
        }
        recurse(depth + 1).wrapping_add(u64::from(std::hint::black_box(frame)[7]))
    }

    #[test]
    fn stack_overflow_is_recorded_and_reported() {
        let run = crash_child("stack_overflow_is_recorded_and_reported", None, || {
            let thread = std::thread::Builder::new().name("overflower".to_owned());
            let overflow = thread.stack_size(256 * 1024).spawn(|| recurse(0));
            let _ = overflow.unwrap().join();
        });
        // std's handler, chained to, prints its message and aborts.
        let (code, address, name) = assert_recorded(&run, &[SIGSEGV, SIGABRT], SIGSEGV);
        assert!(run.1.contains("has overflowed its stack"), "{}", run.1);
        assert!(code > 0 && address != 0, "a fault: {code} {address}");
        assert_eq!(name, "overflower");
    }

    #[test]
    fn disarmed_records_nothing() {
        let run = crash_child("disarmed_records_nothing", None, || {
            disarm();
            assert!(write_at(8, &[0]).is_err());
            raise(SIGSEGV);
        });
        assert_eq!(run.0.signal(), Some(SIGSEGV), "{}", run.1);
        assert_eq!(run.3.map(|marker| marker.death), Ok(None));
    }

    /// An app's handler, installed before ours: says so, restores the default.
    extern "C" fn app_handler(signal: c_int) {
        let text = b"[app handler ran]\n";
        // SAFETY: write and signal are async-signal-safe; the text is static.
        unsafe {
            libc::write(2, text.as_ptr().cast(), text.len());
            libc::signal(signal, SIG_DFL);
        }
    }

    /// Installs [`app_handler`] for SIGSEGV.
    fn install_app() {
        let app: PlainHandler = app_handler;
        // SAFETY: sigaction is plain data, valid zeroed; a plain handler.
        unsafe {
            let mut action: sigaction = zeroed();
            action.sa_sigaction = app as libc::sighandler_t;
            sigaction(SIGSEGV, &action, null_mut());
        }
    }

    #[test]
    fn previous_handler_still_runs() {
        let run = crash_child("previous_handler_still_runs", Some(install_app), || {
            // A hang in progress, then the crash: the crash is recorded.
            let (offset, bytes) = marker::hang_block(SystemTime::now());
            write_at(offset, &bytes).unwrap();
            raise(SIGSEGV);
        });
        assert_recorded(&run, &[SIGSEGV], SIGSEGV);
        assert!(run.1.contains("[app handler ran]"), "{}", run.1);
    }
}
