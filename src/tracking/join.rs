//! Joining sessions across processes through W3C baggage.
//!
//! Incoming: with `OTEL_SESSION_PROPAGATE=true` the request layer reads
//! `baggage: session.id=<id>` and stamps that id on the request's telemetry (a
//! *joined* session: the caller's, never started, ended, counted or changed
//! here). Only ids of at most [`MAX_JOINED_ID_LEN`] bytes of `[A-Za-z0-9_-]` are
//! accepted (a UUID fits); anything else is ignored with one warning, so a
//! client cannot put arbitrary text into every span of a server.
//!
//! Outgoing: [`SessionBaggage`] adds `session.id` to the baggage of requests to
//! the hosts you allow-list, and to no other: baggage travels to every
//! downstream service, third parties included.

use std::fmt;
use std::sync::atomic::AtomicBool;

use opentelemetry::Context;

use crate::core::global::global_manager;
use crate::core::scope::Scope;
use crate::model::attr;
use crate::model::session::SessionId;

/// The longest session id accepted from a caller, in bytes.
pub const MAX_JOINED_ID_LEN: usize = 64;

/// A `session.id` in incoming baggage that is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session.id in incoming baggage ({shown}, {len} bytes) is not accepted: a joined id \
     is at most 64 bytes of A-Z a-z 0-9 _ -; it was ignored"
)]
pub struct MalformedSessionId {
    shown: String,
    len: usize,
}

fn accepted(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_JOINED_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn percent_decode(raw: &str) -> Option<String> {
    // A malformed escape stays as it is, and `%` is not an accepted character.
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The baggage member carrying `id`, if a joining server would accept it.
fn member_of(id: &SessionId) -> Option<String> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if accepted(id.as_str()) {
        return Some(format!("{}={}", attr::SESSION_ID, id));
    }
    crate::warn::once(
        &WARNED,
        format_args!(
            "session id {:?} is not added to outgoing baggage: a joining server accepts only \
             ids of at most {MAX_JOINED_ID_LEN} bytes of [A-Za-z0-9_-] (UUIDs fit); make your \
             IdGenerator return such ids to propagate sessions (reported once)",
            id.as_str().chars().take(80).collect::<String>()
        ),
    );
    None
}

/// The `session.id` member of a W3C `baggage` header value, if it has one.
///
/// ```
/// use otel_session::session_id_from_baggage;
/// let id = session_id_from_baggage("userId=7, session.id=4f1c0a9e-77b2;ttl=30").unwrap();
/// assert_eq!(id.unwrap().as_str(), "4f1c0a9e-77b2");
/// assert!(session_id_from_baggage("session.id=<script>").is_err());
/// assert_eq!(session_id_from_baggage("userId=7").unwrap(), None);
/// ```
///
/// # Errors
/// [`MalformedSessionId`] when the member is there but not an accepted id.
pub fn session_id_from_baggage(header: &str) -> Result<Option<SessionId>, MalformedSessionId> {
    for member in header.split(',') {
        let value = member.split(';').next().unwrap_or_default();
        let Some((key, raw)) = value.split_once('=') else {
            continue;
        };
        if key.trim() != attr::SESSION_ID {
            continue;
        }
        let raw = raw.trim();
        return match percent_decode(raw) {
            Some(id) if accepted(&id) => Ok(Some(SessionId::from(id))),
            _ => Err(MalformedSessionId {
                shown: format!("{:?}", raw.chars().take(80).collect::<String>()),
                len: raw.len(),
            }),
        };
    }
    Ok(None)
}

/// Reports a malformed incoming id once per manager.
pub(crate) fn warn_malformed(flag: &AtomicBool, e: &MalformedSessionId) {
    crate::warn::once(
        flag,
        format_args!("{e} (reported once; later ones are ignored silently)"),
    );
}

/// The session id telemetry created here carries: the context's (a joined or
/// request session), else the global manager's current app session (unless it
/// is paused or discarded).
pub fn stamped_session_id() -> Option<SessionId> {
    // Inside a scope (a request, a joined session) the scope decides, even when
    // it stamps nothing: the app session does not apply there.
    let scoped = Context::map_current(|cx| {
        Scope::of(cx).map(|s| s.stamp.as_ref().map(|v| SessionId::from(v.as_str())))
    });
    match scoped {
        Some(id) => id,
        None => global_manager().and_then(|m| m.shared.core.stamp.session().map(|s| s.id.clone())),
    }
}

/// Adds `session.id` to the W3C baggage of outgoing requests — only to the hosts
/// allow-listed here.
///
/// ```
/// use otel_session::SessionBaggage;
/// let baggage = SessionBaggage::new()
///     .allow_host("api.example.com")
///     .allow_host("*.internal.example.com");
/// assert!(baggage.allows("api.example.com"));
/// assert!(baggage.allows("billing.internal.example.com:8443"));
/// assert!(!baggage.allows("cdn.thirdparty.net"));
/// ```
///
/// With reqwest (the `HeaderMap` helper needs feature `http`, on by default
/// through `tower`):
///
/// ```no_run
/// # #[cfg(feature = "http")]
/// async fn call(
///     client: &reqwest::Client,
///     baggage: &otel_session::SessionBaggage,
///     url: &str,
/// ) -> Result<reqwest::Response, reqwest::Error> {
///     let mut request = client.get(url).build()?;
///     let host = request.url().host_str().unwrap_or_default().to_owned();
///     baggage.inject(&host, request.headers_mut());
///     client.execute(request).await
/// }
/// ```
#[derive(Clone, Default)]
pub struct SessionBaggage {
    hosts: Vec<String>,
}

impl fmt::Debug for SessionBaggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBaggage")
            .field("hosts", &self.hosts)
            .finish()
    }
}

