//! The crash marker file's binary layout: the bytes to write, their parsing
//! (no I/O; portable safe Rust, of `libc` only the signal numbers). Written by
//! `signals` ([`crash_record`] allocates nothing) and the hang watchdog.
//!
//! Layout: exactly [`MARKER_LEN`] (512) bytes, integers little-endian, the
//! bytes not listed (65..128, 399..512) reserved (zero):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0      | 8    | magic `b"OTSMARK1"` |
//! | 8      | 8    | **hang block**: hang start, ns since the Unix epoch (u64; 0 = none) |
//! | 16     | 1    | state: 0 = armed (clean), 1 = signal crash, 2 = hang in progress |
//! | 17     | 4    | **crash block**: signal number (i32) |
//! | 21     | 4    | `si_code` (i32) |
//! | 25     | 8    | fault address (u64; 0 when not a fault) |
//! | 33     | 8    | time of the crash, ns since the Unix epoch (u64) |
//! | 41     | 8    | OS thread id of the crashing thread (u64) |
//! | 49     | 16   | its thread name, NUL-padded |
//! | 128    | 4    | **identity block**: pid (u32) |
//! | 132    | 8    | process start time, ns since the Unix epoch (u64) |
//! | 140    | 1+64 | `service.instance.id`: length (u8, ≤ 64), UTF-8, zero-padded |
//! | 205    | 1+64 | `service.version`: length (u8, ≤ 64), UTF-8, zero-padded |
//! | 270    | 1+128| **session block**: the app session's id, length (u8, ≤ 128), UTF-8 |
//!
//! Each writer does one contiguous `pwrite` ending or starting with the state:
//! the signal handler bytes 16..65, the watchdog 8..17. The identity block is
//! written once, at arming; the session block whenever the session file is
//! saved with another session (an id over 128 bytes is not kept). An empty string is stored as absent (`None`). The
//! thread name is read lossily (the kernel may cut it inside a character).

#[cfg(unix)]
use libc::{SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Size of the marker file, in bytes.
pub(crate) const MARKER_LEN: usize = 512;
/// The first 8 bytes of every marker.
const MAGIC: [u8; 8] = *b"OTSMARK1";
/// Offset of the hang block (hang start, u64 ns).
const HANG_OFFSET: usize = 8;
/// Offset of the state byte, where the signal handler's single `pwrite` of a
/// [`crash_record`] starts.
pub(crate) const STATE_OFFSET: usize = 16;
/// State: armed, the process has not died (yet).
const STATE_ARMED: u8 = 0;
/// State: the process died of a signal (the crash block is filled).
const STATE_SIGNAL: u8 = 1;
/// State: a hang is in progress (the hang block is filled).
const STATE_HANG: u8 = 2;
/// Size of the thread name field (the Linux limit, NUL included).
pub(crate) const THREAD_NAME_LEN: usize = 16;
/// Length of the signal handler's write: state byte and crash block.
pub(crate) const CRASH_RECORD_LEN: usize = 1 + 4 + 4 + 8 + 8 + 8 + THREAD_NAME_LEN;
/// Offset of the identity block: pid, start time, instance id, version.
const IDENTITY_OFFSET: usize = 128;
/// Longest `service.instance.id` / `service.version` kept, in bytes.
const MAX_STRING: usize = 64;
/// Offset of the session block (the session id, length-prefixed).
const SESSION_OFFSET: usize = 270;
/// Longest session id kept, in bytes.
const MAX_SESSION_ID: usize = 128;

/// Who wrote the marker: enough to match it to the session file's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Process id.
    pub(crate) pid: u32,
    /// When the process started.
    pub(crate) started_at: SystemTime,
    /// `service.instance.id`, at most 64 bytes kept.
    pub(crate) instance_id: Option<String>,
    /// `service.version`, at most 64 bytes kept.
    pub(crate) version: Option<String>,
}

/// How the process died, when the marker says it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Death {
    /// A fatal signal (the first one, if several).
    Signal {
        /// Signal number (see [`signal_name`]).
        signal: i32,
        /// `si_code`: > 0 from the kernel (a fault), ≤ 0 sent (`kill`, `abort`).
        code: i32,
        /// Faulting address (0 when not a fault).
        fault_address: u64,
        /// When the signal was handled.
        at: SystemTime,
        /// OS thread id of the thread that received it.
        thread_id: u64,
        /// That thread's name, if it had one.
        thread_name: Option<String>,
    },
    /// A hang was in progress when the process went away.
    Hang {
        /// When the hang started.
        since: SystemTime,
    },
}

