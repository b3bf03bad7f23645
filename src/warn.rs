//! One place for the warnings this crate prints (to stderr, prefixed
//! `otel-session:`), so a misconfiguration is visible without a logger being set up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prints one warning line.
pub(crate) fn stderr(args: fmt::Arguments<'_>) {
    eprintln!("otel-session: warning: {args}");
}

/// A warning printed at most once per flag.
pub(crate) fn once(flag: &AtomicBool, args: fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        stderr(args);
    }
}
