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

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use opentelemetry::{Key, StringValue, Value};

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
    let Value::String(s) = v else {
        return v.clone();
    };
    let s = s.as_str();
    if s.len() > VALUE_MAX_LEN {
        return v.clone();
    }
    {
        let t = table().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kept) = t.get(s) {
            return Value::String(StringValue::from(*kept));
        }
    }
    if VALUES_LEFT
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_err()
    {
        return v.clone();
    }
    Value::String(StringValue::from(keep(s)))
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
        let long = Value::from("x".repeat(VALUE_MAX_LEN + 1));
        assert_eq!(value(&long), long);
        assert_eq!(value(&Value::I64(3)), Value::I64(3));
    }
}
