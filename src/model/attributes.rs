//! A session's own attributes: properties set while it runs
//! (`set_session_attribute`), permanent ones that later sessions carry,
//! feature flags (`feature_flag.<name>` = variant), and those `on_session`
//! callbacks add; the keys that belong to this crate and the size limits
//! every one of them obeys.
//!
//! [`Attributes`] is a small copy-on-write list (its clones share one
//! allocation until one of them changes), so the rules can hand it to their
//! effects and keep it in their state without copying.

use std::sync::Arc;

use opentelemetry::{Key, KeyValue, Value};

use crate::model::attr;

/// Attributes a session carries at most (callback attributes, properties
/// and feature flags together).
pub const MAX_SESSION_ATTRIBUTES: usize = 64;
/// Bytes a session attribute's key (or a feature flag's name) has at most.
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 128;
/// Bytes a session attribute's value has at most (a string's length; an
/// array's strings together).
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 1024;

/// The prefix of a feature flag's attribute key: flag `new-cart` is the
/// attribute `feature_flag.new-cart`.
pub const FEATURE_FLAG_PREFIX: &str = "feature_flag.";

/// Names the OpenTelemetry feature-flag conventions give a meaning of their
/// own under `feature_flag.`: a flag of that name would collide with them.
const FLAG_CONVENTION_NAMES: [&str; 6] = [
    "key",
    "provider.name",
    "result.variant",
    "result.value",
    "result.reason",
    "context.id",
];

/// Why a session attribute or feature flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// The key belongs to this crate, to `set_user`, or to the feature-flag
    /// verbs.
    #[error("{key:?} is reserved: {owner}")]
    Reserved {
        /// The key.
        key: String,
        /// Who sets it instead.
        owner: &'static str,
    },
    /// An empty key or flag name.
    #[error("an empty attribute key or feature flag name")]
    EmptyKey,
    /// The key (or flag name) is longer than [`MAX_ATTRIBUTE_KEY_LEN`] bytes.
    #[error("the key {key:?}… is {len} bytes long; at most {MAX_ATTRIBUTE_KEY_LEN} are kept")]
    KeyTooLong {
        /// Its first bytes.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The value is longer than [`MAX_ATTRIBUTE_VALUE_LEN`] bytes.
    #[error(
        "the value of {key:?} is {len} bytes long; at most {MAX_ATTRIBUTE_VALUE_LEN} are kept"
    )]
    ValueTooLong {
        /// The key.
        key: String,
        /// The value's length in bytes.
        len: usize,
    },
    /// The session has [`MAX_SESSION_ATTRIBUTES`] attributes already.
    #[error("{key:?} would be attribute number {n} of the session; at most {MAX_SESSION_ATTRIBUTES} are kept", n = MAX_SESSION_ATTRIBUTES + 1)]
    TooMany {
        /// The key that did not fit.
        key: String,
    },
}

impl AttributeError {
    /// How to fix it, for the warning.
    pub(crate) fn fix(&self) -> &'static str {
        match self {
            AttributeError::Reserved { .. } => "choose a key of your own",
            AttributeError::EmptyKey => "give it a name",
            AttributeError::KeyTooLong { .. } => "use a shorter key",
            AttributeError::ValueTooLong { .. } => {
                "keep long text in a log record or span event instead"
            }
            AttributeError::TooMany { .. } => {
                "remove attributes the session no longer needs, or put several values in one"
            }
        }
    }

    /// Which kind of refusal it is (one warning per kind).
    pub(crate) fn kind(&self) -> usize {
        match self {
            AttributeError::Reserved { .. } => 0,
            AttributeError::EmptyKey => 1,
            AttributeError::KeyTooLong { .. } => 2,
            AttributeError::ValueTooLong { .. } => 3,
            AttributeError::TooMany { .. } => 4,
        }
    }
}

/// The first bytes of `s` (at most 32, on a character boundary).
fn head(s: &str) -> String {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Who owns `key`, if it is not the application's to set as a session
/// attribute.
fn owner(key: &str) -> Option<&'static str> {
    if key == attr::SESSION_ID
        || key == attr::SESSION_PREVIOUS_ID
        || key.starts_with(attr::NAMESPACE)
    {
        Some("session.id, session.previous_id and otel_session.* are set by otel-session")
    } else if key == attr::USER_ID || key == attr::USER_EMAIL || key == attr::USER_FULL_NAME {
        Some("user.id, user.email and user.full_name are set with set_user()")
    } else if key.starts_with(FEATURE_FLAG_PREFIX) {
        Some("feature_flag.* is set with add_feature_flag()")
    } else {
        None
    }
}

