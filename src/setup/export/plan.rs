//! The OTLP side of `init()` and of the [`ExporterBuilder`](super::ExporterBuilder):
//! resolves every signal's target, transport and TLS files from the environment
//! once, prints the configuration warnings once each (not once per signal),
//! builds the exporters (on one export runtime, sharing HTTP clients) wrapped in
//! [`Counted`], so that their exports are bounded, counted and diagnosed, and,
//! for `init()`, reports exporters that could not be built once per cause,
//! listing the signals it turned off.

use std::sync::Arc;

use super::check;
use super::counted::{Counted, ExportWatch, Reported};
use super::delivery::DeliveryStats;
use super::retry::Stop;
use super::target::{self, Signal, Target};
use super::tls::{self, TlsFileError, TlsMaterial, TlsVars};
use super::transport::{default_transport, HttpClients, OtlpParts};
use super::ExportRuntime;
use crate::setup::error::ExportError;

/// One signal's OTLP settings.
#[derive(Debug)]
struct SignalPlan {
    target: Target,
    vars: TlsVars,
    material: Result<TlsMaterial, TlsFileError>,
}

/// The OTLP settings of the signals that export over OTLP, and what their
/// exporters share: the causes already reported, the shutdown, the HTTP clients
/// and the export runtime.
#[derive(Debug)]
pub(crate) struct OtlpPlan {
    signals: [Option<SignalPlan>; 3],
    reported: Arc<Reported>,
    stop: Arc<Stop>,
    http_clients: HttpClients,
    runtime: Option<Arc<ExportRuntime>>,
    failures: Vec<(Signal, ExportError)>,
    /// Whether a guard reports delivery at shutdown (warnings point to it).
    report: bool,
}

/// Builds one exporter from its parts, starting the export runtime if needed.
pub(crate) type BuildFn<E> =
    fn(&OtlpParts<'_>, &mut Option<Arc<ExportRuntime>>) -> Result<E, ExportError>;

impl OtlpPlan {
    /// Resolves the signals marked in `otlp` from the process environment and
    /// prints the configuration warnings.
    pub(crate) fn from_env(otlp: [bool; 3]) -> OtlpPlan {
        let lookup = |v: &str| std::env::var(v).ok();
        let (plan, warnings) = Self::from_lookup(otlp, &lookup, &|s| tls::from_env(s));
        for w in warnings {
            crate::warn::stderr(format_args!("{w}"));
        }
        plan
    }

    /// [`from_env`](Self::from_env) over any source; returns the warnings.
    fn from_lookup(
        otlp: [bool; 3],
        lookup: &dyn Fn(&str) -> Option<String>,
        tls_of: &dyn Fn(Signal) -> (TlsVars, Result<TlsMaterial, TlsFileError>),
    ) -> (OtlpPlan, Vec<String>) {
        let mut warnings = Vec::new();
        let mut push = |w: String| {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        };
        let mut signals: [Option<SignalPlan>; 3] = [None, None, None];
        if otlp.iter().any(|&on| on) {
            let (transports, protocol_warnings) = target::transports(lookup, default_transport());
            protocol_warnings.into_iter().for_each(|(_, w)| push(w));
            check::all_header_warnings(lookup)
                .into_iter()
                .chain(check::compression_warnings(lookup))
                .for_each(&mut push);
            for signal in Signal::ALL {
                let i = signal as usize;
                if !otlp[i] {
                    continue;
                }
                let target = target::resolve(signal, transports[i], lookup);
                if let (_, Some(w)) = target::timeout(signal, lookup) {
                    push(w);
                }
                let (vars, material) = tls_of(signal);
                if let Some(w) = check::tls_without_https(&target, &vars) {
                    push(w);
                }
                signals[i] = Some(SignalPlan {
                    target,
                    vars,
                    material,
                });
            }
        }
        let plan = OtlpPlan {
            signals,
            reported: Arc::new(Reported::default()),
            stop: Arc::new(Stop::default()),
            http_clients: HttpClients::default(),
            runtime: None,
            failures: Vec::new(),
            report: true,
        };
        (plan, warnings)
    }

    /// Builds an exporter for `signal` with `build` (on this plan's runtime, with
    /// its HTTP clients), wrapped in a [`Counted`] that counts into `stats` and
    /// bounds and diagnoses every export (this plan's causes; for `init()` the
    /// guard's shutdown, for the `ExporterBuilder` the exporter's own). `None`
    /// when `signal` is not planned.
    pub(crate) fn counted<E>(
        &mut self,
        signal: Signal,
        stats: Arc<DeliveryStats>,
        build: BuildFn<E>,
    ) -> Option<Result<Counted<E>, ExportError>> {
        let plan = self.signals[signal as usize].as_ref()?;
        let material = match &plan.material {
            Ok(material) => material,
            Err(e) => return Some(Err(ExportError::TlsFile(e.clone()))),
        };
        let connects = Arc::default();
        let parts = OtlpParts {
            target: &plan.target,
            tls: material,
            connects: Arc::clone(&connects),
            http_clients: &self.http_clients,
        };
        Some(build(&parts, &mut self.runtime).map(|exporter| {
            if let Some(runtime) = &self.runtime {
                let stop = match self.report {
                    true => Arc::clone(&self.stop),
                    false => Arc::default(),
                };
                stats.watch_exports(ExportWatch {
                    target: plan.target.clone(),
                    tls: plan.vars.clone(),
                    reported: Arc::clone(&self.reported),
                    stop,
                    runtime: Arc::clone(runtime),
                    connects,
                    report: self.report,
                });
            }
            Counted::new(exporter, stats)
        }))
    }

    /// [`counted`](Self::counted) for `init()`: a failure is kept for
    /// [`report_failures`](Self::report_failures) and gives `None`.
    pub(crate) fn build<E>(
        &mut self,
        signal: Signal,
        stats: &Arc<DeliveryStats>,
        build: BuildFn<E>,
    ) -> Option<Counted<E>> {
        match self.counted(signal, Arc::clone(stats), build)? {
            Ok(e) => Some(e),
            Err(e) => {
                self.failures.push((signal, e));
                None
            }
        }
    }

    /// For exporters no guard owns: their warnings do not point to a delivery
    /// report.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    pub(crate) fn without_delivery_report(mut self) -> Self {
        self.report = false;
        self
    }

    /// What tells the exports that the pipeline shuts down (for the guard).
    pub(crate) fn stop(&self) -> Arc<Stop> {
        Arc::clone(&self.stop)
    }

    /// The export runtime, if an exporter started it (for the guard).
    pub(crate) fn take_runtime(&mut self) -> Option<Arc<ExportRuntime>> {
        self.runtime.take()
    }

    /// Prints the exporters that could not be built, one warning per cause.
    pub(crate) fn report_failures(&mut self) {
        for line in group_failures(std::mem::take(&mut self.failures)) {
            crate::warn::stderr(format_args!("{line}"));
        }
    }
}

