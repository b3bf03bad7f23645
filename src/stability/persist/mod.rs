//! Persistence (`OTEL_SESSION_PERSIST_PATH`): the app session survives the
//! process, so a restart continues it and a death is reported.
//!
//! The file holds the current session's id, start, last activity, error counts,
//! status and state (`active` while its process runs it, `suspended` after a
//! clean exit), the last reported id, and the ends not yet confirmed delivered.
//! On the next start:
//! - `suspended` within both timeouts: the same session continues (a
//!   `session.resume` transition);
//! - `suspended` but expired: its end is reported (reason `inactivity` or
//!   `max_duration`, dated at its last activity) and a new session starts;
//! - `active` (its process died: a kill, an OOM, `process::exit`): reported
//!   `abnormal` (`crashed` stays `crashed`), reason `lost`, dated at its last
//!   recorded activity; the next session's `previous_id` points at it;
//! - ends the last run could not confirm delivered are sent again.
//!
//! Writes are atomic (a temporary file in the same directory, then a rename;
//! mode 0600 on Unix), happen on transitions and at most every 5 s for activity,
//! and never on the span path. A corrupt, truncated, foreign or unreadable file
//! is one warning and a fresh session. **One file per app instance**: a second
//! process pointed at a file in use (held by an advisory lock next to it) warns
//! and runs without persistence rather than interleave its writes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::manager::SessionManagerBuilder;
use crate::core::persist::{
    Died, PendingEnd, Saved, SavedSession, SavedState, Store, StoreOpen, StoreSource,
    PENDING_ENDS_LIMIT,
};
use crate::core::session::{from_nanos, nanos};
use crate::model::session::{EndReason, SessionId, SessionStatus, User};
use crate::stability::crash::native::MarkerSettings;

use self::attributes::{from_v4, to_v4, AttributeV4};

mod attributes;

/// The format tag of the file this version writes. Version 2 added `paused`
/// and `panicked`, version 3 `hangs`, version 4 session attributes and the
/// permanent ones; files of versions 1 to 3 are read too. A file of a later
/// version is left alone.
pub(crate) const PERSIST_FORMAT: &str = "otel-session/session/4";
/// The format tags this version reads.
const READS: [&str; 4] = [
    "otel-session/session/1",
    "otel-session/session/2",
    "otel-session/session/3",
    PERSIST_FORMAT,
];
/// The prefix of every format tag of ours.
const FORMAT_PREFIX: &str = "otel-session/session/";