fn value_len(v: &Value) -> usize {
    use opentelemetry::Array;
    match v {
        Value::String(s) => s.as_str().len(),
        Value::Array(Array::String(a)) => a.iter().map(|s| s.as_str().len()).sum(),
        Value::Array(Array::Bool(a)) => a.len(),
        Value::Array(Array::I64(a)) => a.len() * 8,
        Value::Array(Array::F64(a)) => a.len() * 8,
        _ => 8,
    }
}

fn check_key(key: &str) -> Result<(), AttributeError> {
    if key.is_empty() {
        return Err(AttributeError::EmptyKey);
    }
    if key.len() > MAX_ATTRIBUTE_KEY_LEN {
        return Err(AttributeError::KeyTooLong {
            key: head(key),
            len: key.len(),
        });
    }
    Ok(())
}

fn check_value(key: &str, value: &Value) -> Result<(), AttributeError> {
    let len = value_len(value);
    if len > MAX_ATTRIBUTE_VALUE_LEN {
        return Err(AttributeError::ValueTooLong {
            key: key.to_string(),
            len,
        });
    }
    Ok(())
}

/// Checks a session attribute set by the application (a property, or one
/// an `on_session` callback adds).
pub(crate) fn check(key: &str, value: Option<&Value>) -> Result<(), AttributeError> {
    check_key(key)?;
    if let Some(owner) = owner(key) {
        return Err(AttributeError::Reserved {
            key: key.to_string(),
            owner,
        });
    }
    match value {
        Some(v) => check_value(key, v),
        None => Ok(()),
    }
}

/// The attribute key of feature flag `name`, checked.
pub(crate) fn flag_key(name: &str) -> Result<Key, AttributeError> {
    check_key(name)?;
    if FLAG_CONVENTION_NAMES.contains(&name) {
        return Err(AttributeError::Reserved {
            key: format!("{FEATURE_FLAG_PREFIX}{name}"),
            owner: "the OpenTelemetry feature-flag conventions define it; choose another flag name",
        });
    }
    Ok(Key::from(format!("{FEATURE_FLAG_PREFIX}{name}")))
}

/// A feature flag's variant, checked.
pub(crate) fn flag_variant(key: &Key, variant: String) -> Result<Value, AttributeError> {
    let v = Value::from(variant);
    check_value(key.as_str(), &v)?;
    Ok(v)
}

/// Session attributes copied onto telemetry at most
/// (`OTEL_SESSION_STAMP_ATTRIBUTES`): each costs one attribute on every span
/// and log record.
pub const MAX_STAMPED_ATTRIBUTES: usize = 16;

/// The keys to stamp, checked: those a session can carry (its properties,
/// `feature_flag.<name>`), each once, at most [`MAX_STAMPED_ATTRIBUTES`];
/// and a warning for each one left out.
pub(crate) fn stamp_keys<S: AsRef<str>>(listed: &[S]) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut warnings) = (Vec::<String>::new(), Vec::new());
    for k in listed {
        let k = k.as_ref().trim();
        if k.is_empty() || keys.iter().any(|x| x == k) {
            continue;
        }
        let ok = match k.strip_prefix(FEATURE_FLAG_PREFIX) {
            Some(name) => flag_key(name).map(|_| ()),
            None => check(k, None),
        };
        if let Err(e) = ok {
            warnings.push(format!(
                "{k:?} cannot be a stamped session attribute (OTEL_SESSION_STAMP_ATTRIBUTES) \
                 ({e}); it is left out. List attributes your sessions carry: properties and \
                 feature_flag.<name>"
            ));
            continue;
        }
        if keys.len() == MAX_STAMPED_ATTRIBUTES {
            warnings.push(format!(
                "{k:?} is stamped attribute number {} but at most {MAX_STAMPED_ATTRIBUTES} are \
                 stamped (each is one more attribute on every span and log record); it is left \
                 out",
                keys.len() + 1
            ));
            continue;
        }
        keys.push(k.to_string());
    }
    (keys, warnings)
}

