//! Native crashes and deaths during a hang, found by the next start: the
//! crash marker file next to the session file (`<session file>.crash`, see
//! `marker`), read when the session file is opened and armed again for this
//! run (Unix: `signals` writes it from a fatal signal's handler; the hang
//! watchdog marks a hang in progress).
//!
//! What the last run's marker says becomes a [`Died`]: its session ends
//! `crash` (`crashed`) or `hang` (`abnormal`), and an `app.crash` (or hang)
//! record names the signal, the thread, the time and the dead instance
//! (`service.instance.id`, `service.version`, `process.pid`). A marker that is
//! not one (garbage, another program's file) is one warning and ignored.
//!
//! Windows: no marker is written (no signal handler); a process that dies
//! natively is reported `abnormal`/`lost`, as without this module.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;

use crate::core::persist::Died;
use crate::model::attr;
use crate::model::exception::Exception;
use crate::model::session::EndReason;

use super::marker::{self, Death, Identity, Marker};

/// Where the crash marker of the session file `path` lives.
pub(crate) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".crash");
    path.with_file_name(name)
}

/// What opening the session file needs to know about crash markers.
#[derive(Debug, Clone, Default)]
pub(crate) struct MarkerSettings {
    /// Arm a marker for this run (`OTEL_SESSION_NATIVE_CRASHES`).
    pub(crate) arm: bool,
    /// This instance's `service.version` and `service.instance.id`.
    pub(crate) version: Option<String>,
    pub(crate) instance_id: Option<String>,
    /// The hang threshold (for the report of a death during a hang).
    pub(crate) hang_threshold: Option<Duration>,
}

