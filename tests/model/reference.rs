// The operations and the reference model of the session rules (included by
// tests/model.rs: one test crate, split for reading).

const IDLE: u64 = 600;
const MAX: u64 = 1200;
const AWAY: u64 = 30;
const T0: u64 = 1_700_000_000;

#[derive(Debug, Clone, Copy)]
enum Op {
    Advance(u64),
    Span,
    ErrorLog,
    Start,
    End,
    Pause,
    Resume,
    SetUser(Option<u8>),
    Background,
    Foreground,
    Handled,
    Unhandled,
    WorkerPanic,
    FatalPanic,
    Consent(bool),
    Read,
    Restart,
    /// `set_session_attribute("p{k}", "v{v}")`.
    SetProp(u8, u8),
    /// `set_permanent_session_attribute("p{k}", "v{v}")`.
    SetPermanent(u8, u8),
    /// `remove_session_attribute("p{k}")`.
    RemoveProp(u8),
    /// `add_feature_flag("f{f}", "v{v}")`.
    AddFlag(u8, u8),
    /// `clear_feature_flag("f{f}")`.
    ClearFlag(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![0..40u64, 25..35u64, 200..320u64, 580..620u64, 1150..1250u64]
            .prop_map(Op::Advance),
        4 => Just(Op::Span),
        2 => Just(Op::ErrorLog),
        2 => Just(Op::Start),
        1 => Just(Op::End),
        2 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => prop::option::of(0..3u8).prop_map(Op::SetUser),
        2 => Just(Op::Background),
        2 => Just(Op::Foreground),
        2 => Just(Op::Handled),
        1 => Just(Op::Unhandled),
        1 => Just(Op::WorkerPanic),
        1 => Just(Op::FatalPanic),
        1 => any::<bool>().prop_map(Op::Consent),
        1 => Just(Op::Read),
        1 => Just(Op::Restart),
        2 => (0..3u8, 0..3u8).prop_map(|(k, v)| Op::SetProp(k, v)),
        1 => (0..3u8, 0..3u8).prop_map(|(k, v)| Op::SetPermanent(k, v)),
        1 => (0..3u8).prop_map(Op::RemoveProp),
        1 => (0..2u8, 0..3u8).prop_map(|(f, v)| Op::AddFlag(f, v)),
        1 => (0..2u8).prop_map(Op::ClearFlag),
    ]
}

// ---------------------------------------------------------------- the model

/// How long a session attribute lives (the rules' rule 9).
#[derive(Debug, Clone, Copy, PartialEq)]
enum MKind {
    Session,
    Permanent,
    Flag,
}

/// Session attributes: (key, value, kind), in the order first set.
#[derive(Debug, Clone, Default, PartialEq)]
struct MAttrs(Vec<(String, String, MKind)>);

impl MAttrs {
    fn set(&mut self, k: &str, v: &str, kind: MKind) {
        match self.0.iter_mut().find(|e| e.0 == k) {
            Some(e) => *e = (k.into(), v.into(), kind),
            None => self.0.push((k.into(), v.into(), kind)),
        }
    }
    fn remove(&mut self, k: &str) {
        self.0.retain(|e| e.0 != k);
    }
    fn only(&self, keep: impl Fn(MKind) -> bool) -> MAttrs {
        MAttrs(self.0.iter().filter(|e| keep(e.2)).cloned().collect())
    }
    /// (key, value) pairs, sorted: what a summary or a snapshot shows.
    fn shown(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.0.iter().map(|e| (e.0.clone(), e.1.clone())).collect();
        v.sort();
        v
    }
}

#[derive(Debug, Clone)]
struct MSession {
    /// The how-manieth reported session it is (its id is the one the
    /// observer saw start in that place); discarded sessions have none.
    n: Option<usize>,
    previous: Option<usize>,
    started: u64,
    last: u64,
    paused: bool,
    reported: bool,
    handled: u64,
    unhandled: u64,
    panicked: bool,
    user: Option<u8>,
    attrs: MAttrs,
}

