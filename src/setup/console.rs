//! Console exporters: one readable line per span or log record on stdout, with the
//! `session.id` up front. For trying things out and for `OTEL_*_EXPORTER=console`;
//! not a wire format.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::SystemTime;

use opentelemetry::logs::AnyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::model::attr;

/// Prints each span as one line: `span  <name>  session.id=…  key=value …`.
///
/// The bookkeeping attributes `tracing-opentelemetry` adds (`code.*`, `thread.*`,
/// `target`, `busy_ns`, `idle_ns`) are left off the line.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleSpanExporter;

/// Prints each log record as one line: `log   <SEVERITY> <event or body>  session.id=…`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleLogExporter;

fn duration_ms(start: SystemTime, end: SystemTime) -> f64 {
    end.duration_since(start)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Formats one span the way [`ConsoleSpanExporter`] prints it.
pub fn format_span(span: &SpanData) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(line, "span  {:<16}", span.name);
    let sid = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == attr::SESSION_ID);
    match sid {
        Some(kv) => {
            let _ = write!(line, " session.id={}", kv.value);
        }
        None => line.push_str(" session.id=-"),
    }
    for kv in span.attributes.iter().filter(|kv| shown(kv.key.as_str())) {
        let _ = write!(line, " {}={}", kv.key, kv.value);
    }
    if span.name == attr::SUMMARY_SPAN {
        let events: Vec<&str> = span.events.iter().map(|e| e.name.as_ref()).collect();
        let _ = write!(line, " events=[{}]", events.join(","));
    }
    let _ = write!(
        line,
        " ({:.1} ms)",
        duration_ms(span.start_time, span.end_time)
    );
    line
}

fn shown(key: &str) -> bool {
    !(key == attr::SESSION_ID
        || key.starts_with("code.")
        || key.starts_with("thread.")
        || matches!(key, "target" | "busy_ns" | "idle_ns"))
}

fn any_to_string(v: &AnyValue) -> String {
    match v {
        AnyValue::String(s) => s.to_string(),
        AnyValue::Int(i) => i.to_string(),
        AnyValue::Double(d) => d.to_string(),
        AnyValue::Boolean(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl SpanExporter for ConsoleSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut out = std::io::stdout().lock();
        for span in &batch {
            let _ = writeln!(out, "{}", format_span(span));
        }
        Ok(())
    }
}

impl LogExporter for ConsoleLogExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let mut out = std::io::stdout().lock();
        for (record, _scope) in batch.iter() {
            let mut line = String::with_capacity(128);
            let _ = write!(
                line,
                "log   {:<5}",
                record
                    .severity_text()
                    .or(record.severity_number().map(|s| s.name()))
                    .unwrap_or("-")
            );
            let mut sid = None;
            let mut rest = String::new();
            for (k, v) in record.attributes_iter() {
                if k.as_str() == attr::SESSION_ID {
                    sid = Some(any_to_string(v));
                } else {
                    let _ = write!(rest, " {}={}", k, any_to_string(v));
                }
            }
            match (record.body(), record.event_name()) {
                (Some(body), _) => {
                    let _ = write!(line, " {:?}", any_to_string(body));
                }
                (None, Some(name)) => {
                    let _ = write!(line, " {name}");
                }
                (None, None) => {}
            }
            let _ = write!(line, " session.id={}", sid.as_deref().unwrap_or("-"));
            line.push_str(&rest);
            let _ = writeln!(out, "{line}");
        }
        Ok(())
    }
}

/// Prints the session metrics (and any other sums and histograms) as one line
/// each: `metric <name> <value>` (cumulative).
#[derive(Debug, Default, Clone, Copy)]
pub struct ConsoleMetricExporter;

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for ConsoleMetricExporter {
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let mut out = std::io::stdout().lock();
        for sm in metrics.scope_metrics() {
            for m in sm.metrics() {
                let mut line = format!("metric {:<22}", m.name());
                match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        for dp in s.data_points() {
                            let attrs: Vec<String> = dp
                                .attributes()
                                .map(|kv| format!("{}={}", kv.key, kv.value))
                                .collect();
                            let _ = write!(line, " {}{{{}}}", dp.value(), attrs.join(","));
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for dp in h.data_points() {
                            let _ = write!(line, " count={} sum={:.1}", dp.count(), dp.sum());
                        }
                    }
                    _ => line.push_str(" (not shown)"),
                }
                let _ = writeln!(out, "{line}");
            }
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        opentelemetry_sdk::metrics::Temporality::Cumulative
    }
}
