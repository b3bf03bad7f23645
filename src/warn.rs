//! One place for the warnings this crate prints (to stderr, prefixed
//! `otel-session:`), so a misconfiguration is visible without a logger being set up.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Prints one warning line. A stderr that is closed or broken (a pipe whose
/// reader went away) loses the line; it never panics the program.
pub(crate) fn stderr(args: fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "otel-session: warning: {args}");
}

/// A warning printed at most once per flag.
pub(crate) fn once(flag: &AtomicBool, args: fmt::Arguments<'_>) {
    if !flag.swap(true, Ordering::Relaxed) {
        stderr(args);
    }
}
