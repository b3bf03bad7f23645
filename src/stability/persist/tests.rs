//! The session file's reader on arbitrary input (proptest): any bytes, any
//! truncation or mutation of a real file, never a panic; what it accepts
//! reads back unchanged; and every state this version saves reads back.

use proptest::prelude::*;

use super::*;

fn sample() -> Saved {
    let s = SavedSession {
        id: SessionId::from("0f8fad5b-d9cb-469f-a165-70867728950e"),
        previous_id: Some(SessionId::from("prev-1")),
        started_at: from_nanos(1_700_000_000_000_000_000),
        last_activity: from_nanos(1_700_000_060_000_000_000),
        handled: 2,
        unhandled: 1,
        status: SessionStatus::Crashed,
        state: SavedState::Suspended,
        paused: true,
        panicked: true,
        hangs: 2,
        user: Some(User::with_id("u-1").email("a@b.c")),
        attributes: sample_attributes(),
    };
    Saved {
        running: None,
        session: Some(s.clone()),
        last_reported: Some(SessionId::from("prev-1")),
        pending_ends: vec![PendingEnd {
            session: s,
            reason: EndReason::Inactivity,
            ended_at: from_nanos(1_700_000_060_000_000_000),
        }],
        permanent: sample_attributes().carried(),
    }
}

fn sample_attributes() -> crate::model::attributes::Attributes {
    use crate::model::attributes::{Attributes, Entry, Kind};
    use opentelemetry::{Array, Key, Value};
    let mut a = Attributes::default();
    for (k, v, kind) in [
        ("app.screen", Value::from("checkout"), Kind::Session),
        ("app.tier", Value::from(3i64), Kind::Permanent),
        ("app.ratio", Value::from(0.5), Kind::Session),
        ("app.offline", Value::from(true), Kind::Session),
        (
            "app.tags",
            Value::Array(Array::String(vec!["a".into(), "b".into()])),
            Kind::Permanent,
        ),
        ("feature_flag.new-cart", Value::from("b"), Kind::Flag),
    ] {
        a.set(Entry {
            key: Key::from_static_str(k),
            value: v,
            kind,
        })
        .unwrap();
    }
    a
}

fn id() -> impl Strategy<Value = SessionId> {
    "[A-Za-z0-9_-]{1,40}".prop_map(SessionId::from)
}

fn saved_session() -> impl Strategy<Value = SavedSession> {
    (
        id(),
        prop::option::of(id()),
        0..u64::MAX / 2,
        0..1_000_000_000_000u64,
        any::<u64>(),
        any::<u64>(),
        prop::sample::select(vec![
            SessionStatus::Ok,
            SessionStatus::Errored,
            SessionStatus::Abnormal,
            SessionStatus::Crashed,
        ]),
        (any::<(bool, bool, bool)>(), any::<u32>()),
        prop::option::of(("[a-z0-9@.]{0,20}", prop::option::of("[a-z .]{0,20}"))),
    )
        .prop_map(
            |(id, previous_id, start, active, handled, unhandled, status, (flags, hangs), user)| {
                SavedSession {
                    id,
                    previous_id,
                    started_at: from_nanos(start),
                    last_activity: from_nanos(start + active),
                    handled,
                    unhandled,
                    status,
                    state: if flags.0 {
                        SavedState::Suspended
                    } else {
                        SavedState::Active
                    },
                    paused: flags.1,
                    panicked: flags.2,
                    hangs,
                    user: user.map(|(id, name)| User {
                        id: Some(id),
                        email: None,
                        full_name: name,
                    }),
                    attributes: if hangs % 2 == 0 {
                        sample_attributes()
                    } else {
                        Default::default()
                    },
                }
            },
        )
}