/// How long an attribute lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// This session's only (a property, or from a callback).
    Session,
    /// Carried into every later session, and across restarts with
    /// persistence, until removed.
    Permanent,
    /// A feature flag: carried into later sessions of this process until
    /// cleared (a new process sets its flags again).
    Flag,
}

impl Kind {
    /// Later sessions carry it.
    pub(crate) fn carried(self) -> bool {
        !matches!(self, Kind::Session)
    }
}

/// One attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: Key,
    pub(crate) value: Value,
    pub(crate) kind: Kind,
}

/// A session's attributes, in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attributes(Option<Arc<Vec<Entry>>>);

impl Attributes {
    /// The list as shared (for a lock-free cell).
    pub(crate) fn shared(&self) -> Option<Arc<Vec<Entry>>> {
        self.0.clone()
    }

    /// A list read from a lock-free cell.
    pub(crate) fn from_shared(list: Option<Arc<Vec<Entry>>>) -> Attributes {
        Attributes(list.filter(|l| !l.is_empty()))
    }

    /// Every attribute, in order.
    pub(crate) fn entries(&self) -> &[Entry] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        self.entries().iter().find(|e| e.key.as_str() == key)
    }

    /// The same list (not only equal): nothing changed since.
    pub(crate) fn same(&self, other: &Attributes) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    fn make_mut(&mut self) -> &mut Vec<Entry> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }

    /// Sets `e` (replacing an attribute of the same key, in its place): `true`
    /// if anything changed; refused when it would be one too many.
    pub(crate) fn set(&mut self, e: Entry) -> Result<bool, AttributeError> {
        if let Some(i) = self.entries().iter().position(|x| x.key == e.key) {
            if self.entries()[i] == e {
                return Ok(false);
            }
            self.make_mut()[i] = e;
            return Ok(true);
        }
        if self.len() >= MAX_SESSION_ATTRIBUTES {
            return Err(AttributeError::TooMany {
                key: e.key.to_string(),
            });
        }
        self.make_mut().push(e);
        Ok(true)
    }

    /// Removes `key`: the attribute, if there was one.
    pub(crate) fn remove(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries().iter().position(|x| x.key.as_str() == key)?;
        let e = self.make_mut().remove(i);
        if self.is_empty() {
            self.0 = None;
        }
        Some(e)
    }

    /// Only what later sessions carry (permanent attributes, feature flags).
    pub(crate) fn carried(&self) -> Attributes {
        self.only(Kind::carried)
    }

    /// Only the attributes whose kind `keep` says (the same list when that
    /// is all of them).
    pub(crate) fn only(&self, keep: impl Fn(Kind) -> bool) -> Attributes {
        if self.entries().iter().all(|e| keep(e.kind)) {
            return self.clone();
        }
        let mut out = Attributes::default();
        for e in self.entries().iter().filter(|e| keep(e.kind)) {
            let _ = out.set(e.clone());
        }
        out
    }

    /// Attribute `key` as a key-value, if the session has it.
    pub(crate) fn key_value(&self, key: &Key) -> Option<KeyValue> {
        self.get(key.as_str())
            .map(|e| KeyValue::new(key.clone(), e.value.clone()))
    }

    /// `self` with `over` set on top (each of `over` replaces one of the same
    /// key; those past the limit are left out).
    pub(crate) fn merged(&self, over: &Attributes) -> Attributes {
        if over.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return over.clone();
        }
        let mut out = self.clone();
        for e in over.entries() {
            let _ = out.set(e.clone());
        }
        out
    }

    /// The attributes as key-values (for the summary span and end event).
    pub(crate) fn key_values(&self) -> impl Iterator<Item = KeyValue> + '_ {
        self.entries()
            .iter()
            .map(|e| KeyValue::new(e.key.clone(), e.value.clone()))
    }

    /// The feature flags: `feature_flag.<name>` keys and their variants.
    pub(crate) fn flags(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.entries().iter().filter(|e| e.kind == Kind::Flag)
    }

    /// The feature flags as attributes (`feature_flag.<name>` = variant):
    /// what an error or crash record counted while they are active carries.
    pub(crate) fn flag_attributes(&self) -> Vec<KeyValue> {
        self.flags()
            .map(|e| KeyValue::new(e.key.clone(), e.value.clone()))
            .collect()
    }

    /// What a crash record of this session carries: its feature flags and
    /// (`stamped`: the record carries the session's own id) the attributes
    /// of `stamp_keys` it has, each key once.
    pub(crate) fn crash_attributes(&self, stamp_keys: &[Key], stamped: bool) -> Vec<KeyValue> {
        let mut kept = self.flag_attributes();
        for kv in stamp_keys
            .iter()
            .filter(|_| stamped)
            .filter_map(|k| self.key_value(k))
        {
            if !kept.iter().any(|f| f.key == kv.key) {
                kept.push(kv);
            }
        }
        kept
    }

    /// Attributes set by callbacks (their list, as it was built).
    pub(crate) fn from_callbacks(list: Vec<KeyValue>) -> Attributes {
        let mut out = Attributes::default();
        for kv in list {
            let _ = out.set(Entry {
                key: kv.key,
                value: kv.value,
                kind: Kind::Session,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: &'static str, v: &'static str, kind: Kind) -> Entry {
        Entry {
            key: Key::from_static_str(k),
            value: Value::from(v),
            kind,
        }
    }

    #[test]
    fn set_replaces_in_place_and_counts_the_limit() {
        let mut a = Attributes::default();
        assert!(a.set(e("a", "1", Kind::Session)).unwrap());
        assert!(a.set(e("b", "1", Kind::Permanent)).unwrap());
        assert!(!a.set(e("a", "1", Kind::Session)).unwrap(), "no change");
        assert!(a.set(e("a", "2", Kind::Session)).unwrap());
        assert_eq!(a.entries()[0].value, Value::from("2"));
        for i in 2..MAX_SESSION_ATTRIBUTES {
            a.set(Entry {
                key: Key::from(format!("k{i}")),
                value: Value::from(1),
                kind: Kind::Session,
            })
            .unwrap();
        }
        assert!(matches!(
            a.set(e("one-more", "x", Kind::Session)),
            Err(AttributeError::TooMany { .. })
        ));
        assert!(a.set(e("a", "3", Kind::Session)).unwrap(), "a key it has");
    }

    #[test]
    fn clones_share_until_one_changes() {
        let mut a = Attributes::default();
        a.set(e("a", "1", Kind::Flag)).unwrap();
        let b = a.clone();
        assert!(a.same(&b));
        a.set(e("a", "2", Kind::Flag)).unwrap();
        assert!(!a.same(&b));
        assert_eq!(b.get("a").unwrap().value, Value::from("1"));
    }

    #[test]
    fn carried_keeps_permanent_attributes_and_flags() {
        let mut a = Attributes::default();
        a.set(e("s", "1", Kind::Session)).unwrap();
        a.set(e("p", "1", Kind::Permanent)).unwrap();
        a.set(e("feature_flag.f", "b", Kind::Flag)).unwrap();
        let c = a.carried();
        let keys: Vec<_> = c.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["p", "feature_flag.f"]);
        assert_eq!(c.flags().count(), 1);
    }

    #[test]
    fn reserved_keys_and_sizes_are_refused() {
        for key in [
            "session.id",
            "session.previous_id",
            "otel_session.status",
            "user.id",
            "feature_flag.x",
        ] {
            assert!(
                matches!(check(key, None), Err(AttributeError::Reserved { .. })),
                "{key}"
            );
        }
        assert_eq!(check("", None), Err(AttributeError::EmptyKey));
        let long = "k".repeat(MAX_ATTRIBUTE_KEY_LEN + 1);
        assert!(matches!(
            check(&long, None),
            Err(AttributeError::KeyTooLong { len, .. }) if len == MAX_ATTRIBUTE_KEY_LEN + 1
        ));
        let big = Value::from("v".repeat(MAX_ATTRIBUTE_VALUE_LEN + 1));
        assert!(matches!(
            check("app.screen", Some(&big)),
            Err(AttributeError::ValueTooLong { .. })
        ));
        assert!(check("app.screen", Some(&Value::from("checkout"))).is_ok());
        assert!(check(&"k".repeat(MAX_ATTRIBUTE_KEY_LEN), None).is_ok());
        assert!(flag_key("key").is_err(), "feature_flag.key is a convention");
        assert_eq!(
            flag_key("new-cart").unwrap().as_str(),
            "feature_flag.new-cart"
        );
    }
}
