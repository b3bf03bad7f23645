//! The one timer thread of the process: it sleeps until the earliest session
//! deadline of any manager (inactivity or maximum duration), wakes that manager
//! to check it, and sleeps again. It wakes once per deadline, never polls, holds
//! its managers weakly (a dropped manager is forgotten) and, like every thread
//! but `main`, does not keep the process alive. It is started on first need.
//!
//! **Sleep of the machine.** A deadline must pass while a laptop sleeps, as
//! the wall clock does: on Linux the thread waits on a `timerfd` of
//! `CLOCK_BOOTTIME`, which counts time suspended, so a session that expired
//! during a suspend is ended as the machine wakes (dated, like every end, at
//! its last activity by the session clock). Elsewhere it waits on the
//! monotonic clock (`Condvar::wait_timeout`), which stops while macOS sleeps:
//! there such a session is ended by the next telemetry, verb or the guard's
//! drop, or when the remaining wait runs out, still dated at its last activity.
//!
//! Managers on a manual clock never register: the clock wakes them when it moves.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use crate::model::clock::TimeJump;

thread_local! {
    static TIMER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `true` on the timer thread (a start it asks for is one it builds itself).
pub(crate) fn on_timer_thread() -> bool {
    TIMER_THREAD.try_with(std::cell::Cell::get).unwrap_or(false)
}

struct Entry {
    target: Weak<dyn TimeJump>,
    /// On the wake source's clock.
    due: Duration,
}

struct Timer {
    entries: Mutex<Vec<Entry>>,
    wake: wake::Wake,
}

fn timer() -> Option<&'static Arc<Timer>> {
    static TIMER: OnceLock<Option<Arc<Timer>>> = OnceLock::new();
    TIMER
        .get_or_init(|| {
            let fail = |e: std::io::Error| {
                crate::warn::stderr(format_args!(
                    "could not start the session timer thread ({e}); sessions still end \
                     on their inactivity timeout or maximum duration, but only when \
                     telemetry or a session verb arrives after it"
                ));
            };
            let wake = wake::Wake::new().map_err(fail).ok()?;
            let timer = Arc::new(Timer {
                entries: Mutex::new(Vec::new()),
                wake,
            });
            let worker = Arc::clone(&timer);
            std::thread::Builder::new()
                .name("otel-session-timer".into())
                .spawn(move || {
                    TIMER_THREAD.with(|t| t.set(true));
                    worker.run()
                })
                .map_err(fail)
                .ok()?;
            Some(timer)
        })
        .as_ref()
}

/// Wakes `target` after `wait` (or earlier, if it was already due earlier).
pub(crate) fn schedule(target: Weak<dyn TimeJump>, wait: Duration) {
    let Some(timer) = timer() else { return };
    // A wait too long to represent (a timeout of `Duration::MAX`) is a year.
    let wait = wait.min(Duration::from_secs(86_400 * 365));
    let due = wake::now().saturating_add(wait);
    let mut entries = timer.lock();
    match entries
        .iter_mut()
        .find(|e| Weak::ptr_eq(&e.target, &target))
    {
        Some(e) if e.due <= due => return,
        Some(e) => e.due = due,
        None => entries.push(Entry { target, due }),
    }
    timer.wake.rearm(earliest(&entries));
}

fn earliest(entries: &[Entry]) -> Option<Duration> {
    entries.iter().map(|e| e.due).min()
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut entries = self.lock();
        loop {
            entries.retain(|e| e.target.strong_count() > 0);
            let now = wake::now();
            let mut due = Vec::new();
            entries.retain(|e| {
                let ripe = e.due <= now;
                if ripe {
                    due.push(e.target.clone());
                }
                !ripe
            });
            if !due.is_empty() {
                drop(entries);
                for target in due {
                    if let Some(t) = target.upgrade() {
                        // A panic here would stop every manager's timer: contain it.
                        let _ = crate::core::callbacks::catching(|| t.time_jumped());
                    }
                }
                entries = self.lock();
                continue;
            }
            entries = self.wake.sleep(entries, earliest_guarded, &self.entries);
        }
    }
}

fn earliest_guarded(entries: &MutexGuard<'_, Vec<Entry>>) -> Option<Duration> {
    earliest(entries)
}

