//! Every rule of a manager's app session, as one pure transition function:
//! [`step`]`(state, config, event, now) -> effects`. No lock, atomic, clock
//! read, user code or I/O happens here; the driver (`machine`) owns the lock,
//! reads the clock, builds candidates, publishes the hot-path stamp and turns
//! the [`Effect`]s into telemetry. Request sessions are not here: each lives
//! and dies with its request (`tracking::request`).
//!
//! # The states
//! - [`Phase::Idle`]: no session, and none starts by itself. Before the first
//!   start in manual or request mode, after `end_session()`, after a timeout
//!   while paused or in manual mode, after a shutdown.
//! - [`Phase::Due`]: no session (app mode, after an inactivity or max-duration
//!   end in the foreground): the next *activity* starts one and counts there.
//!   While the app is in the background nothing starts by itself;
//!   `foreground()` does.
//! - [`Phase::Live`]: a session is current (reported, or discarded by an
//!   `on_session` callback: then current but silent), paused or not.
//! - [`Phase::Suspended`]: a clean exit with persistence put the session aside
//!   (saved as `suspended`); nothing is stamped and nothing starts by itself.
//! - [`Phase::Crashed`]: a crash that takes the process down (a main-thread
//!   panic, any panic with `panic = "abort"`) ended the session. Nothing starts
//!   by itself while the process goes down — not telemetry of other threads,
//!   not telemetry made while the panic unwinds — unless the crashing thread
//!   goes on (the program caught the panic): its next activity starts the next
//!   session, as in `Due`.
//!
//! # The rules
//! 1. **Timeouts first.** Before any event, a live session past a limit ends
//!    for it: inactivity (`now - last_activity >= inactivity`) dated at its last
//!    activity, or its maximum duration (`now - started_at >= max`) dated at
//!    `min(last_activity, started_at + max)`; inactivity wins a tie. Afterwards
//!    the phase is `Due` in app mode unless the session was paused (then
//!    `Idle`, and `resume_session()` starts a new one), `Idle` otherwise, and
//!    `Idle` during a shutdown (nothing starts while the pipeline goes away).
//! 2. **Activity** keeps a live session from its inactivity end: telemetry
//!    stamped with it (a reported, unpaused session), every verb (start, end,
//!    pause, resume, `set_user`, background, foreground, recording an error) and
//!    every crash. Reading the session is not activity. In `Due` (foreground),
//!    telemetry, a recorded error (handled or not), a crash, `resume_session()`
//!    and `foreground()` start the next session, and an error or crash counts
//!    there. `set_user`, `pause_session` and `background()` start nothing:
//!    the next session carries the user; there is nothing to pause; the app is
//!    going away. `end_session()` makes it `Idle`.
//! 3. **Starting** needs a candidate: an id and the `on_session` verdict, taken
//!    at the moment it starts (never prepared at an earlier end). The rules ask
//!    for one ([`Effect::Build`]) and the driver steps [`Event::Commit`] with it.
//!    `start_session()` replaces the current session (which ends `replaced`);
//!    every other start only happens if there is no session (a suspended one
//!    ends `shutdown` first so it is never lost). The new session's
//!    `previous_id` is the last reported session's id, whatever ended it; a
//!    discarded session is current but emits, counts, stamps and notifies
//!    nothing, and never becomes anyone's `previous_id`.
//! 4. **Pause** stops attribution; timeouts keep running. **Resume** resumes a
//!    paused session (`true`), starts one when there is none (`false`), and
//!    changes nothing on a running one (`false`).
//! 5. **Background / foreground**: `background()` notes the time once (the
//!    session goes on, not paused). `foreground()` after at least the background
//!    timeout away ends the session (`background`, dated at its last activity);
//!    in app mode a session is current afterwards (the one that went on, or a
//!    new one).
//! 6. **Errors** recorded by a verb count toward a live, reported, unpaused
//!    session (telemetry's errors are counted by the processors, lock-free,
//!    toward the session the telemetry carries). **Crashes** count toward the
//!    live session, paused or not (once per session, `crashed` for good); a
//!    crash that takes the process down (`fatal`) also ends it (`crash`) and
//!    leaves `Crashed`: no empty session follows a crash while the process dies.
//! 7. **Shutdown**: with persistence the live session is suspended (the next
//!    run continues it or reports its end); without, it ends (`shutdown`).
//!    It is final: afterwards nothing starts (a verb called after the guard's
//!    drop or the provider's shutdown starts no session that would never end,
//!    and does not turn a suspended session into a lost one).
//! 8. **Restore** (persistence, at build): a suspended session within both
//!    limits continues (a `session.resume` unless it was paused; continuing is
//!    activity); one past a limit ends for it, dated as rule 1; one saved
//!    `active` (its process died) ends `lost`, `abnormal` (a crashed one stays
//!    `crashed`), dated at its last saved activity — unless its crash marker
//!    says how it died: a fatal signal ends it `crash`, `crashed` (counted as
//!    its crash); dying during a hang ends it `hang`, `abnormal`. Either way
//!    the next `previous_id` points at it.
//! 9. **Attributes** (properties, permanent properties, feature flags) are
//!    state, not telemetry: setting or removing one is activity of a live
//!    session (paused or not, reported or not) and changes it; a permanent
//!    one or a flag is also carried into every later session (a permanent
//!    one across restarts too, through persistence; a flag only within the
//!    process). With no live session a property waits for the next session
//!    (non-permanent ones for that session only); nothing starts for it. A
//!    new session starts with what is carried and waiting, then what its
//!    `on_session` callbacks added (they win on the same key). A set that
//!    would give a session (or what the next carries) more than
//!    [`MAX_SESSION_ATTRIBUTES`](crate::model::attributes::MAX_SESSION_ATTRIBUTES)
//!    is refused (`Reply::full`); a flag's change, and each flag a session
//!    starts with, is a timeline mark.

