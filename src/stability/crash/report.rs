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
            .map(|b| truncated(b.to_string(), STACKTRACE_LIMIT));
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
    fn a_thread_id_is_its_number() {
        let id = std::thread::current().id();
        let n = thread_number(id).unwrap();
        assert_eq!(format!("{id:?}"), format!("ThreadId({n})"));
    }
}
