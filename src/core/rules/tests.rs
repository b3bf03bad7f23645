//! The rules on their own (the model-based property test drives them through
//! the public API: `tests/model.rs`).

use super::*;
use crate::model::attributes::{Attributes, Entry, Kind};
use crate::model::session::SessionId;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, PartialEq)]
struct H(SessionId, bool);
impl Handle for H {
    fn id(&self) -> &SessionId {
        &self.0
    }
    fn reported(&self) -> bool {
        self.1
    }
}

const MIN: Duration = Duration::from_secs(60);
const MAIN: Actor = Actor {
    thread: 1,
    unwinding: false,
};

fn cfg(mode: SessionMode) -> Config {
    Config {
        mode,
        inactivity: Some(15 * MIN),
        max_duration: Some(240 * MIN),
        background_timeout: Duration::from_secs(30),
        persist: false,
    }
}

fn t(min: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + min * 60)
}

/// Steps `e`, and commits a reported candidate `id` whenever one is asked for.
fn run(st: &mut State<H>, c: &Config, e: Event<H>, now: SystemTime, id: &str) -> Vec<Effect<H>> {
    let mut out = Vec::new();
    step(st, c, e.clone(), now, &mut out);
    if let Some(Effect::Build { purpose, again }) = out
        .iter()
        .find(|e| matches!(e, Effect::Build { .. }))
        .cloned()
    {
        let commit = Event::Commit {
            session: H(SessionId::from(id), true),
            user: st.user.clone(),
            attributes: Attributes::default(),
            purpose,
        };
        step(st, c, commit, now, &mut out);
        if again {
            step(st, c, e, now, &mut out);
        }
    }
    out
}

fn ended(out: &[Effect<H>]) -> Vec<(String, EndReason, When)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Ended {
                session,
                reason,
                at,
                ..
            } => Some((session.0.to_string(), *reason, *at)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_error_after_a_timeout_starts_the_next_session_and_counts_there() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    let out = run(
        &mut st,
        &c,
        Event::Error {
            unhandled: true,
            actor: MAIN,
        },
        t(20),
        "b",
    );
    assert_eq!(
        ended(&out),
        [("a".into(), EndReason::Inactivity, When::At(t(0)))]
    );
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::Count { session, unhandled: true } if session.0 == "b")));
    assert_eq!(st.last_reported.as_ref().map(SessionId::as_str), Some("b"));
}

#[test]
fn in_the_background_nothing_starts_until_foreground() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    run(&mut st, &c, Event::Background, t(1), "x");
    let out = run(&mut st, &c, Event::Activity(MAIN), t(30), "x");
    assert_eq!(ended(&out).len(), 1);
    assert!(matches!(st.phase, Phase::Due));
    assert!(!st.start_due());
    assert!(st.live().is_none(), "background telemetry started nothing");
    run(&mut st, &c, Event::Foreground, t(31), "b");
    assert_eq!(st.live().map(|l| l.session.0.as_str()), Some("b"));
}

#[test]
fn a_fatal_crash_ends_and_nothing_restarts() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    let out = run(
        &mut st,
        &c,
        Event::Crash {
            fatal: true,
            actor: MAIN,
        },
        t(1),
        "x",
    );
    assert_eq!(ended(&out), [("a".into(), EndReason::Crash, When::Now)]);
    assert!(matches!(st.phase, Phase::Crashed { .. }));
    let other = Actor {
        thread: 2,
        unwinding: false,
    };
    let unwinding = Actor {
        thread: 1,
        unwinding: true,
    };
    for actor in [other, unwinding] {
        let out = run(&mut st, &c, Event::Activity(actor), t(2), "x");
        assert!(out.is_empty(), "{actor:?}");
    }
    // The crashing thread caught the panic and goes on.
    run(&mut st, &c, Event::Activity(MAIN), t(3), "b");
    assert_eq!(st.live().map(|l| l.session.0.as_str()), Some("b"));
}