/// A parsed marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// `None`: the process was armed and had not died (or is still running).
    pub(crate) death: Option<Death>,
    /// Who wrote the marker.
    pub(crate) identity: Identity,
    /// The app session its process was running when last saved, if any.
    pub(crate) session_id: Option<String>,
}

/// Nanoseconds since the Unix epoch (0 before it, `u64::MAX` past year 2554).
pub(crate) fn to_nanos(time: SystemTime) -> u64 {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes consecutive fields into a buffer (offsets are in-range constants).
struct Writer<'a>(&'a mut [u8], usize);

impl Writer<'_> {
    /// Writes `bytes` at the cursor and moves past them.
    fn put(&mut self, bytes: &[u8]) -> &mut Self {
        self.0[self.1..self.1 + bytes.len()].copy_from_slice(bytes);
        self.1 += bytes.len();
        self
    }

    /// Writes a length-prefixed string field (cut at a char boundary).
    fn string(&mut self, s: Option<&str>) -> &mut Self {
        let s = s.unwrap_or("");
        let len = (0..=s.len().min(MAX_STRING))
            .rev()
            .find(|&i| s.is_char_boundary(i));
        let s = &s[..len.unwrap_or(0)];
        // `s.len() <= MAX_STRING` (64): fits in a u8.
        self.put(&[s.len() as u8]).put(s.as_bytes());
        self.1 += MAX_STRING - s.len();
        self
    }
}

/// Reads consecutive fields from a marker (its length is checked first).
struct Reader<'a>(&'a [u8], usize);

impl Reader<'_> {
    /// The next `N` bytes.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        self.1 += N;
        self.0[self.1 - N..self.1].try_into().unwrap_or([0; N])
    }

    /// The next time (u64 ns since the epoch; the epoch if not representable).
    fn time(&mut self) -> SystemTime {
        let nanos = Duration::from_nanos(u64::from_le_bytes(self.take()));
        UNIX_EPOCH.checked_add(nanos).unwrap_or(UNIX_EPOCH)
    }

    /// The next length-prefixed string field.
    fn string(&mut self, what: &str) -> Result<Option<String>, String> {
        let [len] = self.take();
        let bytes: [u8; MAX_STRING] = self.take();
        match bytes.get(..usize::from(len)).map(std::str::from_utf8) {
            None => Err(format!("{what} length {len} is over {MAX_STRING} bytes")),
            Some(Err(_)) => Err(format!("{what} is not UTF-8")),
            Some(Ok(s)) => Ok((!s.is_empty()).then(|| s.to_owned())),
        }
    }
}

/// The contents of an armed (clean) marker file for `identity`: magic, state
/// 0, no hang, no crash; strings over 64 bytes cut at a char boundary.
pub(crate) fn armed(identity: &Identity) -> [u8; MARKER_LEN] {
    let mut buf = [0; MARKER_LEN];
    Writer(&mut buf, 0).put(&MAGIC);
    Writer(&mut buf, IDENTITY_OFFSET)
        .put(&identity.pid.to_le_bytes())
        .put(&to_nanos(identity.started_at).to_le_bytes())
        .string(identity.instance_id.as_deref())
        .string(identity.version.as_deref());
    buf
}

/// The state byte (1) and crash block, to be written at
/// [`STATE_OFFSET`] in one `pwrite`. No allocation, async-signal-safe.
pub(crate) fn crash_record(
    signal: i32,
    code: i32,
    fault_address: u64,
    at_nanos: u64,
    thread_id: u64,
    thread_name: &[u8; THREAD_NAME_LEN],
) -> [u8; CRASH_RECORD_LEN] {
    let mut buf = [0; CRASH_RECORD_LEN];
    Writer(&mut buf, 0)
        .put(&[STATE_SIGNAL])
        .put(&signal.to_le_bytes())
        .put(&code.to_le_bytes())
        .put(&fault_address.to_le_bytes())
        .put(&at_nanos.to_le_bytes())
        .put(&thread_id.to_le_bytes())
        .put(thread_name);
    buf
}

/// What the watchdog writes when a hang starts: `(offset, bytes)` of the
/// hang block and the state byte (2).
pub(crate) fn hang_block(since: SystemTime) -> (u64, Vec<u8>) {
    let nanos = to_nanos(since).to_le_bytes();
    (HANG_OFFSET as u64, [&nanos[..], &[STATE_HANG]].concat())
}