/// One line per cause: the error and the signals it turned off.
fn group_failures(failures: Vec<(Signal, ExportError)>) -> Vec<String> {
    let mut groups: Vec<(String, bool, Vec<Signal>)> = Vec::new();
    for (signal, error) in failures {
        let (text, per_exporter) = match &error {
            #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
            ExportError::Exporter { message, .. } => (message.clone(), true),
            other => (other.to_string(), false),
        };
        match groups.iter_mut().find(|(t, _, _)| *t == text) {
            Some((_, _, signals)) => signals.push(signal),
            None => groups.push((text, per_exporter, vec![signal])),
        }
    }
    groups
        .into_iter()
        .map(|(text, per_exporter, signals)| {
            let names: Vec<&str> = signals.iter().map(|s| s.name()).collect();
            let names = check::join(&names);
            if per_exporter {
                format!(
                    "could not build the OTLP exporter for {names}: {text}; {names} are not \
                     exported"
                )
            } else {
                format!("{text}; {names} are not exported")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(vars: &[(&str, &str)]) -> (OtlpPlan, Vec<String>) {
        let lookup = super::super::test_env(vars);
        let lookup2 = lookup.clone();
        OtlpPlan::from_lookup([true; 3], &lookup, &move |s| {
            let vars = tls::tls_vars(s, &lookup2);
            let material = tls::load(&vars, &|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not found",
                ))
            });
            (vars, material)
        })
    }

    #[test]
    fn configuration_warnings_come_once_not_once_per_signal() {
        let (_, warnings) = plan(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuff"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
        ]);
        let fallback = default_transport();
        assert_eq!(
            warnings,
            [
                &format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL=\"http/protobuff\" is not valid (expected grpc, \
                     http/protobuf or http/json; did you mean http/protobuf?); using {fallback} \
                     (the default)"
                ),
                "OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\" is not valid (expected milliseconds, e.g. \
                 10000); ignoring it",
                "OTEL_EXPORTER_OTLP_CERTIFICATE set, but http://c:4318 is not https://: no TLS \
                 is used and the files are ignored; write https:// in the endpoint to use them",
            ]
        );
    }

    #[test]
    fn a_bad_file_is_one_warning_for_the_signals_it_turns_off() {
        let (mut p, _) = plan(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nope.pem"),
        ]);
        let stats = Arc::new(DeliveryStats::default());
        for s in Signal::ALL {
            let built: Option<Counted<()>> = p.build(s, &stats, |_, _| Ok(()));
            assert!(built.is_none(), "{s} off");
        }
        assert!(p.take_runtime().is_none(), "nothing was started");
        assert_eq!(
            group_failures(std::mem::take(&mut p.failures)),
            [
                "OTEL_EXPORTER_OTLP_CERTIFICATE=\"/nope.pem\" cannot be read (not found); traces, \
              logs and metrics are not exported"
            ]
        );
    }

    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    #[test]
    fn exporter_errors_are_grouped_by_message() {
        let e = |signal: Signal, message: &str| {
            (
                signal,
                ExportError::Exporter {
                    signal: signal.name(),
                    message: message.into(),
                },
            )
        };
        assert_eq!(
            group_failures(vec![
                e(Signal::Traces, "bad endpoint"),
                e(Signal::Metrics, "bad endpoint"),
                e(Signal::Logs, "other"),
            ]),
            [
                "could not build the OTLP exporter for traces and metrics: bad endpoint; traces \
                 and metrics are not exported",
                "could not build the OTLP exporter for logs: other; logs are not exported",
            ]
        );
    }
}