use std::time::SystemTime;

use crate::model::attributes::{Attributes, Entry, Kind};
use crate::model::session::{EndReason, SessionMode, User};

mod types;

pub(crate) use types::*;

/// Whether a live session has passed a limit by `now`: why it ends and when.
pub(crate) fn expiry<S>(
    l: &Live<S>,
    c: &Config,
    now: SystemTime,
) -> Option<(EndReason, SystemTime)> {
    let idle = c.inactivity.and_then(|d| l.last_activity.checked_add(d));
    let max = c.max_duration.and_then(|d| l.started_at.checked_add(d));
    let (deadline, reason) = match (idle, max) {
        (Some(i), Some(m)) if m < i => (m, EndReason::MaxDuration),
        (Some(i), _) => (i, EndReason::Inactivity),
        (None, Some(m)) => (m, EndReason::MaxDuration),
        (None, None) => return None,
    };
    if now < deadline {
        return None;
    }
    let at = match reason {
        EndReason::MaxDuration => l.last_activity.min(deadline),
        _ => l.last_activity,
    };
    Some((reason, at.max(l.started_at)))
}

/// The next deadline of a live session (for the timer), if it has one.
pub(crate) fn deadline<S>(l: &Live<S>, c: &Config) -> Option<SystemTime> {
    let idle = c.inactivity.and_then(|d| l.last_activity.checked_add(d));
    let max = c.max_duration.and_then(|d| l.started_at.checked_add(d));
    match (idle, max) {
        (Some(i), Some(m)) => Some(i.min(m)),
        (i, m) => i.or(m),
    }
}

