//! A panic as a crash report: what the panic hook captures on the panicking
//! thread (cheap: the payload, the location, the thread, an unresolved
//! backtrace, the current context) and the [`Exception`] it becomes on the
//! crash helper thread (where the backtrace is resolved to text and the span
//! the panic happened in is marked).

use std::backtrace::Backtrace;
use std::panic::PanicHookInfo;
use std::time::SystemTime;

use opentelemetry::trace::{Status, TraceContextExt as _};
use opentelemetry::Context;

use crate::model::attr;
use crate::model::exception::{truncated, Exception, MESSAGE_LIMIT, STACKTRACE_LIMIT};

/// What a panic left, taken inside the hook.
pub(crate) struct Captured {
    message: String,
    location: Option<(String, u32, u32)>,
    thread_name: Option<String>,
    thread_id: Option<u64>,
    backtrace: Option<Backtrace>,
    at: SystemTime,
    fatal: bool,
    /// The context current where it panicked (its span, a request's scope).
    cx: Context,
}

/// The message of a panic payload: the text of a `&str` or `String` payload
/// (cut to [`MESSAGE_LIMIT`] without copying more); other payloads say what
/// they are.
fn message_of(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    match text {
        Some(text) if text.len() > MESSAGE_LIMIT => {
            let mut end = MESSAGE_LIMIT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let mut cut = text[..end].to_string();
            cut.push_str(&format!(
                "… [otel-session: truncated, {end} of {} bytes kept]",
                text.len()
            ));
            cut
        }
        Some(text) => text.to_string(),
        None => "a panic payload that is not a string (Box<dyn Any>; use panic!(\"..\") or \
                 std::panic::panic_any with a String to get its text here)"
            .to_string(),
    }
}

/// The number in a `ThreadId`'s debug form (`ThreadId(7)`): the
/// semantic conventions' "managed" thread id.
fn thread_number(id: std::thread::ThreadId) -> Option<u64> {
    let text = format!("{id:?}");
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A frame line of a formatted backtrace (`  12: crate::function`), not its
/// `at file:line` line.
fn frame_name(line: &str) -> Option<&str> {
    let (number, name) = line.trim_start().split_once(": ")?;
    number.chars().all(|c| c.is_ascii_digit()).then_some(name)
}

/// Frames that raise a panic (name prefixes): std's and core's panic entry
/// points and the helpers `unwrap`/`expect` panic through. The app's code is
/// below the last of them.
const RAISING: &[&str] = &[
    "std::panicking::",
    "core::panicking::",
    "std::panic::panic_any",
    "core::result::unwrap_failed",
    "core::option::unwrap_failed",
    "core::option::expect_failed",
];

/// What runs before the panic is raised in a backtrace taken in the hook
/// (name prefixes): the capture, this crate, the hook chain (whose
/// `Box<dyn Fn(&PanicHookInfo)>` frame `in_the_hook` finds by that type).
const HOOK: &[&str] = &[
    "otel_session::",
    "std::backtrace::",
    "core::ops::function::",
    "core::bool::",
];

fn starts_with_any(name: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| name.starts_with(p))
}

fn raises_the_panic(name: &str) -> bool {
    // `rust_begin_unwind` and `__rust_end_short_backtrace` under any path.
    starts_with_any(name, RAISING)
        || name.contains("rust_begin_unwind")
        || name.contains("__rust_end_short_backtrace")
}

/// `Result`/`Option`'s `unwrap`/`expect` frames (a debug build keeps them):
/// the location attributes already say where the app called them.
fn unwrap_helper(name: &str) -> bool {
    starts_with_any(name, &["core::result::Result<", "core::option::Option<"])
        && ["::unwrap", "::expect"].iter().any(|m| name.contains(m))
}

fn in_the_hook(name: &str) -> bool {
    starts_with_any(name, HOOK) || name.contains("PanicHookInfo")
}

/// `text` (a formatted backtrace taken in the hook) from the app's first
/// frame: past the hook, the panic machinery and `unwrap`/`expect`, as a
/// reader wants it (the frame that panicked first). A backtrace with no
/// frame raising the panic loses only the hook's frames; one with nothing
/// of the app's is kept whole.
fn from_the_panic(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let frames: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| frame_name(l).map(|name| (i, name)))
        .collect();
    let mut raised = false;
    let mut first_app = None;
    for &(i, name) in &frames {
        if raises_the_panic(name) {
            raised = true;
        } else if raised && !unwrap_helper(name) {
            first_app = Some(i);
            break;
        }
    }
    if !raised {
        first_app = frames
            .iter()
            .find(|(_, name)| !in_the_hook(name))
            .map(|&(i, _)| i);
    }
    match first_app {
        Some(start) => lines[start..].join("\n"),
        None => text.to_string(),
    }
}

