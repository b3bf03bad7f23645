//! The panic hook: a panic is an unhandled error of the session it happens in,
//! and one crash report (an `exception` log record, see
//! `stability::crash::report`) with that session's `session.id`. The manager
//! it reports to is also the one the hang watchdog reports to.
//!
//! - **Outside a request**: the app session is marked `crashed` (one unhandled
//!   error per session however many panics; the status is never downgraded).
//!   Right after an inactivity or max-duration end (app mode, foreground) the
//!   panic starts the next session and counts there. On the **main thread**, or
//!   in a build that aborts on panic (`panic = "abort"`), the process is about
//!   to die: the session ends (reason `crash`) and no session starts by itself
//!   afterwards (no empty session while the process goes down). The exporting
//!   processors (and, with `init()`, the meter provider) are then flushed, at
//!   most 2 s — also on a session's first panic on another thread. A panic on
//!   another thread that is caught leaves the session running, `crashed`; it
//!   ends later for its own reason.
//! - In a `panic = "abort"` build a panic inside code we run and would catch (a
//!   callback, an observer, a processor) is a crash too: nothing is caught.
//! - **Inside a request** (request mode): only that request's session is marked
//!   `crashed`; nothing is flushed (the server goes on).
//!
//! The hook is chained: the hook installed before ours (the default one, which
//! prints the message, or the app's) runs right after ours. It is
//! re-entrancy-guarded (a panic inside it does not recurse into it) and takes
//! no lock: the counting, the end and the flush run on a helper thread that the
//! hook waits for at most 2 s (user code, such as `on_session` callbacks for
//! the next session, never runs inside the hook).
//!
//! **An app that installs its own hook after `init()`** replaces ours (that is
//! what `std::panic::set_hook` does): chain it instead —
//! `let ours = std::panic::take_hook(); std::panic::set_hook(Box::new(move |info| { ours(info); /* yours */ }))` —
//! or install yours first.

use std::cell::Cell;
use std::panic::PanicHookInfo;
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use opentelemetry::Context;

use crate::core::machine::Shared;
use crate::core::manager::SessionManager;
use crate::core::request::RequestSession;
use crate::core::scope::{Scope, SessionContextExt as _};
use crate::stability::crash::report::Captured;

/// How long a panic may wait for the telemetry before it to be handed over.
pub const PANIC_FLUSH_LIMIT: Duration = Duration::from_secs(2);

type ExtraFlush = Arc<dyn Fn() + Send + Sync>;

struct Target {
    shared: Weak<Shared>,
    extra: Option<ExtraFlush>,
}

static TARGET: ArcSwapOption<Target> = ArcSwapOption::const_empty();
static INSTALL: Once = Once::new();

thread_local! {
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Makes panics unhandled errors of `manager`'s sessions, each reported as an
/// `exception` log record through its log pipeline (see the README's
/// "Crashes"), and makes `manager` the one [`heartbeat`](crate::heartbeat)'s
/// hang watchdog reports to; `init()` does this. Installing again (for another
/// manager) replaces the manager; the hook itself is installed once.
pub fn install_panic_hook(manager: &SessionManager) {
    install(manager, None);
}

pub(crate) fn install(manager: &SessionManager, extra_flush: Option<ExtraFlush>) {
    TARGET.store(Some(Arc::new(Target {
        shared: Arc::downgrade(&manager.shared),
        extra: extra_flush,
    })));
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HOOK.with(|h| h.replace(true)) {
                record(info);
                IN_HOOK.with(|h| h.set(false));
            }
            previous(info);
        }));
    });
}

/// The manager panics (and hangs) are reported to, if any.
pub(crate) fn target() -> Option<Arc<Shared>> {
    TARGET.load().as_ref().and_then(|t| t.shared.upgrade())
}

/// Stops reporting panics to `manager` (the guard's drop does this); the hook
/// stays chained and does nothing but call the previous one.
pub(crate) fn uninstall(manager: &SessionManager) {
    let ours = TARGET
        .load()
        .as_ref()
        .is_some_and(|t| std::ptr::eq(t.shared.as_ptr(), Arc::as_ptr(&manager.shared)));
    if ours {
        TARGET.store(None);
        // A crash after the guard's drop is not this run's to report.
        #[cfg(unix)]
        crate::stability::crash::signals::disarm();
    }
}

fn record(info: &PanicHookInfo<'_>) {
    // A panic of user code we run and catch (a callback, an observer, a clock,
    // an id generator, a span or log processor receiving lifecycle telemetry)
    // is reported by us and does not crash the session — unless panics abort:
    // then nothing is caught and the process goes down with it.
    if cfg!(panic = "unwind") && crate::core::callbacks::in_catching() {
        return;
    }
    let deadline = Instant::now() + PANIC_FLUSH_LIMIT;
    let in_request = Context::map_current(|cx| {
        Scope::request_of(cx).map(|request| {
            request.counts.mark_panicked();
            request.discarded
        })
    });
    if let Some(discarded) = in_request {
        // The request's session only; the server goes on (nothing flushed).
        let settings = Context::map_current(|cx| {
            Scope::request_of(cx).and_then(RequestSession::crash_settings)
        })
        .unwrap_or_default();
        let captured = Captured::take(info, false, settings.backtraces);
        on_helper(deadline, move || {
            let (report, cx) = captured.into_exception(settings.span_events);
            if let Some(request) = Scope::request_of(&cx) {
                let id = if discarded {
                    None
                } else {
                    Some(
                        cx.stamped_session_id()
                            .unwrap_or_else(|| request.id().clone()),
                    )
                };
                request.report(&report, id.as_ref());
            }
        });
        return;
    }
    let Some(target) = TARGET.load_full() else {
        return;
    };
    let Some(shared) = target.shared.upgrade() else {
        return;
    };
    let fatal = cfg!(panic = "abort") || std::thread::current().name() == Some("main");
    if cfg!(panic = "abort") {
        // A panic of an observer or sink we were delivering to: this thread
        // never returns to that delivery, the crash helper takes over.
        shared.outbox.give_up_delivery_here();
    }
    let settings = shared.tracking.crash;
    let captured = Captured::take(info, fatal, settings.backtraces);
    // Of the panicking thread, which is not unwinding yet (the hook runs first).
    let actor = crate::core::rules::Actor {
        thread: crate::core::stamp::thread_number(),
        unwinding: false,
    };
    on_helper(deadline, move || {
        let (report, _cx) = captured.into_exception(settings.span_events);
        // Activity, counted (once per session; starting the next session first
        // if one is due after a timeout), ended if the process goes down, its
        // report queued before that end; what that produced flushed (a later
        // panic of a crashed session has only its report to hand over).
        if shared.crash(fatal, actor, Some(report)) || fatal {
            shared.flush();
            shared.flush_all_sinks();
            if let Some(extra) = &target.extra {
                extra();
            }
        }
    });
}

/// Runs `work` on a helper thread and waits for it until `deadline` at most:
/// the panicking thread may hold a lock a processor needs, and user code (an
/// `on_session` callback starting the next session) must not run inside a
/// panic hook, where a second panic aborts.
fn on_helper(deadline: Instant, work: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("otel-session-crash".into())
        .spawn(move || {
            // A panic here (our own report's path) is not reported again.
            IN_HOOK.with(|h| h.set(true));
            work();
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}
