//! Past the static id budget (4,096 sessions per process) ids become
//! reference-counted; stamping must not change. Its own test binary: it uses up
//! the process-wide budget.

mod common;

use common::sid;
use opentelemetry::trace::Tracer as _;
use otel_session::SessionManager;
use otel_session::SessionMode;

#[test]
fn sessions_past_the_static_id_budget_are_stamped_the_same() {
    let p = common::pipeline(SessionManager::builder().with_mode(SessionMode::Manual));
    let tracer = p.tracer();
    let mut last = None;
    for i in 0..4_200 {
        let s = p.sessions.start_session().unwrap();
        if i % 500 == 0 || i >= 4_090 {
            tracer.in_span(format!("s{i}"), |_| {});
            assert_eq!(
                sid(&p.app_span(&format!("s{i}"))).as_deref(),
                Some(s.id().as_str()),
                "session {i}"
            );
        }
        last = Some(s);
    }
    p.sessions.pause_session();
    tracer.in_span("paused", |_| {});
    assert_eq!(sid(&p.app_span("paused")), None);
    assert!(p.sessions.resume_session());
    tracer.in_span("resumed", |_| {});
    assert_eq!(
        sid(&p.app_span("resumed")).as_deref(),
        Some(last.unwrap().id().as_str())
    );
}