fn bare_host(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

impl SessionBaggage {
    /// Allows no host yet.
    pub fn new() -> Self {
        SessionBaggage::default()
    }

    /// Allows `pattern`: a host name (`api.example.com`, case-insensitive) or a
    /// wildcard for its subdomains (`*.example.com`, which does not match
    /// `example.com` itself).
    pub fn allow_host(mut self, pattern: impl Into<String>) -> Self {
        self.hosts.push(pattern.into().trim().to_ascii_lowercase());
        self
    }

    /// `true` if requests to `host` (a port is ignored) may carry the session.
    pub fn allows(&self, host: &str) -> bool {
        let host = bare_host(host.trim()).to_ascii_lowercase();
        self.hosts.iter().any(|p| match p.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
            None => *p == host,
        })
    }

    /// The baggage member (`session.id=<id>`) for a request to `host` made now,
    /// if the host is allowed and telemetry here carries a session id that a
    /// joining server accepts (at most 64 bytes of `[A-Za-z0-9_-]`: a custom
    /// `IdGenerator`'s other ids are not sent, with one warning, rather than
    /// sent to be refused or to break the header).
    pub fn member_for(&self, host: &str) -> Option<String> {
        if !self.allows(host) {
            return None;
        }
        stamped_session_id().and_then(|id| member_of(&id))
    }

    /// Adds the session to `headers`' `baggage` for a request to `host` (merged
    /// into an existing `baggage` header; one that already names a `session.id`
    /// is left alone). `true` if it was added.
    #[cfg(feature = "http")]
    pub fn inject(&self, host: &str, headers: &mut http::HeaderMap) -> bool {
        let Some(member) = self.member_for(host) else {
            return false;
        };
        let name = http::header::HeaderName::from_static("baggage");
        let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
            Some(existing) if session_id_from_baggage(existing) != Ok(None) => return false,
            Some(existing) if !existing.trim().is_empty() => format!("{existing},{member}"),
            _ => member,
        };
        match http::HeaderValue::from_str(&value) {
            Ok(v) => {
                headers.insert(name, v);
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_a_joining_server_accepts_are_sent() {
        let uuid = SessionId::from("4f1c0a9e-77b2-4a9e-9d4b-0c2f5e6a7b8c");
        let member = member_of(&uuid).expect("a UUID is sent");
        assert_eq!(member, "session.id=4f1c0a9e-77b2-4a9e-9d4b-0c2f5e6a7b8c");
        assert_eq!(
            session_id_from_baggage(&member).unwrap(),
            Some(uuid),
            "and read back as it was"
        );
        for odd in ["user 42", "a,b=c", "x;ttl=1", "ü", &"a".repeat(65)] {
            assert_eq!(member_of(&SessionId::from(odd)), None, "{odd:?}");
        }
    }

    #[test]
    fn escapes_are_decoded_and_bad_ones_refused() {
        let id = session_id_from_baggage("session.id=abc%2Ddef").unwrap();
        assert_eq!(id.unwrap().as_str(), "abc-def");
        assert!(session_id_from_baggage("session.id=abc%2").is_err());
        assert!(session_id_from_baggage("session.id=abc%ZZ").is_err());
        assert!(session_id_from_baggage("session.id=%E2%9C%93").is_err());
        assert!(session_id_from_baggage(&format!("session.id={}", "a".repeat(65))).is_err());
        assert_eq!(
            session_id_from_baggage(" k=v , session.id = x_1 ;p=1")
                .unwrap()
                .unwrap()
                .as_str(),
            "x_1"
        );
    }
}