/// Applies `event` at `now`: changes `st` and appends what follows to `out`.
pub(crate) fn step<S: Handle>(
    st: &mut State<S>,
    c: &Config,
    event: Event<S>,
    now: SystemTime,
    out: &mut Vec<Effect<S>>,
) -> Reply {
    let shutting_down = matches!(event, Event::Shutdown);
    expire(st, c, now, shutting_down, out);
    let mut reply = Reply::default();
    match event {
        Event::Boot => {
            if c.mode == SessionMode::App && st.live().is_none() {
                out.push(build(Purpose::IfNone, false));
            }
        }
        Event::Check => {}
        Event::Activity(actor) => {
            let starts = st.starts_for(actor);
            match &mut st.phase {
                Phase::Live(l) if l.session.reported() && !l.paused => touch(l, now),
                _ if starts => out.push(build(Purpose::IfDue(actor), false)),
                _ => {}
            }
        }
        Event::Start => out.push(build(Purpose::Replace, false)),
        Event::Commit {
            session,
            user,
            attributes,
            purpose,
        } => reply.done = commit(st, session, user, attributes, purpose, now, out),
        Event::End => {
            end_current(st, EndReason::Manual, When::Now, out);
            st.phase = Phase::Idle;
        }
        Event::Pause => {
            if let Phase::Live(l) = &mut st.phase {
                touch(l, now);
                if !l.paused {
                    l.paused = true;
                    if l.session.reported() {
                        out.push(Effect::Paused {
                            session: l.session.clone(),
                        });
                    }
                    out.push(Effect::Save);
                }
            }
        }
        Event::Resume => match &mut st.phase {
            Phase::Live(l) => {
                touch(l, now);
                if l.paused {
                    l.paused = false;
                    reply.done = true;
                    if l.session.reported() {
                        out.push(Effect::Resumed {
                            session: l.session.clone(),
                        });
                    }
                    out.push(Effect::Save);
                }
            }
            _ => out.push(build(Purpose::IfNone, false)),
        },
        Event::SetUser(user) => {
            st.user = user.clone();
            if let Phase::Live(l) = &mut st.phase {
                touch(l, now);
                if l.user != user {
                    l.user = user.clone();
                    if l.session.reported() {
                        out.push(Effect::Marked {
                            session: l.session.clone(),
                            mark: Mark::User(user.clone()),
                        });
                    }
                    out.push(Effect::UserSet {
                        session: l.session.clone(),
                        user,
                    });
                    out.push(Effect::Save);
                }
            }
        }
        Event::SetAttribute(e) => reply.full = !set_attribute(st, e, now, out),
        Event::RemoveAttribute(key) => remove_attribute(st, &key, now, out),
        Event::Background => {
            if st.background_since.is_none() {
                st.background_since = Some(now);
                if let Phase::Live(l) = &mut st.phase {
                    touch(l, now);
                    mark(l, Mark::Background, out);
                }
            }
        }
        Event::Foreground => {
            let since = st.background_since.take();
            let away_long = since
                .is_some_and(|b| now.duration_since(b).unwrap_or_default() >= c.background_timeout);
            let mut end_at = None;
            if let Phase::Live(l) = &mut st.phase {
                if away_long {
                    end_at = Some(l.last_activity);
                } else {
                    touch(l, now);
                    if since.is_some() {
                        mark(l, Mark::Foreground, out);
                    }
                }
            }
            if let Some(at) = end_at {
                end_current(st, EndReason::Background, When::At(at), out);
                st.phase = Phase::Idle;
            }
            if c.mode == SessionMode::App && st.live().is_none() {
                out.push(build(Purpose::IfNone, false));
            }
        }
        Event::Error { unhandled, actor } => {
            let starts = st.starts_for(actor);
            match &mut st.phase {
                Phase::Live(l) => {
                    touch(l, now);
                    if !l.paused && l.session.reported() {
                        out.push(Effect::Count {
                            session: l.session.clone(),
                            unhandled,
                        });
                        out.push(Effect::Save);
                    }
                }
                _ if starts => out.push(build(Purpose::IfDue(actor), true)),
                _ => {}
            }
        }
        Event::Crash { fatal, actor } => {
            let starts = st.starts_for(actor);
            match &mut st.phase {
                Phase::Live(l) => {
                    touch(l, now);
                    if l.session.reported() {
                        out.push(Effect::Crashed {
                            session: l.session.clone(),
                        });
                        out.push(Effect::Save);
                    }
                    if fatal {
                        end_current(st, EndReason::Crash, When::Now, out);
                        st.phase = Phase::Crashed {
                            thread: actor.thread,
                        };
                    }
                }
                _ if starts => out.push(build(Purpose::IfDue(actor), true)),
                _ => {}
            }
        }
        Event::Shutdown => match std::mem::replace(&mut st.phase, Phase::Idle) {
            Phase::Live(l) if c.persist && c.mode != SessionMode::Request => {
                st.phase = Phase::Suspended(l);
                out.push(Effect::Save);
            }
            Phase::Live(l) => {
                st.phase = Phase::Live(l);
                end_current(st, EndReason::Shutdown, When::Now, out);
            }
            // Each pipeline shuts down (spans, logs): the first suspended it.
            Phase::Suspended(l) => st.phase = Phase::Suspended(l),
            Phase::Idle | Phase::Due | Phase::Crashed { .. } => {}
        },
        Event::Restore(r) => restore(st, c, r, now, out),
    }
    if shutting_down {
        st.shut = true;
    }
    if st.shut {
        out.retain(|e| !matches!(e, Effect::Build { .. }));
    }
    reply
}