impl MSession {
    fn status(&self) -> SessionStatus {
        if self.unhandled > 0 {
            SessionStatus::Crashed
        } else if self.handled > 0 {
            SessionStatus::Errored
        } else {
            SessionStatus::Ok
        }
    }
}

#[derive(Debug, Clone)]
enum MPhase {
    /// Nothing starts by itself.
    Idle,
    /// App mode after a timeout: activity starts a session.
    Due,
    Live(MSession),
}

#[derive(Debug, Clone, PartialEq)]
struct MEnd<I> {
    id: I,
    reason: &'static str,
    at: u64,
    handled: u64,
    unhandled: u64,
    status: &'static str,
    previous: Option<I>,
    attrs: Vec<(String, String)>,
}

#[derive(Debug)]
struct Model {
    app: bool,
    now: u64,
    phase: MPhase,
    background: Option<u64>,
    last_reported: Option<usize>,
    reported: usize,
    user: Option<u8>,
    consent: bool,
    ends: Vec<MEnd<usize>>,
    /// What the next session starts with (carried, and waiting).
    next: MAttrs,
}

impl Model {
    fn new(app: bool) -> Self {
        let mut m = Model {
            app,
            now: 0,
            phase: MPhase::Idle,
            background: None,
            last_reported: None,
            reported: 0,
            user: None,
            consent: true,
            ends: Vec::new(),
            next: MAttrs::default(),
        };
        if app {
            m.start();
        }
        m
    }

    fn live(&mut self) -> Option<&mut MSession> {
        match &mut self.phase {
            MPhase::Live(s) => Some(s),
            _ => None,
        }
    }

    fn stamped(&self) -> bool {
        matches!(&self.phase, MPhase::Live(s) if s.reported && !s.paused)
    }

    fn due(&self) -> bool {
        matches!(self.phase, MPhase::Due) && self.background.is_none()
    }

    fn start(&mut self) {
        let previous = self.last_reported;
        let n = self.consent.then(|| {
            self.reported += 1;
            self.reported - 1
        });
        if n.is_some() {
            self.last_reported = n;
        }
        self.phase = MPhase::Live(MSession {
            n,
            previous,
            started: self.now,
            last: self.now,
            paused: false,
            reported: self.consent,
            handled: 0,
            unhandled: 0,
            panicked: false,
            user: self.user,
            attrs: self.next.clone(),
        });
        self.next = self.next.only(|k| k != MKind::Session);
    }

    fn end(&mut self, reason: &'static str, at: u64) {
        let MPhase::Live(s) = std::mem::replace(&mut self.phase, MPhase::Idle) else {
            return;
        };
        if let Some(n) = s.n {
            self.ends.push(MEnd {
                id: n,
                reason,
                at: at.max(s.started),
                handled: s.handled,
                unhandled: s.unhandled,
                status: s.status().as_str(),
                previous: s.previous,
                attrs: s.attrs.shown(),
            });
        }
    }

    /// Timeouts first (the rules' rule 1).
    fn expire(&mut self, shutting_down: bool) {
        let now = self.now;
        let app = self.app;
        let Some(s) = self.live() else { return };
        let idle = s.last + IDLE;
        let max = s.started + MAX;
        let (deadline, reason) = if idle <= max {
            (idle, "inactivity")
        } else {
            (max, "max_duration")
        };
        if now < deadline {
            return;
        }
        let at = if reason == "inactivity" {
            s.last
        } else {
            s.last.min(max)
        };
        let restart = app && !s.paused && !shutting_down;
        self.end(reason, at);
        self.phase = if restart { MPhase::Due } else { MPhase::Idle };
    }

    fn touch(&mut self) {
        let now = self.now;
        if let Some(s) = self.live() {
            s.last = s.last.max(now);
        }
    }

