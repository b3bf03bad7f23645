//! A request session's id is made when something needs it: at once when
//! callbacks see the candidate or ids are stamped, else at its first read (a
//! snapshot), never for a request nobody asks about; whichever way, it is one
//! id for the request's whole life. A caller's session joined inside a request
//! leaves the request's own session (and its counts) in place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use opentelemetry::Context;
use otel_session::{
    IdGenerator, RequestOutcome, SessionContextExt, SessionId, SessionManager, SessionMode,
};

/// Counts the ids it makes.
#[derive(Debug, Default, Clone)]
struct CountingIds(Arc<AtomicUsize>);
impl IdGenerator for CountingIds {
    fn new_session_id(&self) -> SessionId {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        SessionId::from(format!("request-{n}"))
    }
}

impl CountingIds {
    fn made(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

fn requests(ids: &CountingIds) -> otel_session::SessionManagerBuilder {
    SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_id_generator(ids.clone())
}

#[test]
fn a_request_nobody_asks_about_draws_no_id_and_a_read_one_keeps_its_id() {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let ids = CountingIds::default();
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let sessions = requests(&ids)
        .with_meter(meter_provider.meter("otel-session"))
        .build();
    for _ in 0..100 {
        let request = sessions.begin_request([]);
        let _in = request.context().clone().attach();
        otel_session::record_handled_error();
        drop(_in);
        request.finish(RequestOutcome::Answered);
    }
    assert_eq!(ids.made(), 0, "no id drawn for requests nobody read");
    // Their errors counted all the same: 100 `errored` requests.
    meter_provider.force_flush().unwrap();
    let errored: u64 = metrics
        .get_finished_metrics()
        .unwrap()
        .last()
        .into_iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .filter(|m| m.name() == "otel_session.ended")
        .filter_map(|m| match m.data() {
            AggregatedMetrics::U64(MetricData::Sum(s)) => Some(
                s.data_points()
                    .filter(|dp| dp.attributes().any(|kv| kv.value.as_str() == "errored"))
                    .map(|dp| dp.value())
                    .sum::<u64>(),
            ),
            _ => None,
        })
        .sum();
    assert_eq!(errored, 100, "each request's error made it errored");

    let request = sessions.begin_request([]);
    let first = request.session().expect("a request session").id().clone();
    assert_eq!(ids.made(), 1, "the first read made it");
    let in_handler = {
        let _in = request.context().clone().attach();
        otel_session::current_session().expect("the request's session")
    };
    assert_eq!(in_handler.id(), &first, "one id for the request's life");
    assert_eq!(request.session().unwrap().id(), &first);
    assert_eq!(ids.made(), 1);
    request.finish(RequestOutcome::Answered);
}

#[test]
fn stamped_ids_and_callbacks_see_the_id_the_session_keeps() {
    let ids = CountingIds::default();
    let sessions = requests(&ids).with_request_ids(true).build();
    let request = sessions.begin_request([]);
    assert_eq!(ids.made(), 1, "made at once: telemetry carries it");
    let stamped = request.context().stamped_session_id().expect("stamped");
    assert_eq!(request.session().unwrap().id(), &stamped);
    request.finish(RequestOutcome::Answered);

    let ids = CountingIds::default();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let sessions = requests(&ids)
        .on_session(move |c| {
            s.lock().unwrap().push(c.id().clone());
            true
        })
        .build();
    let request = sessions.begin_request([]);
    assert_eq!(ids.made(), 1, "made at once: the callback sees it");
    let session = request.session().unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), [session.id().clone()]);
    assert!(request.context().stamped_session_id().is_none(), "ids off");
    request.finish(RequestOutcome::Answered);
    assert_eq!(ids.made(), 1);
}

#[test]
fn a_caller_joined_inside_a_request_keeps_the_requests_session_and_counts() {
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .build();
    let request = sessions.begin_request([]);
    let own = request.session().unwrap().id().clone();
    let joined = request
        .context()
        .with_joined_session(SessionId::from("caller-7"));
    {
        let _in = joined.clone().attach();
        assert_eq!(otel_session::current_session().unwrap().id(), &own);
        otel_session::record_handled_error();
        otel_session::record_handled_error();
    }
    assert_eq!(
        joined.stamped_session_id().unwrap().as_str(),
        "caller-7",
        "telemetry in the derived context carries the caller's id"
    );
    assert_eq!(request.session().unwrap().handled_errors(), 2);
    request.finish(RequestOutcome::Answered);
    // A context kept after the request ended (a detached task) counts nothing
    // more toward it.
    let _in = joined.attach();
    otel_session::record_handled_error();
    assert!(Context::current().joined_session_id().is_some());
    assert_eq!(
        otel_session::current_session().unwrap().handled_errors(),
        2,
        "an ended request session refuses later errors"
    );
}