fn build<S>(purpose: Purpose, again: bool) -> Effect<S> {
    Effect::Build { purpose, again }
}

/// Activity at `now` (never moves the last activity back).
fn touch<S>(l: &mut Live<S>, now: SystemTime) {
    l.last_activity = l.last_activity.max(now);
}

fn mark<S: Handle>(l: &Live<S>, m: Mark, out: &mut Vec<Effect<S>>) {
    if l.session.reported() {
        out.push(Effect::Marked {
            session: l.session.clone(),
            mark: m,
        });
    }
}

/// Rule 1: a live session past a limit ends for it.
fn expire<S: Handle>(
    st: &mut State<S>,
    c: &Config,
    now: SystemTime,
    shutting_down: bool,
    out: &mut Vec<Effect<S>>,
) {
    let Phase::Live(l) = &st.phase else { return };
    let Some((reason, at)) = expiry(l, c, now) else {
        return;
    };
    let restart = c.mode == SessionMode::App && !l.paused && !shutting_down;
    end_current(st, reason, When::At(at), out);
    st.phase = if restart { Phase::Due } else { Phase::Idle };
}

/// Ends the live or suspended session (the caller sets the phase after).
fn end_current<S: Handle>(
    st: &mut State<S>,
    reason: EndReason,
    at: When,
    out: &mut Vec<Effect<S>>,
) {
    let l = match std::mem::replace(&mut st.phase, Phase::Idle) {
        Phase::Live(l) | Phase::Suspended(l) => l,
        other => {
            st.phase = other;
            return;
        }
    };
    if l.session.reported() {
        out.push(Effect::Ended {
            session: l.session,
            reason,
            at,
            paused: l.paused,
            lost: false,
        });
    }
    out.push(Effect::Save);
}

/// Rule 9: sets `e` on the live session (and on what later sessions carry,
/// if it is carried), or on what the next session starts with; `false` if
/// refused (too many).
fn set_attribute<S: Handle>(
    st: &mut State<S>,
    e: Entry,
    now: SystemTime,
    out: &mut Vec<Effect<S>>,
) -> bool {
    let mut next = st.next.clone();
    let next_ok = if e.kind.carried() || st.live().is_none() {
        next.set(e.clone()).is_ok()
    } else {
        // A property of this session only: later sessions no longer carry
        // a permanent one of that key.
        next.remove(e.key.as_str());
        true
    };
    let live = match &mut st.phase {
        Phase::Live(l) => {
            touch(l, now);
            let mut attributes = l.attributes.clone();
            match attributes.set(e.clone()) {
                Ok(changed) => Some((l, attributes, changed)),
                Err(_) => return false,
            }
        }
        _ => None,
    };
    if !next_ok {
        return false;
    }
    if let Some((l, attributes, true)) = live {
        if e.kind == Kind::Flag {
            mark(
                l,
                Mark::Flag {
                    key: e.key.clone(),
                    variant: Some(e.value.clone()),
                },
                out,
            );
        }
        attributes_changed(l, attributes, out);
    }
    // What later sessions carry is saved too (persistence).
    if !next.same(&st.next) {
        st.next = next;
        out.push(Effect::Save);
    }
    true
}