#[test]
fn max_duration_ends_no_later_than_its_deadline_and_inactivity_wins_a_tie() {
    let c = Config {
        inactivity: Some(10 * MIN),
        max_duration: Some(10 * MIN),
        ..cfg(SessionMode::App)
    };
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    let out = run(&mut st, &c, Event::Check, t(10), "b");
    assert_eq!(
        ended(&out),
        [("a".into(), EndReason::Inactivity, When::At(t(0)))]
    );
    let c = Config {
        inactivity: Some(10 * MIN),
        max_duration: Some(25 * MIN),
        ..c
    };
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    for m in [5, 12, 19, 24] {
        run(&mut st, &c, Event::Activity(MAIN), t(m), "x");
    }
    let out = run(&mut st, &c, Event::Check, t(25), "b");
    assert_eq!(
        ended(&out),
        [("a".into(), EndReason::MaxDuration, When::At(t(24)))]
    );
}

#[test]
fn a_discarded_session_is_current_but_emits_nothing() {
    let c = cfg(SessionMode::Manual);
    let mut st = State::default();
    let mut out = Vec::new();
    let silent = H(SessionId::from("d"), false);
    step(
        &mut st,
        &c,
        Event::Commit {
            session: silent,
            user: None,
            attributes: Attributes::default(),
            purpose: Purpose::Replace,
        },
        t(0),
        &mut out,
    );
    assert!(st.live().is_some());
    assert!(st.stamped().is_none());
    assert_eq!(st.last_reported, None);
    step(&mut st, &c, Event::Pause, t(1), &mut out);
    step(&mut st, &c, Event::End, t(2), &mut out);
    assert!(out.iter().all(|e| matches!(e, Effect::Save)), "{out:?}");
}

#[test]
fn after_a_shutdown_nothing_starts() {
    for persist in [false, true] {
        let c = Config {
            persist,
            ..cfg(SessionMode::App)
        };
        let mut st = State::default();
        run(&mut st, &c, Event::Boot, t(0), "a");
        run(&mut st, &c, Event::Shutdown, t(1), "x");
        let verbs = [
            Event::Start,
            Event::Resume,
            Event::Foreground,
            Event::Activity(MAIN),
            Event::Error {
                unhandled: true,
                actor: MAIN,
            },
            Event::Crash {
                fatal: false,
                actor: MAIN,
            },
        ];
        for verb in verbs {
            let out = run(&mut st, &c, verb.clone(), t(2), "late");
            assert!(
                out.iter()
                    .all(|e| !matches!(e, Effect::Build { .. } | Effect::Started { .. })),
                "{verb:?} after shutdown (persist {persist}): {out:?}"
            );
            assert!(st.live().is_none());
            // A suspended session stays suspended (not ended as `shutdown`
            // by a replacement, then reported `lost` by the next run).
            assert_eq!(matches!(st.phase, Phase::Suspended(_)), persist);
        }
    }
}

#[test]
fn a_start_asked_for_before_a_fatal_crash_of_another_thread_is_not_committed() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    let worker = Actor {
        thread: 2,
        unwinding: false,
    };
    // The worker's telemetry after a timeout asks for a candidate...
    let mut out = Vec::new();
    step(&mut st, &c, Event::Activity(worker), t(20), &mut out);
    let Some(Effect::Build { purpose, .. }) =
        out.iter().find(|e| matches!(e, Effect::Build { .. }))
    else {
        panic!("a start was asked for: {out:?}");
    };
    let purpose = *purpose;
    // ...meanwhile the main thread's panic starts a session, counts its crash
    // there and ends it: the process is going down.
    run(
        &mut st,
        &c,
        Event::Crash {
            fatal: true,
            actor: MAIN,
        },
        t(20),
        "crashed",
    );
    assert!(matches!(st.phase, Phase::Crashed { .. }));
    // The worker's candidate arrives late: no empty session while dying.
    let mut out = Vec::new();
    let reply = step(
        &mut st,
        &c,
        Event::Commit {
            session: H(SessionId::from("late"), true),
            user: None,
            attributes: Attributes::default(),
            purpose,
        },
        t(20),
        &mut out,
    );
    assert!(!reply.done);
    assert!(matches!(st.phase, Phase::Crashed { .. }), "{:?}", st.phase);
}

fn dead(id: &str) -> Live<H> {
    Live {
        session: H(SessionId::from(id), true),
        started_at: t(0),
        last_activity: t(3),
        paused: false,
        user: None,
        attributes: Attributes::default(),
    }
}

