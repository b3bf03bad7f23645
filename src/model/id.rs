//! Session id generation and the mapping from a session id to the trace that holds
//! the session's lifecycle spans.

use std::cell::Cell;
use std::fmt;

use opentelemetry::trace::{SpanId, TraceId};

use crate::model::session::SessionId;

/// Makes new session ids. The default, [`UuidV4Generator`], draws UUID v4 from the
/// operating system's CSPRNG. A custom generator may return any non-empty string;
/// ids are opaque everywhere.
pub trait IdGenerator: Send + Sync + fmt::Debug {
    /// A fresh, unique session id.
    fn new_session_id(&self) -> SessionId;
}

/// UUID v4 session ids from a CSPRNG (the default): `rand`'s thread-local
/// generator (ChaCha12, seeded and periodically reseeded from the operating
/// system), the one `opentelemetry_sdk` already depends on.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidV4Generator;

impl IdGenerator for UuidV4Generator {
    fn new_session_id(&self) -> SessionId {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let s = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .encode_lower(&mut buf);
        SessionId::from(&*s)
    }
}

const FNV128_OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const FNV128_PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

fn fnv1a_128(bytes: &[u8]) -> u128 {
    bytes.iter().fold(FNV128_OFFSET, |h, b| {
        (h ^ u128::from(*b)).wrapping_mul(FNV128_PRIME)
    })
}

/// The trace id of a session's lifecycle trace: the UUID's 128 bits when the id is a
/// UUID, else the FNV-1a-128 hash of the id's bytes. Never the invalid all-zero id.
pub fn session_trace_id(id: &SessionId) -> TraceId {
    let bits = match uuid::Uuid::try_parse(id.as_str()) {
        Ok(u) => u.as_u128(),
        Err(_) => fnv1a_128(id.as_str().as_bytes()),
    };
    TraceId::from(if bits == 0 { 1 } else { bits })
}

/// The span id of a session's `session` summary span: derived from the id, so the
/// same session always has the same root (a session continued by another process
/// keeps its timeline).
pub(crate) fn session_root_span_id(id: &SessionId) -> SpanId {
    derived_span_id(b"otel_session.root:", id)
}

/// The span id of a session's `session.end` transition span: derived from the
/// id too, so an end sent again by a later run (persistence) is the same span.
pub(crate) fn session_end_span_id(id: &SessionId) -> SpanId {
    derived_span_id(b"otel_session.end:", id)
}

fn derived_span_id(prefix: &[u8], id: &SessionId) -> SpanId {
    let h = fnv1a_64_from(fnv1a_64_from(FNV64_OFFSET, prefix), id.as_str().as_bytes());
    SpanId::from(if h == 0 { 1 } else { h })
}

const FNV64_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a-64 of `bytes`.
pub(crate) fn fnv1a_64(bytes: &[u8]) -> u64 {
    fnv1a_64_from(FNV64_OFFSET, bytes)
}

/// FNV-1a-64 continued from state `h` over `bytes` (hashing `a` then `b` this
/// way equals hashing their concatenation).
fn fnv1a_64_from(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV64_PRIME))
}

/// The threshold of `ratio`: `None` keeps everything (ratio ≥ 1).
pub(crate) fn threshold(ratio: f64) -> Option<u64> {
    if ratio.is_nan() || ratio >= 1.0 {
        return None;
    }
    if ratio <= 0.0 {
        return Some(0);
    }
    // ratio × 2⁶⁴, exactly representable for the ratios people write.
    Some((ratio * 18_446_744_073_709_551_616.0) as u64)
}

/// `true` if a session with this id is kept at `ratio` under session sampling
/// (`OTEL_SESSION_SAMPLE_RATIO`): FNV-1a-64 of the id's bytes < `ratio × 2⁶⁴`.
///
/// ```
/// assert!(otel_session::session_sampled("any-id", 1.0));
/// assert!(!otel_session::session_sampled("any-id", 0.0));
/// let kept = otel_session::session_sampled("4f1c0a9e-77b2-4e0a-9c1d-0b7c1b2d3e4f", 0.5);
/// assert_eq!(kept, otel_session::session_sampled("4f1c0a9e-77b2-4e0a-9c1d-0b7c1b2d3e4f", 0.5));
/// ```
pub fn session_sampled(id: &str, ratio: f64) -> bool {
    keeps(threshold(ratio), id)
}

