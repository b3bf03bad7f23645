//! Attribute, event and span names this crate writes (the semantic contract).
//!
//! Names from the OpenTelemetry semantic conventions are used as they are; everything
//! this crate adds lives under `otel_session.*`.

/// `session.id`: the current session's id, on every span and log record.
pub const SESSION_ID: &str = "session.id";
/// `session.previous_id`: the last reported session's id, on `session.start`.
pub const SESSION_PREVIOUS_ID: &str = "session.previous_id";
/// `user.id`
pub const USER_ID: &str = "user.id";
/// `user.email`
pub const USER_EMAIL: &str = "user.email";
/// `user.full_name`
pub const USER_FULL_NAME: &str = "user.full_name";

/// Event and transition-span name of a session start.
pub const EVENT_START: &str = "session.start";
/// Event and transition-span name of a pause.
pub const EVENT_PAUSE: &str = "session.pause";
/// Event and transition-span name of a resume.
pub const EVENT_RESUME: &str = "session.resume";
/// Event and transition-span name of a session end.
pub const EVENT_END: &str = "session.end";
/// Span event recorded on the summary span when the user changes mid-session.
pub const EVENT_USER_CHANGE: &str = "otel_session.user_change";
/// Name of the summary span covering a whole session.
pub const SUMMARY_SPAN: &str = "session";

/// `otel_session.status`: `ok` | `errored` | `crashed` | `abnormal`.
pub const STATUS: &str = "otel_session.status";
/// `otel_session.end_reason`
pub const END_REASON: &str = "otel_session.end_reason";
/// `otel_session.errors.handled`
pub const ERRORS_HANDLED: &str = "otel_session.errors.handled";
/// `otel_session.errors.unhandled`
pub const ERRORS_UNHANDLED: &str = "otel_session.errors.unhandled";
/// `otel_session.dropped_events`: lifecycle events left off the summary span.
pub const DROPPED_EVENTS: &str = "otel_session.dropped_events";

/// The prefix of every name this crate adds beyond the semantic conventions.
pub const NAMESPACE: &str = "otel_session.";
/// Summary-span event: the app went to the background.
pub const EVENT_BACKGROUND: &str = "otel_session.background";
/// Summary-span event: the app came back to the foreground.
pub const EVENT_FOREGROUND: &str = "otel_session.foreground";

/// Instrumentation scope name of the telemetry this crate emits itself.
pub const SCOPE_NAME: &str = "otel-session";

/// `exception.type`: `panic` for a panic, the signal's name for a native crash.
pub const EXCEPTION_TYPE: &str = "exception.type";
/// `exception.message`
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// `exception.stacktrace`: the panicking thread's backtrace.
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";
/// `code.file.path`: where the panic happened.
pub const CODE_FILE_PATH: &str = "code.file.path";
/// `code.line.number`
pub const CODE_LINE_NUMBER: &str = "code.line.number";
/// `code.column.number`
pub const CODE_COLUMN_NUMBER: &str = "code.column.number";
/// `thread.name`
pub const THREAD_NAME: &str = "thread.name";
/// `thread.id`
pub const THREAD_ID: &str = "thread.id";
/// Log event and span event name of a panic (exceptions in logs / on spans).
pub const EVENT_EXCEPTION: &str = "exception";
/// Log event name of a native crash, reported by the next start
/// (the semantic conventions' `app.crash`).
pub const EVENT_APP_CRASH: &str = "app.crash";
/// `otel_session.crash.signal`: the number of the signal a process died of.
pub const CRASH_SIGNAL: &str = "otel_session.crash.signal";
/// `otel_session.crash.fault_address`: the faulting address, hexadecimal.
pub const CRASH_FAULT_ADDRESS: &str = "otel_session.crash.fault_address";
/// `service.instance.id` of the instance that died (on `app.crash`).
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `service.version` of the instance that died (on `app.crash`).
pub const SERVICE_VERSION: &str = "service.version";
/// `process.pid` of the instance that died (on `app.crash`).
pub const PROCESS_PID: &str = "process.pid";
/// `otel_session.hangs`: hangs seen in the session (summary, end event).
pub const HANGS: &str = "otel_session.hangs";
/// Log event name of a hang (the semantic conventions' `app.jank`).
pub const EVENT_APP_JANK: &str = "app.jank";
/// `app.jank.type`: `frozen` for a hang.
pub const APP_JANK_TYPE: &str = "app.jank.type";
/// `app.jank.threshold_ms`: the hang threshold in milliseconds.
pub const APP_JANK_THRESHOLD_MS: &str = "app.jank.threshold_ms";
/// `otel_session.hang.duration_ms`: how long the hang lasted.
pub const HANG_DURATION_MS: &str = "otel_session.hang.duration_ms";

/// `feature_flag.key`: a feature flag's name (on `feature_flag.evaluation`
/// events of the summary span). A session's flags themselves are attributes
/// `feature_flag.<name>` = variant.
pub const FEATURE_FLAG_KEY: &str = "feature_flag.key";
/// `feature_flag.result.variant`: the variant a flag was set to.
pub const FEATURE_FLAG_VARIANT: &str = "feature_flag.result.variant";
/// Summary-span event: a feature flag was set (`add_feature_flag`).
pub const EVENT_FEATURE_FLAG: &str = "feature_flag.evaluation";
/// Summary-span event: a feature flag was cleared (`clear_feature_flag`).
pub const EVENT_FEATURE_FLAG_CLEARED: &str = "otel_session.feature_flag.cleared";