/// The wake source on Linux: a `timerfd` on `CLOCK_BOOTTIME` (time suspended
/// included), armed at the earliest deadline. Scheduling re-arms it from any
/// thread; the timer thread blocks reading it without holding the lock.
#[cfg(target_os = "linux")]
mod wake {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::sync::{Mutex, MutexGuard};
    use std::time::Duration;

    use super::Entry;

    /// Now on `CLOCK_BOOTTIME`.
    pub(super) fn now() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists
        // on every kernel Rust supports (2.6.39+).
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(
            u64::try_from(ts.tv_sec).unwrap_or(0),
            u32::try_from(ts.tv_nsec).unwrap_or(0),
        )
    }

    pub(super) struct Wake {
        fd: OwnedFd,
    }

    impl Wake {
        pub(super) fn new() -> io::Result<Self> {
            // SAFETY: plain syscall; the result is checked before use.
            let fd = unsafe { libc::timerfd_create(libc::CLOCK_BOOTTIME, libc::TFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            Ok(Wake {
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
            })
        }

        /// Arms the timer at `due` (absolute, on `CLOCK_BOOTTIME`), or
        /// disarms it. A deadline already past fires at once.
        pub(super) fn rearm(&self, due: Option<Duration>) {
            let at = due.map_or(
                libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                |d| {
                    // An all-zero value disarms: a deadline at 0 is 1 ns.
                    let d = d.max(Duration::from_nanos(1));
                    libc::timespec {
                        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                        // Below 10⁹: fits a `c_long` of any width.
                        tv_nsec: d.subsec_nanos() as libc::c_long,
                    }
                },
            );
            let spec = libc::itimerspec {
                it_interval: libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: at,
            };
            // SAFETY: `fd` is our timerfd; `spec` is valid; the old value is
            // not asked for.
            let rc = unsafe {
                libc::timerfd_settime(
                    self.fd.as_raw_fd(),
                    libc::TFD_TIMER_ABSTIME,
                    &spec,
                    std::ptr::null_mut(),
                )
            };
            debug_assert_eq!(rc, 0, "timerfd_settime: {}", io::Error::last_os_error());
        }

        /// Arms the earliest deadline, lets go of the lock and blocks until the
        /// timer fires (a schedule may re-arm it earlier meanwhile); the lock
        /// again.
        pub(super) fn sleep<'a>(
            &self,
            entries: MutexGuard<'a, Vec<Entry>>,
            earliest: fn(&MutexGuard<'_, Vec<Entry>>) -> Option<Duration>,
            lock: &'a Mutex<Vec<Entry>>,
        ) -> MutexGuard<'a, Vec<Entry>> {
            self.rearm(earliest(&entries));
            drop(entries);
            let mut expirations = [0u8; 8];
            loop {
                // SAFETY: reads 8 bytes into an 8-byte buffer from our timerfd.
                let n = unsafe {
                    libc::read(
                        self.fd.as_raw_fd(),
                        expirations.as_mut_ptr().cast(),
                        expirations.len(),
                    )
                };
                if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            lock.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// The wake source elsewhere: a condition variable and the monotonic clock
/// (which may stop while the machine sleeps; see the module docs).
#[cfg(not(target_os = "linux"))]
mod wake {
    use std::io;
    use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
    use std::time::{Duration, Instant};

    use super::Entry;

    /// Now, since the first call, on the monotonic clock.
    pub(super) fn now() -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }

    pub(super) struct Wake {
        changed: Condvar,
    }

    impl Wake {
        pub(super) fn new() -> io::Result<Self> {
            Ok(Wake {
                changed: Condvar::new(),
            })
        }

        /// A deadline changed: the sleeping thread looks again.
        pub(super) fn rearm(&self, _due: Option<Duration>) {
            self.changed.notify_one();
        }

        pub(super) fn sleep<'a>(
            &self,
            entries: MutexGuard<'a, Vec<Entry>>,
            earliest: fn(&MutexGuard<'_, Vec<Entry>>) -> Option<Duration>,
            _lock: &'a Mutex<Vec<Entry>>,
        ) -> MutexGuard<'a, Vec<Entry>> {
            match earliest(&entries) {
                None => self
                    .changed
                    .wait(entries)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(due) => {
                    self.changed
                        .wait_timeout(entries, due.saturating_sub(now()))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            }
        }
    }
}