impl Captured {
    /// Takes what `info` says, on the panicking thread; the backtrace only if
    /// `backtrace` (captured now, resolved later).
    pub(crate) fn take(info: &PanicHookInfo<'_>, fatal: bool, backtrace: bool) -> Captured {
        let thread = std::thread::current();
        Captured {
            message: message_of(info),
            location: info
                .location()
                .map(|l| (l.file().to_string(), l.line(), l.column())),
            thread_name: thread.name().map(str::to_string),
            thread_id: thread_number(thread.id()),
            backtrace: backtrace.then(Backtrace::force_capture),
            at: opentelemetry::time::now(),
            fatal,
            cx: Context::current(),
        }
    }

    /// The report (the backtrace resolved to text) and the context it
    /// happened in; the span it happened in gets status Error (and, with
    /// `span_event`, an `exception` event).
    pub(crate) fn into_exception(self, span_event: bool) -> (Exception, Context) {
        let stacktrace = self
            .backtrace
            .map(|b| truncated(from_the_panic(&b.to_string()), STACKTRACE_LIMIT));
        let in_span = {
            let sc = self.cx.span().span_context().clone();
            sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
        };
        let e = Exception {
            event_name: attr::EVENT_EXCEPTION,
            ty: "panic".to_string(),
            message: self.message,
            stacktrace,
            location: self.location,
            thread_name: self.thread_name,
            thread_id: self.thread_id,
            fatal: self.fatal,
            at: self.at,
            span: in_span,
            extra: Vec::new(),
            session_id: None,
        };
        let span = self.cx.span();
        if in_span.is_some() && span.is_recording() {
            span.set_status(Status::error(e.message.clone()));
            if span_event {
                span.add_event_with_timestamp(attr::EVENT_EXCEPTION, e.at, e.attributes());
            }
        }
        (e, self.cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backtrace_starts_at_the_apps_frame_not_in_the_hook() {
        let text = "   0: std::backtrace::Backtrace::force_capture
   1: otel_session::stability::panic::record
             at ./src/stability/panic.rs:10:5
   2: std::panicking::panic_with_hook
   3: __rustc::rust_begin_unwind
   4: core::panicking::panic_fmt
   5: core::result::unwrap_failed
   6: app::parse_config
             at ./src/main.rs:3:5
   7: app::main";
        let trimmed = from_the_panic(text);
        assert!(trimmed.starts_with("   6: app::parse_config"), "{trimmed}");
        assert!(trimmed.ends_with("   7: app::main"));
        // Nothing to trim, or only machinery: unchanged.
        assert_eq!(from_the_panic("   0: app::main"), "   0: app::main");
        assert_eq!(
            from_the_panic("   0: std::panicking::x"),
            "   0: std::panicking::x"
        );
    }

    /// As a new user's debug build printed it (the hook called through the
    /// chain's `Box<dyn Fn>`, `expect` kept as a frame, `catch_unwind` of
    /// std's runtime further down): it starts at the app's function.
    #[test]
    fn a_debug_builds_backtrace_through_the_hook_chain_starts_at_the_apps_frame() {
        let text = "   0: otel_session::stability::crash::report::Captured::take
   4: otel_session::stability::panic::install::{{closure}}
   5: <alloc::boxed::Box<dyn for<'a, 'b> core::ops::function::Fn<(&'a std::panic::PanicHookInfo<'b>,), Output = ()> + core::marker::Sync + core::marker::Send> as core::ops::function::Fn<(&std::panic::PanicHookInfo,)>>::call
             at /rustc/library/alloc/src/boxed.rs:2254:9
   6: std::panicking::panic_with_hook
   7: std::panicking::panic_handler::{closure#0}
   8: std::sys::backtrace::__rust_end_short_backtrace::<std::panicking::panic_handler::{closure#0}, !>
   9: __rustc::rust_begin_unwind
  10: core::panicking::panic_fmt
  11: core::result::unwrap_failed
  12: core::result::Result<T,E>::expect
             at /rustc/library/core/src/result.rs:1185:23
  13: newuser::load_level
             at ./src/main.rs:13:18
  14: newuser::main::{{closure}}
  22: std::panicking::catch_unwind::<i32, &dyn core::ops::function::Fn<(), Output = i32>>
  30: main";
        let trimmed = from_the_panic(text);
        assert!(
            trimmed.starts_with("  13: newuser::load_level"),
            "{trimmed}"
        );
        assert!(
            trimmed.contains("catch_unwind"),
            "the rest is kept: {trimmed}"
        );
        // Without a frame that raised it (a capture elsewhere), only the
        // hook's frames go.
        let hook_only =
            "   0: otel_session::x\n   1: core::ops::function::Fn::call\n   2: app::run";
        assert_eq!(from_the_panic(hook_only), "   2: app::run");
    }

    #[test]
    fn a_thread_id_is_its_number() {
        let id = std::thread::current().id();
        let n = thread_number(id).unwrap();
        assert_eq!(format!("{id:?}"), format!("ThreadId({n})"));
    }
}