/// Reads the last run's marker next to the session file `path` (how it
/// died, if it says) and arms a fresh one for this run.
pub(crate) fn take_and_arm(path: &Path, settings: &MarkerSettings) -> Option<Died> {
    let file = marker_path(path);
    let died = match std::fs::read(&file) {
        Ok(bytes) => match marker::parse(&bytes) {
            Ok(m) => died_of(m, settings.hang_threshold),
            Err(why) => {
                crate::warn::stderr(format_args!(
                    "the crash marker {} is not one this version can read ({why}); it is \
                     ignored and replaced",
                    file.display()
                ));
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            crate::warn::stderr(format_args!(
                "the crash marker {} cannot be read ({e}); a native crash of the last run \
                 (if any) is reported as lost",
                file.display()
            ));
            None
        }
    };
    if settings.arm {
        arm(&file, settings);
    }
    died
}

#[cfg(unix)]
fn arm(file: &Path, settings: &MarkerSettings) {
    use std::os::unix::fs::OpenOptionsExt as _;
    let identity = Identity {
        pid: std::process::id(),
        started_at: SystemTime::now(),
        instance_id: settings.instance_id.clone(),
        version: settings.version.clone(),
    };
    let armed = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(file)
        .and_then(|f| super::signals::arm(f, &identity));
    if let Err(e) = armed {
        crate::warn::stderr(format_args!(
            "native crashes are not recorded: the crash marker {} cannot be written ({e}); a \
             segfault or abort is reported as a lost session (make its directory writable, or \
             set OTEL_SESSION_NATIVE_CRASHES=false)",
            file.display()
        ));
    }
}

#[cfg(not(unix))]
fn arm(_file: &Path, _settings: &MarkerSettings) {
    crate::warn::stderr(format_args!(
        "native crashes are not recorded on this platform (no signal handler outside \
         Unix): a native crash is reported as a lost session (set \
         OTEL_SESSION_NATIVE_CRASHES=false to silence this)"
    ));
}

/// A hang began at `since` (the watchdog): the marker says so until it ends.
pub(crate) fn hang_started(since: SystemTime) {
    #[cfg(unix)]
    {
        let (offset, bytes) = marker::hang_block(since);
        // Disarmed (no persistence) or recording a crash: nothing to say.
        let _ = super::signals::write_at(offset, &bytes);
    }
    #[cfg(not(unix))]
    let _ = since;
}

/// The hang is over.
pub(crate) fn hang_ended() {
    #[cfg(unix)]
    {
        let (offset, bytes) = marker::clear_hang();
        let _ = super::signals::write_at(offset, &bytes);
    }
}

/// The dead instance, as attributes of the next start's record.
fn identity_attributes(id: &Identity) -> Vec<KeyValue> {
    let mut a = vec![KeyValue::new(attr::PROCESS_PID, i64::from(id.pid))];
    if let Some(v) = &id.version {
        a.push(KeyValue::new(attr::SERVICE_VERSION, v.clone()));
    }
    if let Some(i) = &id.instance_id {
        a.push(KeyValue::new(attr::SERVICE_INSTANCE_ID, i.clone()));
    }
    a
}

/// The session file was saved while session `id` was running (`None`: no
/// reported session is): the marker names it, so a native crash is reported
/// in it (and never in an earlier one).
pub(crate) fn session_saved(id: Option<&str>) {
    #[cfg(unix)]
    {
        let (offset, bytes) = marker::session_block(id);
        let _ = super::signals::write_at(offset, &bytes);
    }
    #[cfg(not(unix))]
    let _ = id;
}

/// What a marker says about how its process died.
pub(crate) fn died_of(m: Marker, hang_threshold: Option<Duration>) -> Option<Died> {
    let died = match m.death? {
        Death::Signal {
            signal,
            code,
            fault_address,
            at,
            thread_id,
            thread_name,
        } => {
            let name = marker::signal_name(signal);
            let mut extra = vec![KeyValue::new(attr::CRASH_SIGNAL, i64::from(signal))];
            let mut message = format!("the process died of {name} (signal {signal}");
            if code > 0 && fault_address != 0 {
                let address = format!("{fault_address:#x}");
                message.push_str(&format!(", fault at {address}"));
                extra.push(KeyValue::new(attr::CRASH_FAULT_ADDRESS, address));
            } else if code <= 0 {
                message.push_str(", sent by raise, kill or abort");
            }
            message.push(')');
            extra.extend(identity_attributes(&m.identity));
            Died {
                reason: EndReason::Crash,
                report: Exception {
                    event_name: attr::EVENT_APP_CRASH,
                    ty: name.to_string(),
                    message,
                    stacktrace: None,
                    location: None,
                    thread_name,
                    thread_id: Some(thread_id),
                    fatal: true,
                    at,
                    span: None,
                    extra,
                    session_id: None,
                },
            }
        }
        Death::Hang { since } => {
            let threshold = hang_threshold.unwrap_or(Duration::from_secs(5));
            let mut report = super::hang::report(since, None, threshold);
            report.extra.extend(identity_attributes(&m.identity));
            Died {
                reason: EndReason::Hang,
                report,
            }
        }
    };
    let mut died = died;
    died.report.session_id = m.session_id;
    Some(died)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            pid: 42,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            instance_id: Some("instance-1".into()),
            version: Some("1.2.3".into()),
        }
    }

    #[test]
    fn a_segfault_marker_is_a_crash_naming_the_signal_the_fault_and_the_instance() {
        let died = died_of(
            Marker {
                death: Some(Death::Signal {
                    signal: 11,
                    code: 1,
                    fault_address: 0x10,
                    at: SystemTime::UNIX_EPOCH + Duration::from_secs(2_000),
                    thread_id: 7,
                    thread_name: Some("render".into()),
                }),
                identity: identity(),
                session_id: Some("dead-session".into()),
            },
            None,
        )
        .unwrap();
        assert_eq!(died.reason, EndReason::Crash);
        let r = died.report;
        assert_eq!(r.event_name, "app.crash");
        assert_eq!(r.ty, "SIGSEGV");
        assert_eq!(
            r.message,
            "the process died of SIGSEGV (signal 11, fault at 0x10)"
        );
        assert!(r.fatal);
        let attrs = r.attributes();
        let get = |k: &str| {
            attrs
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(get("service.version").as_deref(), Some("1.2.3"));
        assert_eq!(get("service.instance.id").as_deref(), Some("instance-1"));
        assert_eq!(get("process.pid").as_deref(), Some("42"));
        assert_eq!(get("thread.name").as_deref(), Some("render"));
        assert_eq!(
            get("otel_session.crash.fault_address").as_deref(),
            Some("0x10")
        );
        assert_eq!(r.session_id.as_deref(), Some("dead-session"));
    }

    #[test]
    fn an_armed_marker_says_nothing_and_a_hang_marker_is_a_hang() {
        let clean = Marker {
            death: None,
            identity: identity(),
            session_id: None,
        };
        assert_eq!(died_of(clean, None), None);
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(3_000);
        let died = died_of(
            Marker {
                death: Some(Death::Hang { since }),
                identity: identity(),
                session_id: Some("dead-session".into()),
            },
            Some(Duration::from_secs(2)),
        )
        .unwrap();
        assert_eq!(died.reason, EndReason::Hang);
        assert_eq!(died.report.at, since);
        assert_eq!(died.report.event_name, "app.jank");
    }

    #[test]
    fn garbage_in_the_marker_is_ignored_and_a_fresh_one_armed() {
        let dir = std::env::temp_dir().join(format!("otel-session-marker-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let session = dir.join("s.json");
        std::fs::write(marker_path(&session), b"not a marker at all").unwrap();
        let settings = MarkerSettings::default(); // not armed: no handler here
        assert_eq!(take_and_arm(&session, &settings), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