fn saved() -> impl Strategy<Value = Saved> {
    (
        prop::option::of(saved_session()),
        prop::option::of(id()),
        prop::collection::vec(
            (
                saved_session(),
                prop::sample::select(vec![
                    EndReason::Manual,
                    EndReason::Inactivity,
                    EndReason::Lost,
                    EndReason::Crash,
                ]),
                0..u64::MAX / 2,
            ),
            0..4,
        ),
    )
        .prop_map(|(session, last_reported, ends)| Saved {
            running: None,
            permanent: if ends.len() % 2 == 0 {
                sample_attributes().carried()
            } else {
                Default::default()
            },
            session,
            last_reported,
            pending_ends: ends
                .into_iter()
                .map(|(session, reason, at)| PendingEnd {
                    session,
                    reason,
                    ended_at: from_nanos(at),
                })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_saved_state_reads_back_unchanged(saved in saved()) {
        prop_assert_eq!(parse(&render(&saved)), Ok(saved));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_pass_for_a_file(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        prop_assert!(parse(&bytes).is_err());
    }

    #[test]
    fn a_mutated_file_never_panics_and_what_it_accepts_reads_back(
        saved in saved(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = render(&saved);
        for (at, byte, how) in edits {
            let i = at.index(bytes.len().max(1)).min(bytes.len());
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        if cut.index(4) == 0 {
            let keep = cut.index(bytes.len().max(1));
            bytes.truncate(keep);
        }
        if let Ok(read) = parse(&bytes) {
            prop_assert_eq!(parse(&render(&read)), Ok(read));
        }
    }
}

#[test]
fn a_saved_state_reads_back_unchanged_and_formats_1_and_2_are_still_read() {
    let saved = sample();
    assert_eq!(parse(&render(&saved)), Ok(saved.clone()));
    assert_eq!(parse(&render(&Saved::default())), Ok(Saved::default()));
    // A version-1 file (no `paused`, no `panicked`): a counted unhandled error
    // stands for a counted panic, as version 1 assumed.
    let v1 = String::from_utf8(render(&saved))
        .unwrap()
        .replace(PERSIST_FORMAT, "otel-session/session/1")
        .replace("\"paused\": true,", "")
        .replace("\"panicked\": true,", "");
    let v1 = v1.replace("\"hangs\": 2,", "");
    let read = parse(v1.as_bytes()).expect("a version-1 file");
    let s = read.session.unwrap();
    assert!(!s.paused);
    assert!(s.panicked, "unhandled 1 in a version-1 file");
    assert_eq!(s.hangs, 0);
    // A version-2 file (no `hangs`): none were counted.
    let v2 = String::from_utf8(render(&saved))
        .unwrap()
        .replace(PERSIST_FORMAT, "otel-session/session/2")
        .replace("\"hangs\": 2,", "");
    let read = parse(v2.as_bytes()).expect("a version-2 file");
    let s = read.session.unwrap();
    assert!(s.paused && s.panicked);
    assert_eq!(s.hangs, 0);
    // A version-3 file (no attributes): none.
    let v3 = r#"{"format":"otel-session/session/3","session":{"id":"a","started_at_ns":1,"last_activity_ns":2,"handled":0,"unhandled":0,"status":"ok","state":"suspended","hangs":1}}"#;
    let read = parse(v3.as_bytes()).expect("a version-3 file");
    assert!(read.permanent.is_empty());
    assert!(read.session.unwrap().attributes.is_empty());
    // Attributes a verb would refuse make the file damaged.
    let bad = String::from_utf8(render(&saved))
        .unwrap()
        .replace("\"app.screen\"", "\"session.id\"");
    assert!(matches!(parse(bad.as_bytes()), Err(Unreadable::Damaged(_))));
}

#[test]
fn foreign_damaged_and_later_files_are_told_apart() {
    for text in [
        "{}",
        "[]",
        "null",
        r#"{"format":"otel-session/session/0"}"#,
        r#"{"format":"something-else/1"}"#,
        r#"{"format":"otel-session/session/2","session":{"id":"","started_at_ns":0,"last_activity_ns":0,"handled":0,"unhandled":0,"status":"ok","state":"active"}}"#,
        r#"{"format":"otel-session/session/2","session":{"id":"a","started_at_ns":0,"last_activity_ns":0,"handled":0,"unhandled":0,"status":"fine","state":"active"}}"#,
        r#"{"format":"otel-session/session/2","surprise":1}"#,
        r#"{"format":"otel-session/session/2","session":{"id":"a","started_at_ns":-1,"last_activity_ns":0,"handled":0,"unhandled":0,"status":"ok","state":"active"}}"#,
    ] {
        assert!(
            matches!(parse(text.as_bytes()), Err(Unreadable::Damaged(_))),
            "{text}"
        );
    }
    let why = |text: &str| match parse(text.as_bytes()) {
        Err(Unreadable::Damaged(why)) => why,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(why("garbage"), "it is not JSON (line 1)");
    assert_eq!(why(r#"{"format":"otel-ses"#), "it is cut short");
    assert_eq!(
        why("{}"),
        "a field is missing, unknown or of the wrong kind (line 1)"
    );
    let negative = r#"{"format":"otel-session/session/2","session":{"id":"a","started_at_ns":-1,"last_activity_ns":0,"handled":0,"unhandled":0,"status":"ok","state":"active"}}"#;
    assert_eq!(
        why(negative),
        "a field is missing, unknown or of the wrong kind (line 1)",
        "no serde wording (\"invalid type: integer `-1`, expected u64\")"
    );
    for later in [
        r#"{"format":"otel-session/session/5"}"#,
        r#"{"format":"otel-session/session/99","anything":[1,2]}"#,
    ] {
        assert!(
            matches!(parse(later.as_bytes()), Err(Unreadable::Newer(_))),
            "{later}"
        );
    }
}