/// What the watchdog writes when the hang is over: `(offset, bytes)` zeroing
/// the hang block and setting the state back to 0 (armed).
pub(crate) fn clear_hang() -> (u64, Vec<u8>) {
    let bytes = vec![0, 0, 0, 0, 0, 0, 0, 0, STATE_ARMED];
    (HANG_OFFSET as u64, bytes)
}

/// Parses a marker file's contents. Never panics; `Err` says in plain words
/// why the bytes are not a marker.
pub(crate) fn parse(bytes: &[u8]) -> Result<Marker, String> {
    if bytes.len() != MARKER_LEN {
        let reason = format!("crash marker is {} bytes, not {MARKER_LEN}", bytes.len());
        return Err(reason);
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err("not a crash marker (wrong magic)".to_owned());
    }
    let mut read = Reader(bytes, IDENTITY_OFFSET);
    let identity = Identity {
        pid: u32::from_le_bytes(read.take()),
        started_at: read.time(),
        instance_id: read.string("service.instance.id")?,
        version: read.string("service.version")?,
    };
    let death = match bytes[STATE_OFFSET] {
        STATE_ARMED => None,
        STATE_SIGNAL => {
            let mut read = Reader(bytes, STATE_OFFSET + 1);
            let signal = i32::from_le_bytes(read.take());
            let code = i32::from_le_bytes(read.take());
            let fault_address = u64::from_le_bytes(read.take());
            let at = read.time();
            let thread_id = u64::from_le_bytes(read.take());
            let name: [u8; THREAD_NAME_LEN] = read.take();
            let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[]));
            Some(Death::Signal {
                signal,
                code,
                fault_address,
                at,
                thread_id,
                thread_name: (!name.is_empty()).then(|| name.into_owned()),
            })
        }
        STATE_HANG => Some(Death::Hang {
            since: Reader(bytes, HANG_OFFSET).time(),
        }),
        other => return Err(format!("unknown crash marker state {other}")),
    };
    let len = usize::from(bytes[SESSION_OFFSET]);
    let session_id = match bytes
        .get(SESSION_OFFSET + 1..SESSION_OFFSET + 1 + len)
        .filter(|_| len <= MAX_SESSION_ID)
        .map(std::str::from_utf8)
    {
        None => {
            return Err(format!(
                "session id length {len} is over {MAX_SESSION_ID} bytes"
            ))
        }
        Some(Err(_)) => return Err("the session id is not UTF-8".to_owned()),
        Some(Ok(id)) => (!id.is_empty()).then(|| id.to_owned()),
    };
    Ok(Marker {
        death,
        identity,
        session_id,
    })
}

/// What the session file's saves write when its session changes: `(offset,
/// bytes)` of the session block naming `id`; empty (no session) for `None`
/// or an id over 128 bytes, which the marker cannot name.
pub(crate) fn session_block(id: Option<&str>) -> (u64, Vec<u8>) {
    let mut bytes = vec![0; 1 + MAX_SESSION_ID];
    if let Some(id) = id.filter(|id| id.len() <= MAX_SESSION_ID) {
        bytes[0] = id.len() as u8; // ≤ MAX_SESSION_ID (128)
        bytes[1..=id.len()].copy_from_slice(id.as_bytes());
    }
    (SESSION_OFFSET as u64, bytes)
}

/// The fatal signals' numbers: libc's on Unix, Linux's elsewhere.
#[cfg(unix)]
const SIGNAL_NUMBERS: [i32; 5] = [SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT];
/// The fatal signals' numbers: libc's on Unix, Linux's elsewhere.
#[cfg(not(unix))]
const SIGNAL_NUMBERS: [i32; 5] = [11, 7, 4, 8, 6];