/// Ids up to this long are remembered by content for the next decision.
const REMEMBERED: usize = 64;

#[derive(Clone, Copy)]
struct Decided {
    threshold: u64,
    len: usize,
    bytes: [u8; REMEMBERED],
    kept: bool,
}

thread_local! {
    /// The last id decided on this thread, by content (an id's memory may be
    /// freed and reused for another id), and the decision: the same session's
    /// spans hash once.
    static LAST: Cell<Decided> = const {
        Cell::new(Decided { threshold: 0, len: usize::MAX, bytes: [0; REMEMBERED], kept: true })
    };
}

/// The decision for `id` under `threshold` (see [`session_sampled`]).
#[inline]
pub(crate) fn keeps(threshold: Option<u64>, id: &str) -> bool {
    let Some(t) = threshold else {
        return true;
    };
    let bytes = id.as_bytes();
    if let Ok(last) = LAST.try_with(Cell::get) {
        if last.threshold == t
            && last.len == bytes.len()
            && last.bytes.get(..bytes.len()) == Some(bytes)
        {
            return last.kept;
        }
    }
    let kept = fnv1a_64(bytes) < t;
    if bytes.len() <= REMEMBERED {
        let mut remembered = [0; REMEMBERED];
        remembered[..bytes.len()].copy_from_slice(bytes);
        let _ = LAST.try_with(|c| {
            c.set(Decided {
                threshold: t,
                len: bytes.len(),
                bytes: remembered,
                kept,
            })
        });
    }
    kept
}

/// A random span id for a transition span.
pub(crate) fn random_span_id() -> SpanId {
    let bits: u64 = rand::random();
    SpanId::from(if bits == 0 { 1 } else { bits })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_map_to_their_bits() {
        let id = SessionId::from("0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(
            session_trace_id(&id),
            TraceId::from(0x0f8fad5b_d9cb_469f_a165_70867728950e_u128)
        );
    }

    #[test]
    fn other_ids_hash_stably_and_differ() {
        let a = session_trace_id(&SessionId::from("user-42-session"));
        let b = session_trace_id(&SessionId::from("user-43-session"));
        assert_ne!(a, b);
        assert_eq!(a, session_trace_id(&SessionId::from("user-42-session")));
        assert_ne!(a, TraceId::INVALID);
    }

    #[test]
    fn derived_span_ids_are_fnv_of_prefix_and_id_and_stable_across_processes() {
        let id = SessionId::from("0f8fad5b-d9cb-469f-a165-70867728950e");
        let whole = fnv1a_64(b"otel_session.root:0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(session_root_span_id(&id), SpanId::from(whole));
        // The FNV-1a-64 test vector: a restored session must get the same ids.
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(session_root_span_id(&id), session_end_span_id(&id));
    }

    #[test]
    fn generated_ids_are_uuid_v4() {
        let id = UuidV4Generator.new_session_id();
        let u = uuid::Uuid::parse_str(id.as_str()).expect("uuid");
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.as_str(), id.as_str().to_lowercase(), "lower-case hex");
        let many: std::collections::HashSet<_> = (0..10_000)
            .map(|_| UuidV4Generator.new_session_id())
            .collect();
        assert_eq!(many.len(), 10_000, "no repeats");
        // 122 random bits: every bit that is not version or variant varies.
        let (or, and) = many.iter().fold((0u128, u128::MAX), |(or, and), id| {
            let bits = uuid::Uuid::parse_str(id.as_str()).expect("uuid").as_u128();
            (or | bits, and & bits)
        });
        let fixed = 0xf000_u128 << 64 | 0xc000_u128 << 48;
        assert_eq!(or | fixed, u128::MAX, "a bit never set");
        assert_eq!(and & !fixed, 0, "a bit always set");
    }

    #[test]
    fn random_span_ids_vary() {
        let ids: std::collections::HashSet<_> = (0..1_000).map(|_| random_span_id()).collect();
        assert_eq!(ids.len(), 1_000);
    }
}