#[test]
fn a_restored_session_whose_marker_says_how_it_died_ends_for_that() {
    let mut c = cfg(SessionMode::App);
    c.persist = true;
    for (died, reason, crashed) in [
        (None, EndReason::Lost, false),
        (Some(EndReason::Crash), EndReason::Crash, true),
        (Some(EndReason::Hang), EndReason::Hang, false),
    ] {
        let mut st = State::default();
        let out = run(
            &mut st,
            &c,
            Event::Restore(Restored {
                live: dead("d"),
                suspended: false,
                died,
            }),
            t(10),
            "next",
        );
        assert_eq!(
            ended(&out),
            [("d".to_string(), reason, When::At(t(3)))],
            "dated at its last saved activity"
        );
        let lost = out
            .iter()
            .any(|e| matches!(e, Effect::Ended { lost: true, .. }));
        assert_eq!(lost, !crashed, "abnormal unless a crash: {died:?}");
        let crash_counted = out.iter().any(|e| matches!(e, Effect::Crashed { .. }));
        assert_eq!(
            crash_counted, crashed,
            "a signal counts as its crash: {died:?}"
        );
    }
    // A suspended session (a clean exit) is not ended by a marker: the
    // driver only passes `died` for a session saved active.
}

// ---------------------------------------------------------------- rule 9

fn entry(key: &'static str, value: &'static str, kind: Kind) -> Entry {
    Entry {
        key: opentelemetry::Key::from_static_str(key),
        value: opentelemetry::Value::from(value),
        kind,
    }
}

/// The live session's attributes, as `key=value` strings.
fn attrs(st: &State<H>) -> Vec<String> {
    st.live()
        .map(|l| {
            l.attributes
                .entries()
                .iter()
                .map(|e| format!("{}={}", e.key, e.value))
                .collect()
        })
        .unwrap_or_default()
}

/// Steps setting `e` at `now` (no candidate needed).
fn set(st: &mut State<H>, c: &Config, e: Entry, now: SystemTime) -> Vec<Effect<H>> {
    run(st, c, Event::SetAttribute(e), now, "-")
}

#[test]
fn a_property_is_the_sessions_and_a_permanent_one_or_a_flag_is_carried() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    let at_1 = |st: &mut State<H>, e| set(st, &c, e, t(1));
    let out = at_1(&mut st, entry("app.screen", "cart", Kind::Session));
    assert!(out.iter().any(|e| matches!(e, Effect::Attributes { .. })));
    at_1(&mut st, entry("app.region", "eu", Kind::Permanent));
    let out = at_1(&mut st, entry("feature_flag.new-cart", "b", Kind::Flag));
    assert!(
        out.iter().any(|e| matches!(
            e,
            Effect::Marked {
                mark: Mark::Flag {
                    variant: Some(_),
                    ..
                },
                ..
            }
        )),
        "a flag set is a timeline mark: {out:?}"
    );
    // Overwritten in place.
    at_1(&mut st, entry("app.screen", "pay", Kind::Session));
    assert_eq!(
        attrs(&st),
        ["app.screen=pay", "app.region=eu", "feature_flag.new-cart=b"]
    );
    // Setting the same value again changes nothing.
    let out = at_1(&mut st, entry("app.screen", "pay", Kind::Session));
    assert!(!out.iter().any(|e| matches!(e, Effect::Attributes { .. })));
    // A rotation (start_session): only the carried ones; the flag it starts
    // with is on its timeline.
    let out = run(&mut st, &c, Event::Start, t(2), "b");
    assert!(out.iter().any(|e| matches!(e,
        Effect::Marked { session, mark: Mark::Flag { variant: Some(_), .. } } if session.0.as_str() == "b")));
    assert_eq!(attrs(&st), ["app.region=eu", "feature_flag.new-cart=b"]);
    // A timeout, then activity: still carried.
    run(&mut st, &c, Event::Activity(MAIN), t(40), "c");
    assert_eq!(st.live().unwrap().session.0.as_str(), "c");
    assert_eq!(attrs(&st), ["app.region=eu", "feature_flag.new-cart=b"]);
    // A long absence in the background: carried into the session after it.
    run(&mut st, &c, Event::Background, t(41), "-");
    run(&mut st, &c, Event::Foreground, t(43), "d");
    assert_eq!(st.live().unwrap().session.0.as_str(), "d");
    assert_eq!(attrs(&st), ["app.region=eu", "feature_flag.new-cart=b"]);
    // Removed and cleared: from this session and the next ones.
    let out = run(
        &mut st,
        &c,
        Event::RemoveAttribute(opentelemetry::Key::from_static_str("feature_flag.new-cart")),
        t(44),
        "-",
    );
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Marked {
            mark: Mark::Flag { variant: None, .. },
            ..
        }
    )));
    run(
        &mut st,
        &c,
        Event::RemoveAttribute(opentelemetry::Key::from_static_str("app.region")),
        t(44),
        "-",
    );
    assert!(attrs(&st).is_empty());
    run(&mut st, &c, Event::Start, t(45), "e");
    assert!(attrs(&st).is_empty(), "{:?}", attrs(&st));
}