/// The usual name of a fatal signal ("SIGSEGV", …), else "signal".
pub(crate) fn signal_name(signal: i32) -> &'static str {
    let names = ["SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT"];
    let found = SIGNAL_NUMBERS.iter().position(|&number| number == signal);
    found.map_or("signal", |index| names[index])
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity() -> Identity {
        Identity {
            pid: 4242,
            started_at: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            instance_id: Some("4f1c".to_owned()),
            version: Some("1.2.3".to_owned()),
        }
    }

    /// `buf` with `bytes` written at `offset`, as by `pwrite`.
    fn write(mut buf: [u8; MARKER_LEN], offset: u64, bytes: &[u8]) -> [u8; MARKER_LEN] {
        Writer(&mut buf, offset as usize).put(bytes);
        buf
    }

    /// What `parse` says of a crash record with `name`.
    fn crash(name: &[u8], at: SystemTime) -> Result<Marker, String> {
        let mut field = [0; THREAD_NAME_LEN];
        field[..name.len()].copy_from_slice(name);
        let record = crash_record(11, 1, 0xdead_beef, to_nanos(at), 77, &field);
        parse(&write(armed(&identity()), STATE_OFFSET as u64, &record))
    }

    #[test]
    fn each_state_round_trips() {
        assert_eq!((STATE_OFFSET, CRASH_RECORD_LEN), (16, 49)); // 16..65 < 128
        let clean = parse(&armed(&identity())).unwrap();
        assert_eq!((clean.death, clean.identity), (None, identity()));
        let at = UNIX_EPOCH + Duration::from_nanos(1_800_000_000_000_000_001);
        let marker = crash(b"main", at).unwrap();
        let death = Death::Signal {
            signal: 11,
            code: 1,
            fault_address: 0xdead_beef,
            at,
            thread_id: 77,
            thread_name: Some("main".to_owned()),
        };
        assert_eq!((marker.death, marker.identity), (Some(death), identity()));
        let since = UNIX_EPOCH + Duration::from_nanos(1_750_000_000_000_000_000);
        let (offset, bytes) = hang_block(since);
        assert_eq!((offset, bytes.len()), (8, 9)); // 8..17: the state is last
        let hung = write(armed(&identity()), offset, &bytes);
        assert_eq!(parse(&hung).unwrap().death, Some(Death::Hang { since }));
        let (offset, bytes) = clear_hang();
        assert_eq!(write(hung, offset, &bytes), armed(&identity()));
    }

    #[test]
    fn thread_and_signal_names() {
        let name = |bytes: &[u8]| match crash(bytes, UNIX_EPOCH).unwrap().death {
            Some(Death::Signal { thread_name, .. }) => thread_name,
            other => panic!("{other:?}"),
        };
        assert_eq!(name(&[b'x'; 16]).as_deref(), Some("xxxxxxxxxxxxxxxx"));
        assert_eq!(name(b""), None);
        // Cut by the kernel inside a character: read lossily, not rejected.
        assert_eq!(name(&[b'a', 0xc3]).as_deref(), Some("a\u{fffd}"));
        let names = [11, 6, 4, 8, 0].map(signal_name);
        assert_eq!(names, ["SIGSEGV", "SIGABRT", "SIGILL", "SIGFPE", "signal"]);
    }

    #[test]
    fn garbage_is_an_error() {
        let good = armed(&identity());
        assert!(parse(&[]).unwrap_err().contains("0 bytes"));
        assert!(parse(&good[..511]).unwrap_err().contains("511 bytes"));
        assert!(parse(&[good.as_slice(), &[0]].concat()).is_err());
        for (offset, byte, reason) in [
            (0, b'X', "wrong magic"),
            (16, 3, "state 3"),
            (140, 65, "service.instance.id length 65 is over 64"),
            (206, 0xff, "service.version is not UTF-8"),
        ] {
            let error = parse(&write(good, offset, &[byte])).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..1100),
            rest in proptest::collection::vec(any::<u8>(), MARKER_LEN - MAGIC.len()),
        ) {
            let _ = parse(&bytes);
            // Past the magic too, with each state.
            let mut bytes = [MAGIC.as_slice(), &rest].concat();
            bytes[STATE_OFFSET] %= 4;
            let _ = parse(&bytes);
        }

        #[test]
        fn armed_parses_back(
            pid: u32,
            nanos: u64,
            instance_id in proptest::option::of(".{0,80}"),
            version in proptest::option::of(".{0,80}"),
        ) {
            let started_at = UNIX_EPOCH + Duration::from_nanos(nanos);
            let sent = [instance_id.clone(), version.clone()];
            let identity = Identity { pid, started_at, instance_id, version };
            let marker = parse(&armed(&identity)).unwrap();
            prop_assert_eq!(marker.death, None);
            prop_assert_eq!((marker.identity.pid, marker.identity.started_at), (pid, started_at));
            let parsed = [marker.identity.instance_id, marker.identity.version];
            for (sent, got) in sent.into_iter().zip(parsed) {
                let (sent, got) = (sent.unwrap_or_default(), got.unwrap_or_default());
                if sent.len() <= MAX_STRING {
                    prop_assert_eq!(got, sent);
                } else {
                    // Cut at the last char boundary at or before 64 bytes.
                    prop_assert!(sent.starts_with(&got) && got.len() > MAX_STRING - 4);
                    prop_assert!(got.len() <= MAX_STRING);
                }
            }
        }
    }
}
