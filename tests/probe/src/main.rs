//! Scenarios for tests/release_builds.rs, printed as `KEY=value` lines (and,
//! for lifecycle spans, one `SPAN ...` line each, written at export).
//!
//! - `origin`: spans and log records stamped by us, set by the application,
//!   and stamped from a joined caller's session, in one process;
//! - `abort-callback`, `abort-observer`, `abort-main`: a panic inside an
//!   `on_session` callback, inside an observer, and on the main thread, in a
//!   build whose panics abort: the crash must reach the exporter first (its
//!   exception record too: one `LOG ...` line per event record);
//! - `abort-persist`: `abort-main` with the session file `PROBE_PERSIST`: the
//!   abort leaves a crash marker for the next start.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider, SimpleLogProcessor};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor, SpanData, SpanExporter};
use otel_session::{Session, SessionContextExt, SessionId, SessionManager, SessionObserver};

/// Keeps application spans; prints each lifecycle span at once (the process
/// may abort right after).
#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        for span in batch {
            if span.name.starts_with("session") {
                let attr = |k: &str| {
                    span.attributes
                        .iter()
                        .find(|kv| kv.key.as_str() == k)
                        .map(|kv| kv.value.to_string())
                        .unwrap_or_default()
                };
                let line = format!(
                    "SPAN name={} id={} status={} reason={}\n",
                    span.name,
                    attr("session.id"),
                    attr("otel_session.status"),
                    attr("otel_session.end_reason")
                );
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(line.as_bytes());
                let _ = out.flush();
            } else {
                self.0.lock().unwrap().push(span);
            }
        }
        Ok(())
    }
}

/// Prints each event record (crash reports, lifecycle events) at once: the
/// process may abort right after.
#[derive(Debug, Default)]
struct Logs;

impl LogExporter for Logs {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        for (record, _) in batch.iter() {
            let Some(event) = record.event_name() else {
                continue;
            };
            let sid = record
                .attributes_iter()
                .find(|(k, _)| k.as_str() == "session.id")
                .map(|(_, v)| match v {
                    opentelemetry::logs::AnyValue::String(s) => s.to_string(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            let line = format!(
                "LOG event={event} severity={:?} sid={sid}\n",
                record.severity_number()
            );
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        Ok(())
    }
}

fn session_ids(span: &SpanData) -> Vec<String> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str() == "session.id")
        .map(|kv| kv.value.to_string())
        .collect()
}

fn say(key: &str, value: impl std::fmt::Display) {
    println!("{key}={value}");
}

struct Pipeline {
    sessions: SessionManager,
    spans: Spans,
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
}

fn pipeline(builder: otel_session::SessionManagerBuilder) -> Pipeline {
    let sessions = builder.build();
    let spans = Spans::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(sessions.span_processor(SimpleSpanProcessor::new(spans.clone())))
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_log_processor(sessions.log_processor(SimpleLogProcessor::new(Logs)))
        .build();
    Pipeline {
        sessions,
        spans,
        tracer_provider,
        logger_provider,
    }
}

fn origin() {
    let p = pipeline(SessionManager::builder());
    let tracer = p.tracer_provider.tracer("probe");
    let logger = p.logger_provider.logger("probe");
    let current = p
        .sessions
        .current_session()
        .expect("a session")
        .id()
        .to_string();
    say("current", &current);

    // Ours: stamped once.
    tracer.in_span("ours", |_| {});
    // The application's own, set after the start: kept, ours not added twice.
    let mut theirs = tracer.start("theirs");
    theirs.set_attribute(KeyValue::new("session.id", "the-apps-own"));
    theirs.end();
    // A joined caller's session: its id, not the app session's.
    let joined = Context::current().with_joined_session(SessionId::from("caller-1"));
    {
        let _in = joined.clone().attach();
        tracer.in_span("joined", |_| {});
    }
    for span in p.spans.0.lock().unwrap().iter() {
        say(&format!("span.{}", span.name), session_ids(span).join(","));
    }

    // Errors: an ERROR record in the app session counts; one carrying the
    // application's own copy of the current id counts once; one in a joined
    // caller's context counts toward nobody here.
    let error = |with_id: Option<&str>, cx: Option<&Context>| {
        let _in = cx.map(|cx| cx.clone().attach());
        let mut record = logger.create_log_record();
        record.set_severity_number(Severity::Error);
        record.set_body("failed".into());
        if let Some(id) = with_id {
            record.add_attribute("session.id", id.to_string());
        }
        logger.emit(record);
    };
    error(None, None);
    say("handled.after_ours", handled(&p.sessions));
    error(Some(&current), None);
    say("handled.after_theirs", handled(&p.sessions));
    error(None, Some(&joined));
    say("handled.after_joined", handled(&p.sessions));
}

fn handled(sessions: &SessionManager) -> u64 {
    sessions.current_session().map_or(0, |s| s.handled_errors())
}

struct PanickingObserver(Arc<AtomicBool>);

impl SessionObserver for PanickingObserver {
    fn on_session_started(&self, _session: &Session) {
        if self.0.load(Ordering::Relaxed) {
            panic!("observer broke");
        }
    }
}

fn abort(how: &str) {
    let armed = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&armed);
    let mut builder = SessionManager::builder();
    match how {
        "abort-callback" => {
            builder = builder.on_session(move |_| {
                if a.load(Ordering::Relaxed) {
                    panic!("callback broke");
                }
                true
            });
        }
        "abort-observer" => builder = builder.with_observer(PanickingObserver(a)),
        _ => {}
    }
    if how == "abort-persist" {
        // The session file (and the crash marker next to it) the next start
        // of the crash example reads.
        let path = std::env::var("PROBE_PERSIST").expect("PROBE_PERSIST");
        builder = builder.with_persistence(path);
    }
    let p = pipeline(builder);
    otel_session::install_panic_hook(&p.sessions);
    let first = p.sessions.current_session().expect("a session");
    say("first", first.id());
    armed.store(true, Ordering::Relaxed);
    let _ = std::io::stdout().flush();
    if how == "abort-main" || how == "abort-persist" {
        panic!("main broke");
    }
    let _ = p.sessions.start_session();
    say("survived", "yes");
    drop(p.tracer_provider);
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("origin") => origin(),
        Some(how @ ("abort-callback" | "abort-observer" | "abort-main" | "abort-persist")) => {
            abort(how)
        }
        other => {
            eprintln!("unknown scenario {other:?}");
            std::process::exit(2);
        }
    }
}