#[test]
fn a_property_made_session_only_is_no_longer_carried() {
    let c = cfg(SessionMode::App);
    let mut st = State::default();
    run(&mut st, &c, Event::Boot, t(0), "a");
    set(&mut st, &c, entry("k", "1", Kind::Permanent), t(1));
    set(&mut st, &c, entry("k", "2", Kind::Session), t(1));
    run(&mut st, &c, Event::Start, t(2), "b");
    assert!(attrs(&st).is_empty());
}

#[test]
fn with_no_session_a_property_waits_for_the_next_and_starts_nothing() {
    let c = cfg(SessionMode::Manual);
    let mut st = State::default();
    let out = set(
        &mut st,
        &c,
        entry("app.screen", "home", Kind::Session),
        t(0),
    );
    assert!(st.live().is_none(), "nothing started");
    assert!(!out.iter().any(|e| matches!(e, Effect::Build { .. })));
    run(&mut st, &c, Event::Start, t(1), "a");
    assert_eq!(attrs(&st), ["app.screen=home"]);
    // For that session only.
    run(&mut st, &c, Event::Start, t(2), "b");
    assert!(attrs(&st).is_empty());
}

#[test]
fn a_callbacks_attribute_wins_over_a_carried_one() {
    let c = cfg(SessionMode::Manual);
    let mut st = State::default();
    set(&mut st, &c, entry("tier", "free", Kind::Permanent), t(0));
    let mut added = Attributes::default();
    added.set(entry("tier", "gold", Kind::Session)).unwrap();
    added.set(entry("cb", "1", Kind::Session)).unwrap();
    let mut out = Vec::new();
    step(
        &mut st,
        &c,
        Event::Commit {
            session: H(SessionId::from("a"), true),
            user: None,
            attributes: added,
            purpose: Purpose::Replace,
        },
        t(1),
        &mut out,
    );
    assert_eq!(attrs(&st), ["tier=gold", "cb=1"]);
    // The carried one is still what the next session starts with.
    run(&mut st, &c, Event::Start, t(2), "b");
    assert_eq!(attrs(&st), ["tier=free"]);
}

#[test]
fn one_attribute_past_the_limit_is_refused_and_changes_nothing() {
    use crate::model::attributes::MAX_SESSION_ATTRIBUTES;
    let c = cfg(SessionMode::Manual);
    let mut st = State::default();
    run(&mut st, &c, Event::Start, t(0), "a");
    for i in 0..MAX_SESSION_ATTRIBUTES {
        let e = Entry {
            key: opentelemetry::Key::from(format!("k{i}")),
            value: opentelemetry::Value::from(1),
            kind: Kind::Session,
        };
        let mut out = Vec::new();
        assert!(!step(&mut st, &c, Event::SetAttribute(e), t(1), &mut out).full);
    }
    let mut out = Vec::new();
    let reply = step(
        &mut st,
        &c,
        Event::SetAttribute(entry("x", "1", Kind::Permanent)),
        t(1),
        &mut out,
    );
    assert!(reply.full);
    assert_eq!(attrs(&st).len(), MAX_SESSION_ATTRIBUTES);
    run(&mut st, &c, Event::Start, t(2), "b");
    assert!(
        attrs(&st).is_empty(),
        "the refused permanent one is not carried either"
    );
}

/// Found by the model (tests/model.rs: `SetPermanent, Restart, Start` lost
/// the attribute): what later sessions carry is persisted even when no
/// session is live to save with it.
#[test]
fn a_carried_attribute_set_with_no_session_is_saved() {
    let c = cfg(SessionMode::Manual);
    let mut st = State::default();
    let out = set(&mut st, &c, entry("k", "1", Kind::Permanent), t(0));
    assert!(out.iter().any(|e| matches!(e, Effect::Save)), "{out:?}");
    let out = set(&mut st, &c, entry("k", "1", Kind::Permanent), t(0));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Save)),
        "unchanged: no save"
    );
}
