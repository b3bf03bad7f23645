//! The session timer thread on real time (the only tests besides one in
//! tracking_app.rs that wait for it; each is bounded): an earlier deadline
//! pre-empts a later one it is already sleeping toward, and on Linux the wait
//! is on a clock that counts time the machine spends suspended.

mod common;

use std::time::{Duration, Instant};

use common::pipeline;
use otel_session::SessionManager;

/// Ended sessions' ids, from the lifecycle spans.
fn ended(p: &common::Pipeline) -> Vec<String> {
    p.tracer_provider.force_flush().unwrap();
    p.lifecycle_spans()
        .into_iter()
        .filter(|s| s.name == "session.end")
        .filter_map(|s| common::sid(&s))
        .collect()
}

#[test]
fn an_earlier_deadline_preempts_the_one_the_timer_sleeps_toward() {
    // The timer goes to sleep toward a deadline ten minutes away ...
    let late =
        pipeline(SessionManager::builder().with_inactivity_timeout(Some(Duration::from_secs(600))));
    std::thread::sleep(Duration::from_millis(50));
    // ... and a session due in 150 ms must not wait for it.
    let soon = pipeline(
        SessionManager::builder().with_inactivity_timeout(Some(Duration::from_millis(150))),
    );
    let id = soon.sessions.current_session().unwrap().id().to_string();
    let start = Instant::now();
    while ended(&soon).is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ended(&soon), [id], "ended by the timer, not by telemetry");
    assert!(ended(&late).is_empty(), "the later deadline has not come");
}

/// On Linux the timer waits on a timerfd of `CLOCK_BOOTTIME` (clock id 7):
/// the kernel counts suspended time on that clock, so a deadline passes while
/// a laptop sleeps and the session ends as it wakes. The monotonic clock
/// (what `Condvar::wait_timeout` and `Instant` use) stops during suspend: a
/// timer on it would end a 15-minute session up to 15 minutes after the
/// machine woke. (A suspend cannot be made in a test; the clock can be read.)
#[cfg(target_os = "linux")]
#[test]
fn the_timer_waits_on_a_clock_that_counts_suspended_time() {
    let p =
        pipeline(SessionManager::builder().with_inactivity_timeout(Some(Duration::from_secs(900))));
    assert!(p.sessions.current_session().is_some());
    let start = Instant::now();
    let timers = loop {
        let timers = timerfds();
        if !timers.is_empty() || start.elapsed() > Duration::from_secs(5) {
            break timers;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(timers.len(), 1, "one timer for the process: {timers:?}");
    let info = &timers[0];
    assert!(
        info.lines()
            .any(|l| l.split_whitespace().eq(["clockid:", "7"])),
        "CLOCK_BOOTTIME: {info}"
    );
    // Armed (fdinfo shows the time left) at the earliest deadline: this
    // session's, 900 s away, or an earlier one of a test running beside it.
    let left: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("it_value:"))
        .and_then(|v| {
            v.trim()
                .trim_start_matches('(')
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .expect("it_value");
    assert!(left > 0 && left < 900, "armed: {info}");
}

/// The fdinfo of every timerfd this process holds.
#[cfg(target_os = "linux")]
fn timerfds() -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.to_string_lossy() == "anon_inode:[timerfd]" {
            let fdinfo = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
            if let Ok(info) = std::fs::read_to_string(fdinfo) {
                found.push(info);
            }
        }
    }
    found
}