/// Only the format tag, read first (a later version may have other fields).
#[derive(Deserialize)]
struct Tag {
    format: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileV1 {
    format: String,
    #[serde(default)]
    session: Option<SessionV1>,
    #[serde(default)]
    last_reported: Option<String>,
    #[serde(default)]
    pending_ends: Vec<EndV1>,
    /// Since version 4.
    #[serde(default)]
    permanent: Vec<AttributeV4>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionV1 {
    id: String,
    #[serde(default)]
    previous_id: Option<String>,
    started_at_ns: u64,
    last_activity_ns: u64,
    handled: u64,
    unhandled: u64,
    status: String,
    state: String,
    /// Since version 2.
    #[serde(default)]
    paused: bool,
    /// Since version 2 (a version-1 file: a panic was counted if any
    /// unhandled error was).
    #[serde(default)]
    panicked: Option<bool>,
    /// Since version 3.
    #[serde(default)]
    hangs: u32,
    #[serde(default)]
    user: Option<UserV1>,
    /// Since version 4.
    #[serde(default)]
    attributes: Vec<AttributeV4>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserV1 {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndV1 {
    session: SessionV1,
    reason: String,
    ended_at_ns: u64,
}

fn status_of(s: &str) -> Option<SessionStatus> {
    [
        SessionStatus::Ok,
        SessionStatus::Errored,
        SessionStatus::Abnormal,
        SessionStatus::Crashed,
    ]
    .into_iter()
    .find(|st| st.as_str() == s)
}

fn reason_of(s: &str) -> Option<EndReason> {
    [
        EndReason::Manual,
        EndReason::Replaced,
        EndReason::Inactivity,
        EndReason::MaxDuration,
        EndReason::Background,
        EndReason::Shutdown,
        EndReason::Crash,
        EndReason::Lost,
        EndReason::Hang,
        EndReason::Request,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

/// An id read back: non-empty, at most 256 bytes, no control characters.
fn id_of(s: String) -> Result<SessionId, String> {
    if s.is_empty() || s.len() > 256 || s.chars().any(char::is_control) {
        return Err(format!("an id is not valid ({} bytes)", s.len()));
    }
    Ok(SessionId::from(s))
}

fn to_v1(s: &SavedSession) -> SessionV1 {
    SessionV1 {
        id: s.id.to_string(),
        previous_id: s.previous_id.as_ref().map(ToString::to_string),
        started_at_ns: nanos(s.started_at),
        last_activity_ns: nanos(s.last_activity),
        handled: s.handled,
        unhandled: s.unhandled,
        status: s.status.as_str().to_string(),
        state: match s.state {
            SavedState::Active => "active",
            SavedState::Suspended => "suspended",
        }
        .to_string(),
        paused: s.paused,
        panicked: Some(s.panicked),
        hangs: s.hangs,
        user: s.user.as_ref().map(|u| UserV1 {
            id: u.id.clone(),
            email: u.email.clone(),
            full_name: u.full_name.clone(),
        }),
        attributes: to_v4(&s.attributes),
    }
}

fn from_v1(s: SessionV1) -> Result<SavedSession, String> {
    let started_at = from_nanos(s.started_at_ns);
    let last_activity = from_nanos(s.last_activity_ns.max(s.started_at_ns));
    Ok(SavedSession {
        id: id_of(s.id)?,
        previous_id: s.previous_id.map(id_of).transpose()?,
        started_at,
        last_activity,
        handled: s.handled,
        unhandled: s.unhandled,
        status: status_of(&s.status).ok_or_else(|| format!("unknown status {:?}", s.status))?,
        state: match s.state.as_str() {
            "active" => SavedState::Active,
            "suspended" => SavedState::Suspended,
            other => return Err(format!("unknown state {other:?}")),
        },
        paused: s.paused,
        panicked: s.panicked.unwrap_or(s.unhandled > 0),
        hangs: s.hangs,
        user: s.user.map(|u| User {
            id: u.id,
            email: u.email,
            full_name: u.full_name,
        }),
        attributes: from_v4(s.attributes)?,
    })
}

/// Why a file's bytes are not a state this version can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// Corrupt, truncated, foreign: replaced by a fresh session's file.
    Damaged(String),
    /// Written by a later version of this crate: left as it is.
    Newer(String),
}

/// Reads a persistence file's bytes: the saved state, or why it is not one.
/// Never panics, whatever the bytes.
pub(crate) fn parse(bytes: &[u8]) -> Result<Saved, Unreadable> {
    let tag: Tag =
        serde_json::from_slice(bytes).map_err(|e| Unreadable::Damaged(json_reason(&e)))?;
    let shown = || tag.format.chars().take(64).collect::<String>();
    if !READS.contains(&tag.format.as_str()) {
        let later = tag
            .format
            .strip_prefix(FORMAT_PREFIX)
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v > 4);
        return Err(if later {
            Unreadable::Newer(shown())
        } else {
            Unreadable::Damaged(format!(
                "its format is {:?}, not {PERSIST_FORMAT:?}",
                shown()
            ))
        });
    }
    parse_known(bytes).map_err(Unreadable::Damaged)
}

/// Why the bytes are not a session file, in words (serde's own messages
/// read "expected value at line 1 column 1" or "invalid type: integer `-1`,
/// expected u64").
fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "it is cut short".to_string(),
        Category::Syntax => format!("it is not JSON (line {})", e.line()),
        Category::Data => format!(
            "a field is missing, unknown or of the wrong kind (line {})",
            e.line()
        ),
        Category::Io => "it could not be read".to_string(),
    }
}

fn parse_known(bytes: &[u8]) -> Result<Saved, String> {
    let file: FileV1 = serde_json::from_slice(bytes).map_err(|e| json_reason(&e))?;
    if file.pending_ends.len() > PENDING_ENDS_LIMIT {
        return Err(format!(
            "{} pending ends (at most {PENDING_ENDS_LIMIT})",
            file.pending_ends.len()
        ));
    }
    let mut pending_ends = Vec::new();
    for e in file.pending_ends {
        pending_ends.push(PendingEnd {
            reason: reason_of(&e.reason)
                .ok_or_else(|| format!("unknown end reason {:?}", e.reason))?,
            ended_at: from_nanos(e.ended_at_ns),
            session: from_v1(e.session)?,
        });
    }
    Ok(Saved {
        running: None,
        session: file.session.map(from_v1).transpose()?,
        last_reported: file.last_reported.map(id_of).transpose()?,
        pending_ends,
        permanent: from_v4(file.permanent)?,
    })
}

/// Writes the saved state as this version's file format.
pub(crate) fn render(saved: &Saved) -> Vec<u8> {
    let file = FileV1 {
        format: PERSIST_FORMAT.to_string(),
        session: saved.session.as_ref().map(to_v1),
        last_reported: saved.last_reported.as_ref().map(ToString::to_string),
        pending_ends: saved
            .pending_ends
            .iter()
            .map(|p| EndV1 {
                session: to_v1(&p.session),
                reason: p.reason.as_str().to_string(),
                ended_at_ns: nanos(p.ended_at),
            })
            .collect(),
        permanent: to_v4(&saved.permanent),
    };
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

/// A persistence file.
#[derive(Debug)]
pub(crate) struct FileStore {
    path: PathBuf,
    /// Held for the process's life: the advisory lock that keeps a second
    /// process off this file.
    _lock: File,
    warned_write: AtomicBool,
    /// The file was written by a later version: it is left as it is.
    frozen: AtomicBool,
    /// How the last run died, from its crash marker (taken at restore).
    died: std::sync::Mutex<Option<Died>>,
}

impl FileStore {
    /// Opens `path` for this process, or says (once) why it cannot; reads
    /// the last run's crash marker and arms this run's (see
    /// `stability::crash::native`).
    pub(crate) fn open(path: &Path, how: &StoreOpen) -> Option<FileStore> {
        let lock_path = sibling(path, ".lock");
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                crate::warn::stderr(format_args!(
                    "OTEL_SESSION_PERSIST_PATH={}: cannot create {} ({e}); sessions are not \
                     persisted (check the directory exists and is writable)",
                    path.display(),
                    lock_path.display()
                ));
                return None;
            }
        };
        if lock.try_lock().is_err() {
            crate::warn::stderr(format_args!(
                "OTEL_SESSION_PERSIST_PATH={} is in use by another process; sessions of this \
                 process are not persisted. Give each app instance its own file.",
                path.display()
            ));
            return None;
        }
        let died = crate::stability::crash::native::take_and_arm(
            path,
            &MarkerSettings {
                arm: how.crash.native,
                version: how.version.clone(),
                instance_id: how.instance_id.clone(),
                hang_threshold: how.crash.hang_threshold,
            },
        );
        Some(FileStore {
            path: path.to_path_buf(),
            _lock: lock,
            warned_write: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            died: std::sync::Mutex::new(died),
        })
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

impl Store for FileStore {
    fn load(&self) -> Option<Saved> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                crate::warn::stderr(format_args!(
                    "OTEL_SESSION_PERSIST_PATH={}: cannot read it ({e}); starting a fresh session",
                    self.path.display()
                ));
                return None;
            }
        };
        match parse(&bytes) {
            Ok(saved) => Some(saved),
            Err(Unreadable::Damaged(why)) => {
                crate::warn::stderr(format_args!(
                    "OTEL_SESSION_PERSIST_PATH={} is not a session file this version can read \
                     ({why}); starting a fresh session (the file is replaced)",
                    self.path.display()
                ));
                None
            }
            Err(Unreadable::Newer(format)) => {
                self.frozen.store(true, Ordering::Relaxed);
                crate::warn::stderr(format_args!(
                    "OTEL_SESSION_PERSIST_PATH={} was written by a later version of otel-session \
                     (format {format:?}; this one writes {PERSIST_FORMAT:?}); it is left as it \
                     is and this process's sessions are not persisted (upgrade otel-session, or \
                     give this version its own file)",
                    self.path.display()
                ));
                None
            }
        }
    }