/// Rule 9: removes `key` from the live session and from what later
/// sessions carry.
fn remove_attribute<S: Handle>(
    st: &mut State<S>,
    key: &opentelemetry::Key,
    now: SystemTime,
    out: &mut Vec<Effect<S>>,
) {
    let mut next = st.next.clone();
    if next.remove(key.as_str()).is_some() {
        st.next = next;
        out.push(Effect::Save);
    }
    let Phase::Live(l) = &mut st.phase else {
        return;
    };
    touch(l, now);
    let mut attributes = l.attributes.clone();
    if let Some(e) = attributes.remove(key.as_str()) {
        if e.kind == Kind::Flag {
            mark(
                l,
                Mark::Flag {
                    key: e.key,
                    variant: None,
                },
                out,
            );
        }
        attributes_changed(l, attributes, out);
    }
}

fn attributes_changed<S: Handle>(
    l: &mut Live<S>,
    attributes: Attributes,
    out: &mut Vec<Effect<S>>,
) {
    l.attributes = attributes.clone();
    out.push(Effect::Attributes {
        session: l.session.clone(),
        attributes,
    });
    out.push(Effect::Save);
}

/// Rule 3: a built candidate becomes current (`true`), or is not needed.
fn commit<S: Handle>(
    st: &mut State<S>,
    session: S,
    user: Option<User>,
    added: Attributes,
    purpose: Purpose,
    now: SystemTime,
    out: &mut Vec<Effect<S>>,
) -> bool {
    if !purpose.wanted(st) {
        return false;
    }
    match &st.phase {
        Phase::Live(_) => end_current(st, EndReason::Replaced, When::Now, out),
        Phase::Suspended(_) => end_current(st, EndReason::Shutdown, When::Now, out),
        Phase::Idle | Phase::Due | Phase::Crashed { .. } => {}
    }
    let attributes = st.next.merged(&added);
    st.next = st.next.carried();
    if !attributes.is_empty() {
        out.push(Effect::Attributes {
            session: session.clone(),
            attributes: attributes.clone(),
        });
    }
    if session.reported() {
        st.last_reported = Some(session.id().clone());
        out.push(Effect::Started {
            session: session.clone(),
        });
        // The flags it starts with are on its timeline too: a flag it
        // carried and then changed still shows.
        for e in attributes.flags() {
            out.push(Effect::Marked {
                session: session.clone(),
                mark: Mark::Flag {
                    key: e.key.clone(),
                    variant: Some(e.value.clone()),
                },
            });
        }
    }
    st.phase = Phase::Live(Live {
        session,
        started_at: now,
        last_activity: now,
        paused: false,
        user,
        attributes,
    });
    out.push(Effect::Save);
    true
}

/// Rule 8.
fn restore<S: Handle>(
    st: &mut State<S>,
    c: &Config,
    r: Restored<S>,
    now: SystemTime,
    out: &mut Vec<Effect<S>>,
) {
    let mut l = r.live;
    st.last_reported = Some(l.session.id().clone());
    if !r.suspended {
        let at = l.last_activity;
        let reason = r.died.unwrap_or(EndReason::Lost);
        if reason == EndReason::Crash {
            out.push(Effect::Crashed {
                session: l.session.clone(),
            });
        }
        out.push(Effect::Ended {
            session: l.session,
            reason,
            at: When::At(at),
            paused: l.paused,
            lost: reason != EndReason::Crash,
        });
        out.push(Effect::Save);
        return;
    }
    if let Some((reason, at)) = expiry(&l, c, now) {
        out.push(Effect::Ended {
            session: l.session,
            reason,
            at: When::At(at),
            paused: l.paused,
            lost: false,
        });
        out.push(Effect::Save);
        return;
    }
    touch(&mut l, now);
    if !l.paused {
        out.push(Effect::Resumed {
            session: l.session.clone(),
        });
    }
    st.phase = Phase::Live(l);
    out.push(Effect::Save);
}

#[cfg(test)]
mod tests;
