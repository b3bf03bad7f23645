//! `ExporterBuilder` builds its exporters as `init()` does: TLS files and
//! endpoints are checked (typed `ExportError`s naming the variable), and its
//! exporters retry transient failures and not permanent ones
//! (`opentelemetry-otlp`'s retries, bounded by the export timeout, without
//! blocking a runtime worker), here against a fake OTLP/HTTP collector in this
//! process.
//!
//! The builder reads the process environment, so the tests here take turns and
//! restore it.
#![cfg(all(feature = "otlp-http", feature = "otlp-grpc"))]

mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use opentelemetry::trace::{Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SimpleSpanProcessor};
use otel_session::export::{ExportError, ExporterBuilder, TlsFileError};
use support::fake_otlp::{Answer, FakeHttp};

static TURN: Mutex<()> = Mutex::new(());

/// The process environment with `vars` set, for one test; restored on drop.
struct Env {
    vars: Vec<&'static str>,
    _turn: MutexGuard<'static, ()>,
}

impl Env {
    fn set(vars: &[(&'static str, &str)]) -> Env {
        let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                std::env::remove_var(k);
            }
        }
        for (k, v) in vars {
            std::env::set_var(k, v);
        }
        Env {
            vars: vars.iter().map(|(k, _)| *k).collect(),
            _turn: turn,
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for k in &self.vars {
            std::env::remove_var(k);
        }
    }
}

#[test]
fn tls_files_and_endpoints_are_typed_errors_naming_the_variable() {
    {
        let _env = Env::set(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:1"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/nonexistent/ca.pem",
            ),
        ]);
        let mut exporters = ExporterBuilder::from_env();
        for _ in 0..2 {
            match exporters.span_exporter() {
                Err(ExportError::TlsFile(TlsFileError::Unreadable { var, path, .. })) => {
                    assert_eq!(var, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
                    assert_eq!(path.to_str(), Some("/nonexistent/ca.pem"));
                }
                other => panic!("expected the unreadable CA file, got {other:?}"),
            }
        }
        assert!(
            exporters.log_exporter().is_ok(),
            "another signal's file does not concern logs"
        );
    }
    {
        let _env = Env::set(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        let err = ExporterBuilder::from_env()
            .metric_exporter()
            .expect_err("no scheme");
        assert!(
            matches!(&err, ExportError::NoScheme { var, value }
                if var == "OTEL_EXPORTER_OTLP_ENDPOINT" && value == "127.0.0.1:4318"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "OTEL_EXPORTER_OTLP_ENDPOINT=\"127.0.0.1:4318\" has no scheme: write \
             http://127.0.0.1:4318 (or https://127.0.0.1:4318 for TLS)"
        );
    }
}

/// One span exported through a span exporter of the builder, to `collector`.
fn export_one(collector: &FakeHttp, name: &'static str) {
    export_one_with(collector, name, &[]);
}

/// [`export_one`] with more variables set (a later one wins); how long the
/// export took.
fn export_one_with(
    collector: &FakeHttp,
    name: &'static str,
    more: &[(&'static str, &str)],
) -> Duration {
    let endpoint = collector.endpoint();
    let mut vars = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "6000"),
    ];
    vars.extend_from_slice(more);
    let _env = Env::set(&vars);
    let exporter = ExporterBuilder::from_env()
        .span_exporter()
        .expect("span exporter");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SimpleSpanProcessor::new(exporter))
        .build();
    let started = std::time::Instant::now();
    provider.tracer("builder-test").in_span(name, |_| {});
    let took = started.elapsed();
    let _ = provider.shutdown();
    took
}

#[test]
fn its_exporters_retry_a_transient_failure_and_deliver() {
    let collector = FakeHttp::start(Answer::FailFor {
        status: 503,
        retry_after: None,
        window: Duration::from_millis(1200),
    });
    export_one(&collector, "retried-span");
    let seen = collector.seen();
    let statuses: Vec<u16> = seen.on("/v1/traces").iter().map(|r| r.status).collect();
    assert!(
        statuses.len() >= 2 && statuses[..statuses.len() - 1].iter().all(|s| *s == 503),
        "refused, then retried: {statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    assert_eq!(seen.spans, ["retried-span"], "delivered once");
}

#[test]
fn its_exporters_do_not_retry_a_permanent_failure() {
    let collector = FakeHttp::start(Answer::Always(400));
    export_one(&collector, "refused-span");
    let seen = collector.seen();
    assert_eq!(
        seen.on("/v1/traces").len(),
        1,
        "one attempt: {:?}",
        seen.requests
    );
    assert!(seen.spans.is_empty());
}

#[test]
fn the_export_timeout_bounds_an_export_with_its_retries() {
    // The first attempt is refused (503) after 0.5 s; the retry, ~0.25–0.5 s
    // later, is never answered. With a 2 s export timeout the retry gets only
    // what is left (~1 s): the export fails ~2 s after it began. Giving the retry
    // a whole timeout of its own would make that ~2.75–3 s.
    let collector = FakeHttp::start(Answer::SlowThenSilent {
        delay: Duration::from_millis(500),
        status: 503,
    });
    let started = std::time::Instant::now();
    let took = export_one_with(
        &collector,
        "timed-out",
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")],
    );
    let seen = collector.seen();
    let attempts = seen.on("/v1/traces");
    assert_eq!(
        attempts.len(),
        2,
        "refused once, then retried once: {:?}",
        seen.requests
    );
    assert!(seen.spans.is_empty());
    // Measured from the start of the export: the retry ends by the 2 s
    // deadline (plus the time to return), not a whole timeout after it began.
    let retry_began = attempts[1].at.duration_since(started);
    assert!(
        took < Duration::from_millis(2500),
        "the export took {took:?}, its retry began at {retry_began:?}: the 2 s timeout covers the retry"
    );
}

#[test]
fn otel_exporter_otlp_compression_compresses_and_an_ignored_value_does_not() {
    let encodings = |compression: &'static str| {
        let collector = FakeHttp::start(Answer::Always(200));
        export_one_with(
            &collector,
            "compressed",
            &[("OTEL_EXPORTER_OTLP_COMPRESSION", compression)],
        );
        let seen = collector.seen();
        seen.on("/v1/traces")
            .iter()
            .map(|r| r.encoding.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(encodings("gzip"), [Some("gzip".to_string())]);
    // zstd is not compiled in: ignored (with a warning), sent uncompressed.
    assert_eq!(encodings("zstd"), [None]);
}

#[test]
fn a_timeout_of_zero_is_no_limit() {
    // `OTEL_EXPORTER_OTLP_TIMEOUT=0` means no limit: the export is retried until
    // the collector accepts it (it used to fail at once, never sent).
    let collector = FakeHttp::start(Answer::FailFor {
        status: 503,
        retry_after: None,
        window: Duration::from_millis(700),
    });
    export_one_with(
        &collector,
        "unlimited",
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")],
    );
    let seen = collector.seen();
    let statuses: Vec<u16> = seen.on("/v1/traces").iter().map(|r| r.status).collect();
    assert!(
        statuses.len() >= 2 && statuses.last() == Some(&200),
        "refused, retried, accepted: {statuses:?}"
    );
    assert_eq!(seen.spans, ["unlimited"]);
}

/// Under a `SimpleSpanProcessor` the SDK blocks on each export where the span
/// ends. Ended in a task of a multi-thread runtime with one worker, while the
/// collector refuses (503) and the export retries for over a second, the
/// runtime's other tasks go on: the wait is handed off (`block_in_place`), and
/// the retries wait with tokio's sleep, not by blocking the worker.
#[test]
fn a_retrying_export_under_a_simple_processor_does_not_block_a_runtime_worker() {
    let collector = FakeHttp::start(Answer::FailFor {
        status: 503,
        retry_after: None,
        window: Duration::from_millis(1200),
    });
    let exporter = {
        let endpoint = collector.endpoint();
        let _env = Env::set(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "6000"),
        ]);
        ExporterBuilder::from_env()
            .span_exporter()
            .expect("span exporter")
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(SimpleSpanProcessor::new(exporter))
        .build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (export_took, longest_gap) = rt.block_on(async {
        let ticks = std::sync::Arc::new(Mutex::new(Vec::new()));
        let t = std::sync::Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                t.lock().unwrap().push(std::time::Instant::now());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tracer = provider.tracer("builder-test");
        let export_took = tokio::spawn(async move {
            let started = std::time::Instant::now();
            tracer.in_span("from-a-task", |_| {});
            started.elapsed()
        })
        .await
        .expect("task");
        ticker.abort();
        let ticks = ticks.lock().unwrap();
        let longest_gap = ticks
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        (export_took, longest_gap)
    });
    let _ = provider.shutdown();
    let seen = collector.seen();
    assert_eq!(seen.spans, ["from-a-task"], "delivered after the refusals");
    assert!(
        export_took > Duration::from_millis(900),
        "the export waited through its retries: {export_took:?}"
    );
    assert!(
        longest_gap < Duration::from_millis(300),
        "the other task ticked every 10 ms throughout the {export_took:?} export; its longest \
         pause was {longest_gap:?}"
    );
}