    fn take_died(&self) -> Option<Died> {
        self.died.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn save(&self, saved: &Saved) {
        if self.frozen.load(Ordering::Relaxed) {
            return;
        }
        crate::stability::crash::native::session_saved(
            saved.running.as_ref().map(|id| id.as_str()),
        );
        if let Err(e) = write_atomically(&self.path, &render(saved)) {
            crate::warn::once(
                &self.warned_write,
                format_args!(
                    "OTEL_SESSION_PERSIST_PATH={}: cannot write it ({e}); the session may not \
                     survive this process (reported once)",
                    self.path.display()
                ),
            );
        }
    }
}

/// Writes `bytes` to a temporary file next to `path` (mode 0600), syncs it,
/// and renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = sibling(path, &format!(".tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

impl SessionManagerBuilder {
    /// Persists the app session in the file at `path` (see the module docs of
    /// persistence in the README: one file per app instance), opened at
    /// [`build`](Self::build). If the file cannot be used, a warning says why and
    /// sessions live in memory only. Request mode persists nothing: there the
    /// file is not opened, and a warning says so.
    pub fn with_persistence(self, path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        self.with_store(StoreSource {
            what: path.display().to_string(),
            open: Box::new(move |how| {
                FileStore::open(&path, how).map(|store| Arc::new(store) as Arc<dyn Store>)
            }),
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
