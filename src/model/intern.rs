//! Strings kept for the process's life, so that attributes copied onto every
//! span and log record (stamped session attributes) cost a plain copy: a
//! `&'static str` key or value is copied without touching a shared reference
//! count (an `Arc<str>` one costs an atomic increment on the caller and a
//! decrement on the batch thread, per span).
//!
//! Keys are the few names `OTEL_SESSION_STAMP_ATTRIBUTES` lists, each kept
//! once. Values are budgeted like session ids (`core::session`): at most
//! [`VALUE_BUDGET`] distinct strings of at most [`VALUE_MAX_LEN`] bytes
//! (~1 MiB at worst); past that, values stay reference-counted.
//!
//! A session's stamped attributes as a whole are kept too ([`list`]), once
//! per distinct combination of keys and values, at most [`LIST_BUDGET`] of
//! them: a thread then caches the combination as a plain pointer and builds
//! each attribute from it without a match on its parts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use opentelemetry::logs::AnyValue;
use opentelemetry::{Key, KeyValue, StringValue, Value};

/// Distinct string values kept for the process's life.
pub(crate) const VALUE_BUDGET: usize = 4096;
/// Longer values are never kept.
pub(crate) const VALUE_MAX_LEN: usize = 256;

static VALUES_LEFT: AtomicUsize = AtomicUsize::new(VALUE_BUDGET);

fn table() -> &'static Mutex<HashSet<&'static str>> {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// `s` as a string kept for the process's life (the same one each time).
fn keep(s: &str) -> &'static str {
    let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(kept) = t.get(s) {
        return kept;
    }
    let kept: &'static str = Box::leak(s.to_owned().into_boxed_str());
    t.insert(kept);
    kept
}

/// A key whose clones are plain copies.
pub(crate) fn key(name: &str) -> Key {
    Key::from_static_str(keep(name))
}

/// A value whose clones are plain copies when it can be (numbers and
/// booleans are; a short string while the budget lasts), else `v` itself.
pub(crate) fn value(v: &Value) -> Value {
    match v {
        Value::String(s) => kept_str(s.as_str())
            .map_or_else(|| v.clone(), |kept| Value::String(StringValue::from(kept))),
        _ => v.clone(),
    }
}

/// `s` kept for the process's life, if it is short enough and the budget
/// lasts (the same one each time).
fn kept_str(s: &str) -> Option<&'static str> {
    if s.len() > VALUE_MAX_LEN {
        return None;
    }
    {
        let t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = t.get(s) {
            return Some(kept);
        }
    }
    VALUES_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .ok()?;
    Some(keep(s))
}

/// Distinct stamped-attribute combinations kept for the process's life
/// (each at most 16 attributes of 32 bytes: 512 KiB at worst).
pub(crate) const LIST_BUDGET: usize = 1024;

/// A value of a kept attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FixedValue {
    Str(&'static str),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// An attribute whose parts are kept: building its `KeyValue` is a copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FixedKv {
    key: &'static str,
    value: FixedValue,
}

impl FixedKv {
    #[inline]
    pub(crate) fn key_value(&self) -> KeyValue {
        let value = match self.value {
            FixedValue::Str(s) => Value::String(StringValue::from(s)),
            FixedValue::I64(i) => Value::I64(i),
            FixedValue::F64(f) => Value::F64(f),
            FixedValue::Bool(b) => Value::Bool(b),
        };
        KeyValue::new(Key::from_static_str(self.key), value)
    }

    /// The key, as a log record takes it.
    #[inline]
    pub(crate) fn key(&self) -> Key {
        Key::from_static_str(self.key)
    }

    /// The value, as a log record takes it.
    #[inline]
    pub(crate) fn any_value(&self) -> AnyValue {
        match self.value {
            FixedValue::Str(s) => AnyValue::String(StringValue::from(s)),
            FixedValue::I64(i) => AnyValue::Int(i),
            FixedValue::F64(f) => AnyValue::Double(f),
            FixedValue::Bool(b) => AnyValue::Boolean(b),
        }
    }
}

/// Kept combinations, by content.
fn lists() -> &'static Mutex<Vec<&'static [FixedKv]>> {
    static LISTS: OnceLock<Mutex<Vec<&'static [FixedKv]>>> = OnceLock::new();
    LISTS.get_or_init(Default::default)
}

/// `kvs` as a kept combination (the same one for the same content), if
/// every key and value can be kept and the budget lasts.
pub(crate) fn list(kvs: &[KeyValue]) -> Option<&'static [FixedKv]> {
    let mut fixed = Vec::with_capacity(kvs.len());
    for kv in kvs {
        let value = match &kv.value {
            Value::String(s) => FixedValue::Str(kept_str(s.as_str())?),
            Value::I64(i) => FixedValue::I64(*i),
            Value::F64(f) => FixedValue::F64(*f),
            Value::Bool(b) => FixedValue::Bool(*b),
            _ => return None,
        };
        fixed.push(FixedKv {
            key: keep(kv.key.as_str()),
            value,
        });
    }
    let mut kept = lists().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = kept.iter().find(|l| **l == fixed.as_slice()) {
        return Some(l);
    }
    if kept.len() >= LIST_BUDGET {
        return None;
    }
    let l: &'static [FixedKv] = Box::leak(fixed.into_boxed_slice());
    kept.push(l);
    Some(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_strings_are_shared_and_long_ones_are_not_kept() {
        let a = key("app.screen");
        let b = key("app.screen");
        assert!(std::ptr::eq(a.as_str().as_ptr(), b.as_str().as_ptr()));
        let v = value(&Value::from(String::from("checkout")));
        let w = value(&Value::from(String::from("checkout")));
        match (&v, &w) {
            (Value::String(x), Value::String(y)) => {
                assert!(std::ptr::eq(x.as_str().as_ptr(), y.as_str().as_ptr()))
            }
            _ => panic!("strings stay strings"),
        }
        let kvs = [KeyValue::new("a", "x"), KeyValue::new("b", 2)];
        let l = list(&kvs).expect("kept");
        assert!(std::ptr::eq(l, list(&kvs).unwrap()), "one per content");
        assert_eq!(
            l.iter().map(FixedKv::key_value).collect::<Vec<_>>(),
            kvs.to_vec()
        );
        let long = Value::from("x".repeat(VALUE_MAX_LEN + 1));
        assert!(list(&[KeyValue::new("a", long.clone())]).is_none());
        assert_eq!(value(&long), long);
        assert_eq!(value(&Value::I64(3)), Value::I64(3));
    }
}
