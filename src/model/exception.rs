//! A crash report as plain data: one panic, or a native crash found by the
//! next start, described with the semantic conventions' exception attributes
//! (`exception.type`, `exception.message`, `exception.stacktrace`, the code
//! location, the thread).
//!
//! The same attributes go on the log record (exceptions in logs) and on the
//! `exception` span event of the session's summary span (trace-only backends
//! see a crash only there).

use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::KeyValue;

use crate::model::attr;

/// `exception.message` is cut at this many bytes (a mark says how many were cut).
pub const MESSAGE_LIMIT: usize = 8 * 1024;
/// `exception.stacktrace` is cut at this many bytes (a mark says how many were cut).
pub const STACKTRACE_LIMIT: usize = 64 * 1024;

/// How crashes and hangs are reported (see `stability::crash`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CrashSettings {
    /// A panic's record carries its backtrace (`OTEL_SESSION_CRASH_BACKTRACE`).
    pub(crate) backtraces: bool,
    /// The span a panic happened in also gets an `exception` event
    /// (`OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN=logs/dup`).
    pub(crate) span_events: bool,
    /// No heartbeat for this long in the foreground is a hang
    /// (`OTEL_SESSION_HANG_THRESHOLD`; `None`: hangs are not watched).
    pub(crate) hang_threshold: Option<Duration>,
    /// Fatal signals leave a marker for the next start
    /// (`OTEL_SESSION_NATIVE_CRASHES`; needs persistence).
    pub(crate) native: bool,
}

impl Default for CrashSettings {
    fn default() -> Self {
        CrashSettings {
            backtraces: true,
            span_events: false,
            hang_threshold: Some(Duration::from_secs(5)),
            native: true,
        }
    }
}

/// One crash report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exception {
    /// The log event name: `exception` for a panic, `app.crash` for a native
    /// crash reported by the next start.
    pub(crate) event_name: &'static str,
    /// `exception.type`
    pub(crate) ty: String,
    /// `exception.message` (already cut to [`MESSAGE_LIMIT`]).
    pub(crate) message: String,
    /// `exception.stacktrace` (already cut to [`STACKTRACE_LIMIT`]).
    pub(crate) stacktrace: Option<String>,
    /// `code.file.path`, `code.line.number`, `code.column.number`.
    pub(crate) location: Option<(String, u32, u32)>,
    /// `thread.name`
    pub(crate) thread_name: Option<String>,
    /// `thread.id`
    pub(crate) thread_id: Option<u64>,
    /// The process goes down with it (severity FATAL, else ERROR).
    pub(crate) fatal: bool,
    pub(crate) at: SystemTime,
    /// The span it happened in, if one was current.
    pub(crate) span: Option<(TraceId, SpanId)>,
    /// More attributes (a native crash's signal and the dead instance).
    pub(crate) extra: Vec<KeyValue>,
    /// The session it happened in, when no live session takes it (a native
    /// crash's session that had already ended).
    pub(crate) session_id: Option<String>,
}

impl Exception {
    /// The exception attributes, for the log record and the span event.
    pub(crate) fn attributes(&self) -> Vec<KeyValue> {
        let mut a = Vec::with_capacity(9 + self.extra.len());
        // A hang is no exception: its record says what it is in `app.jank.*`
        // and its body.
        if self.event_name != attr::EVENT_APP_JANK {
            a.push(KeyValue::new(attr::EXCEPTION_TYPE, self.ty.clone()));
            a.push(KeyValue::new(attr::EXCEPTION_MESSAGE, self.message.clone()));
        }
        if let Some(trace) = &self.stacktrace {
            a.push(KeyValue::new(attr::EXCEPTION_STACKTRACE, trace.clone()));
        }
        if let Some((file, line, column)) = &self.location {
            a.push(KeyValue::new(attr::CODE_FILE_PATH, file.clone()));
            a.push(KeyValue::new(attr::CODE_LINE_NUMBER, i64::from(*line)));
            a.push(KeyValue::new(attr::CODE_COLUMN_NUMBER, i64::from(*column)));
        }
        if let Some(name) = &self.thread_name {
            a.push(KeyValue::new(attr::THREAD_NAME, name.clone()));
        }
        if let Some(id) = self.thread_id {
            a.push(KeyValue::new(
                attr::THREAD_ID,
                i64::try_from(id).unwrap_or(i64::MAX),
            ));
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// `text` cut to at most `limit` bytes (at a character boundary), with a mark
/// saying how much was cut.
pub(crate) fn truncated(mut text: String, limit: usize) -> String {
    if text.len() <= limit {
        return text;
    }
    let total = text.len();
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!(
        "… [otel-session: truncated, {} of {total} bytes kept]",
        end
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary_with_a_mark() {
        let text = "é".repeat(10); // 20 bytes
        let cut = truncated(text.clone(), 5);
        assert!(cut.starts_with("éé"), "{cut}");
        assert!(!cut.starts_with("ééé"), "{cut}");
        assert!(
            cut.ends_with("[otel-session: truncated, 4 of 20 bytes kept]"),
            "{cut}"
        );
        assert_eq!(truncated(text.clone(), 20), text);
    }
}