    fn step(&mut self, op: Op) {
        if let Op::Advance(by) = op {
            self.now += by;
        }
        if !matches!(op, Op::Restart) {
            self.expire(false);
        }
        match op {
            Op::Advance(_) | Op::Read => {}
            Op::Consent(c) => self.consent = c,
            Op::Span => {
                if self.stamped() {
                    self.touch();
                } else if self.due() {
                    self.start();
                }
            }
            Op::ErrorLog => {
                if self.due() {
                    self.start();
                }
                if self.stamped() {
                    self.touch();
                    if let Some(s) = self.live() {
                        s.handled += 1;
                    }
                }
            }
            Op::Handled | Op::Unhandled => {
                if self.due() {
                    self.start();
                }
                self.touch();
                if let Some(s) = self.live() {
                    if s.reported && !s.paused {
                        if matches!(op, Op::Handled) {
                            s.handled += 1;
                        } else {
                            s.unhandled += 1;
                        }
                    }
                }
            }
            Op::WorkerPanic | Op::FatalPanic => {
                if self.due() {
                    self.start();
                }
                self.touch();
                if let Some(s) = self.live() {
                    if s.reported && !s.panicked {
                        s.panicked = true;
                        s.unhandled += 1;
                    }
                }
                if matches!(op, Op::FatalPanic) && self.live().is_some() {
                    let now = self.now;
                    self.end("crash", now);
                    // Nothing starts by itself after it (this thread never
                    // crashed): as Idle for the rest of the model.
                    self.phase = MPhase::Idle;
                }
            }
            Op::Start => {
                let now = self.now;
                self.end("replaced", now);
                self.start();
            }
            Op::End => {
                let now = self.now;
                self.end("manual", now);
                self.phase = MPhase::Idle;
            }
            Op::Pause => {
                self.touch();
                if let Some(s) = self.live() {
                    s.paused = true;
                }
            }
            Op::Resume => {
                self.touch();
                match self.live() {
                    Some(s) => s.paused = false,
                    None => self.start(),
                }
            }
            Op::SetUser(u) => {
                self.user = u;
                self.touch();
                if let Some(s) = self.live() {
                    s.user = u;
                }
            }
            Op::Background => {
                if self.background.is_none() {
                    self.background = Some(self.now);
                    self.touch();
                }
            }
            Op::Foreground => {
                let since = self.background.take();
                let away_long = since.is_some_and(|b| self.now - b >= AWAY);
                if self.live().is_some() {
                    if away_long {
                        let at = self.live().map(|s| s.last).unwrap_or(self.now);
                        self.end("background", at);
                    } else {
                        self.touch();
                    }
                }
                if self.app && self.live().is_none() {
                    self.start();
                }
            }
            Op::SetProp(k, v) | Op::SetPermanent(k, v) | Op::AddFlag(k, v) => {
                let (key, kind) = match op {
                    Op::SetProp(..) => (format!("p{k}"), MKind::Session),
                    Op::SetPermanent(..) => (format!("p{k}"), MKind::Permanent),
                    _ => (format!("feature_flag.f{k}"), MKind::Flag),
                };
                let value = format!("v{v}");
                self.touch();
                match self.live() {
                    Some(s) => {
                        s.attrs.set(&key, &value, kind);
                        if kind == MKind::Session {
                            self.next.remove(&key);
                        } else {
                            self.next.set(&key, &value, kind);
                        }
                    }
                    None => self.next.set(&key, &value, kind),
                }
            }
            Op::RemoveProp(k) | Op::ClearFlag(k) => {
                let key = match op {
                    Op::RemoveProp(_) => format!("p{k}"),
                    _ => format!("feature_flag.f{k}"),
                };
                self.touch();
                self.next.remove(&key);
                if let Some(s) = self.live() {
                    s.attrs.remove(&key);
                }
            }
            Op::Restart => {
                // Shutdown: timeouts first (nothing restarts), then suspended.
                self.expire(true);
                let suspended = match std::mem::replace(&mut self.phase, MPhase::Idle) {
                    MPhase::Live(s) if s.reported => Some(s),
                    _ => None,
                };
                // The next process: a new process knows no user and is in
                // the foreground; of what later sessions carry, only the
                // permanent attributes were saved (flags are set again by
                // each process).
                self.user = None;
                self.background = None;
                self.next = self.next.only(|k| k == MKind::Permanent);
                if let Some(s) = suspended {
                    self.phase = MPhase::Live(s);
                    self.expire(true);
                    self.touch();
                }
                if self.app && self.live().is_none() {
                    self.start();
                }
            }
        }
    }
}
