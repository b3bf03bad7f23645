//! The program the end-to-end tests run as a child process (not an example to
//! copy): `e2e_child SCENARIO`, configured only through the environment, exactly
//! as a user's program would be with `otel_session::init!()`. It prints
//! `KEY=value` lines for the test to check, and `WAIT` when it wants the test to
//! act before it goes on (it then reads a line from stdin).

use std::io::BufRead as _;

use tracing_subscriber::layer::SubscriberExt as _;

fn wait_for_test() {
    println!("WAIT");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

/// `init!()` inside a current-thread tokio runtime, spans from async code, and
/// the guard dropped inside the runtime: no "no reactor running", no stall.
fn in_tokio_current_thread() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let guard = otel_session::init!().expect("init inside a runtime");
        let subscriber = tracing_subscriber::registry()
            .with(guard.tracing_layer())
            .with(guard.log_layer());
        let _default = tracing::subscriber::set_default(subscriber);
        for i in 0..3 {
            use tracing::Instrument as _;
            async {
                tokio::task::yield_now().await;
                tracing::info!("async work");
            }
            .instrument(tracing::info_span!("async-work", i))
            .await;
        }
        println!(
            "SESSION={}",
            otel_session::current_session()
                .map(|s| s.id().to_string())
                .unwrap_or_default()
        );
        drop(guard);
    });
}

/// A main-thread panic the crash report's backtrace names.
#[inline(never)]
fn give_up_on_main() {
    panic!("main thread gives up");
}

/// One request of a request-mode server: `work` runs in the request's
/// context on a thread of its own (its panic caught, as a server's would be),
/// and the request ends with what happened.
fn serve(request: otel_session::RequestScope, work: impl FnOnce() + Send + 'static) {
    let cx = request.context().clone();
    let outcome = std::thread::spawn(move || {
        let _in = cx.attach();
        work()
    })
    .join();
    request.finish(if outcome.is_err() {
        otel_session::RequestOutcome::Panicked
    } else {
        otel_session::RequestOutcome::Answered
    });
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    if scenario == "tokio-current-thread" {
        return in_tokio_current_thread();
    }
    if scenario == "sample-decisions" {
        // No pipeline: the sampling rule alone, for ids given by the test.
        let ratio: f64 = std::env::var("E2E_RATIO")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1.0);
        let ids = std::env::var("E2E_IDS").unwrap_or_default();
        let kept: Vec<&str> = ids
            .split(',')
            .filter(|id| otel_session::session_sampled(id, ratio))
            .collect();
        println!("KEPT={}", kept.join(","));
        return;
    }
    if scenario.starts_with("panic-") {
        // The app's own hook, installed before init(): it must still run.
        std::panic::set_hook(Box::new(|info| {
            println!(
                "USER_HOOK_RAN={}",
                info.payload().downcast_ref::<&str>().unwrap_or(&"?")
            );
        }));
    }
    let guard = match scenario.as_str() {
        "no-version" => otel_session::init(),
        "version-as-attribute" => otel_session::Builder::from_env()
            .with_resource_attributes([opentelemetry::KeyValue::new("service.version", "7.0.0")])
            .init(),
        _ => otel_session::init!(),
    };
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            println!("INIT_ERROR={e}");
            return;
        }
    };
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    let _ = tracing::subscriber::set_global_default(subscriber);

    match scenario.as_str() {
        // Spans, logs, pause/resume and a replacing start; the guard's drop ends
        // the second session (reason shutdown) as main returns.
        "basic" => {
            let a = otel_session::current_session().expect("app mode starts a session");
            println!("A={}", a.id());
            tracing::info_span!("a-work").in_scope(|| {
                tracing::info!("hello from A");
                tracing::error!("failure in A");
            });
            otel_session::pause_session();
            tracing::info_span!("paused-work").in_scope(|| tracing::info!("while paused"));
            otel_session::resume_session();
            tracing::info_span!("a-after-resume").in_scope(|| {});
            let b = otel_session::start_session().expect("b");
            println!("B={}", b.id());
            tracing::info_span!("b-work").in_scope(|| tracing::info!("hello from B"));
        }
        // A tight loop of spans (collector up or down).
        "burst" => {
            let n = env_number("E2E_SPANS", 100_000);
            let started = std::time::Instant::now();
            for i in 0..n {
                tracing::info_span!("burst", i).in_scope(|| {});
            }
            println!(
                "BURST_NS_PER_SPAN={}",
                started.elapsed().as_nanos() / n.max(1) as u128
            );
            if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
                if let Some(rss) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                    println!("PEAK_RSS={}", rss.trim_start_matches("VmHWM:").trim());
                }
            }
        }
        // Telemetry while the collector is down, then (after the test starts it)
        // more telemetry that must arrive.
        "phases" => {
            for _ in 0..100 {
                tracing::info_span!("while-down").in_scope(|| {});
            }
            let _ = guard.tracer_provider().map(|p| p.force_flush());
            wait_for_test();
            for _ in 0..100 {
                tracing::info_span!("after-up").in_scope(|| {});
            }
            let _ = guard.tracer_provider().map(|p| p.force_flush());
            let d = guard.span_delivery();
            println!("HANDED={}", d.handed);
            println!("EXPORTED={}", d.exported);
            println!("FAILED={}", d.failed);
        }
        // A span every 100 ms for 1.6 s: with OTEL_SESSION_MAX_DURATION=1s the
        // session rotates once while busy.
        "max-duration" => {
            let first = otel_session::current_session().expect("a session");
            println!("A={}", first.id());
            let started = std::time::Instant::now();
            let mut i = 0;
            while started.elapsed() < std::time::Duration::from_millis(1600) {
                tracing::info_span!("tick", i).in_scope(|| {});
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let last = otel_session::current_session().expect("a session");
            println!("B={}", last.id());
        }
        // A panic on the main thread: the session ends (crash), flushed first.
        "panic-main" => {
            let a = otel_session::current_session().expect("a session");
            println!("A={}", a.id());
            tracing::info_span!("before-crash").in_scope(|| tracing::info!("about to fail"));
            tracing::info_span!("doomed").in_scope(give_up_on_main);
        }
        // A panic on the main thread that the app catches (an event loop that
        // survives a bad frame): the session ends (crash), the next activity
        // starts another.
        "panic-main-caught" => {
            let a = otel_session::current_session().expect("a session");
            println!("A={}", a.id());
            let _ = std::panic::catch_unwind(|| panic!("a bad frame"));
            tracing::info_span!("after-caught-panic").in_scope(|| {});
            let b = otel_session::current_session().expect("a new session");
            println!("B={}", b.id());
        }
        // Two panics on worker threads, caught by join: the session goes on,
        // crashed once, and ends at shutdown.
        "panic-workers" => {
            let a = otel_session::current_session().expect("a session");
            println!("A={}", a.id());
            for i in 0..2 {
                let worker = std::thread::spawn(move || panic!("worker {i} failed"));
                let _ = worker.join();
            }
            let now = otel_session::current_session().expect("still running");
            println!("SAME={}", now.id() == a.id());
            println!("STATUS={}", now.status());
            println!("UNHANDLED={}", now.unhandled_errors());
            tracing::info_span!("after-panics").in_scope(|| {});
        }
        // Request mode: a panic inside one request marks only that request.
        "panic-request" => {
            let sessions = otel_session::global_manager().expect("manager");
            for fail in [false, true, false] {
                let request = sessions.begin_request([]);
                if fail {
                    println!(
                        "FAILED_REQUEST={}",
                        request.session().expect("a session").id()
                    );
                }
                serve(request, move || {
                    if fail {
                        panic!("handler bug");
                    }
                });
            }
            println!(
                "APP_SESSION={}",
                otel_session::current_session()
                    .map(|s| s.id().to_string())
                    .unwrap_or_default()
            );
        }
        // Persistence: some activity, then either a SIGKILL (the session is
        // left `active`) or a clean exit (`suspended`).
        "persist-kill" | "persist-exit" => {
            let s = otel_session::current_session().expect("a session");
            println!("SESSION={}", s.id());
            println!(
                "PREVIOUS={}",
                s.previous_id().map(|p| p.to_string()).unwrap_or_default()
            );
            tracing::info_span!("persisted-work").in_scope(|| tracing::info!("working"));
            // A verb: saved at once, so the file knows this last activity.
            otel_session::set_user(otel_session::User::with_id("persisted-user"));
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            println!("LAST_ACTIVITY_NS={at}");
            if scenario == "persist-kill" {
                let _ = guard.tracer_provider().map(|p| p.force_flush());
                // SAFETY: kill(2) on our own pid.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
        // Sessions of every status, by the count: ok, errored (an ERROR log),
        // crashed (a caught panic on a worker thread).
        "mixed" => {
            let (mut ok, mut errored, mut crashed) = (0, 0, 0);
            for i in 0..30 {
                otel_session::start_session().expect("a session");
                tracing::info_span!("mixed-work", i).in_scope(|| match i % 3 {
                    0 => ok += 1,
                    1 => {
                        tracing::error!("a handled failure");
                        errored += 1;
                    }
                    _ => {
                        let _ = std::thread::spawn(|| panic!("worker bug")).join();
                        crashed += 1;
                    }
                });
            }
            otel_session::end_session();
            println!("OK={ok}");
            println!("ERRORED={errored}");
            println!("CRASHED={crashed}");
        }
        // Many app sessions (E2E_SESSIONS), each with two spans and a log record
        // (every third an ERROR too); the ids, the first one included.
        "fleet-app" => {
            let n = env_number("E2E_SESSIONS", 50);
            let mut ids = Vec::new();
            for i in 0..=n {
                if i > 0 {
                    otel_session::start_session().expect("a session");
                }
                let s = otel_session::current_session().expect("a session");
                ids.push(s.id().to_string());
                tracing::info_span!("fleet-work", i).in_scope(|| {
                    tracing::info_span!("fleet-step").in_scope(|| {});
                    tracing::info!("fleet log");
                    if i % 3 == 1 {
                        tracing::error!("fleet failure");
                    }
                });
            }
            otel_session::end_session();
            println!("SESSIONS={}", ids.join(","));
        }
        // Request mode (OTEL_SESSION_MODE=request): E2E_REQUESTS requests, one
        // span and one log record each; the first ones join the callers'
        // sessions listed in E2E_JOIN (baggage, with OTEL_SESSION_PROPAGATE).
        "fleet-requests" => {
            let n = env_number("E2E_REQUESTS", 50);
            let join = std::env::var("E2E_JOIN").unwrap_or_default();
            let callers: Vec<&str> = join.split(',').filter(|s| !s.is_empty()).collect();
            let sessions = otel_session::global_manager().expect("manager");
            let (mut own, mut joined) = (Vec::new(), Vec::new());
            for i in 0..n {
                let baggage = callers.get(i).map(|id| format!("session.id={id}"));
                let request = sessions.begin_request(baggage.as_deref());
                match callers.get(i) {
                    Some(id) => joined.push(id.to_string()),
                    None => own.push(request.session().expect("a session").id().to_string()),
                }
                {
                    let _in = request.context().clone().attach();
                    tracing::info_span!("fleet-request", i)
                        .in_scope(|| tracing::info!("request log"));
                }
                request.finish(otel_session::RequestOutcome::Answered);
            }
            println!("REQUESTS={}", own.join(","));
            println!("JOINED={}", joined.join(","));
        }
        // A command-line run: some work (an ERROR with E2E_ERROR=1), then the
        // session ends with the command, as a CLI with persistence does (the
        // file then only ever holds a run that died). E2E_FLAG: the run is in
        // that arm of feature flag `new-cart`; E2E_CRASH=1: it panics on the
        // main thread instead of ending the session.
        "cli" => {
            if let Ok(variant) = std::env::var("E2E_FLAG") {
                otel_session::add_feature_flag("new-cart", variant).expect("a flag");
            }
            tracing::info_span!("command").in_scope(|| {
                tracing::info!("working");
                if std::env::var("E2E_ERROR").is_ok_and(|v| v == "1") {
                    tracing::error!("the command failed");
                }
            });
            if std::env::var("E2E_CRASH").is_ok_and(|v| v == "1") {
                tracing::info_span!("doomed").in_scope(give_up_on_main);
            }
            otel_session::end_session();
        }
        // Session properties and feature flags: a first session with two
        // properties, flag new-cart=b and flag dark-mode set and cleared, its
        // work in spans (an info and an ERROR record); then one session per
        // arm of ARMS, the flag set before it starts: work in a span, and
        // `!` a crash (record_unhandled_error), `?` a handled error; the flag
        // cleared before the last, which ends at shutdown. The ids in order.
        "properties" => {
            const ARMS: [&str; 6] = ["a", "a!", "a", "b", "b?", ""];
            let first = otel_session::current_session().expect("a session");
            let mut ids = vec![first.id().to_string()];
            otel_session::set_session_attribute("app.screen", "checkout").expect("a property");
            otel_session::set_session_attribute("app.offline", true).expect("a property");
            otel_session::add_feature_flag("new-cart", "b").expect("a flag");
            otel_session::add_feature_flag("dark-mode", "on").expect("a flag");
            otel_session::clear_feature_flag("dark-mode").expect("cleared");
            tracing::info_span!("cart").in_scope(|| {
                tracing::info_span!("cart-step").in_scope(|| tracing::info!("cart opened"));
                tracing::error!("cart failed");
            });
            otel_session::end_session();
            for arm in ARMS {
                let variant = arm.trim_end_matches(['!', '?']);
                if variant.is_empty() {
                    otel_session::clear_feature_flag("new-cart").expect("cleared");
                } else {
                    otel_session::add_feature_flag("new-cart", variant).expect("a flag");
                }
                let s = otel_session::start_session().expect("a session");
                ids.push(s.id().to_string());
                tracing::info_span!("arm-work").in_scope(|| tracing::info!("in an arm"));
                match arm.chars().last() {
                    Some('!') => otel_session::record_unhandled_error(),
                    Some('?') => otel_session::record_handled_error(),
                    _ => {}
                }
                if !variant.is_empty() {
                    otel_session::end_session();
                }
            }
            println!("SESSIONS={}", ids.join(","));
            println!("ARMS={}", ARMS.join(","));
        }
        // Request mode: E2E_REQUESTS requests (every tenth from the fourth
        // panics, every tenth from the eighth records a handled error), then
        // WAIT, then as many again.
        "server-requests" => {
            let n = env_number("E2E_REQUESTS", 20);
            let sessions = otel_session::global_manager().expect("manager");
            let serve = || {
                for i in 0..n {
                    serve(sessions.begin_request([]), move || {
                        tracing::info_span!("request").in_scope(|| match i % 10 {
                            3 => panic!("handler bug"),
                            7 => otel_session::record_handled_error(),
                            _ => {}
                        })
                    });
                }
            };
            serve();
            let _ = guard.meter_provider().map(|p| p.force_flush());
            wait_for_test();
            serve();
        }
        // The Debug output of everything the program can reach (must show no
        // header values), then one span and one log.
        "debug" => {
            println!("DEBUG_GUARD={guard:?}");
            println!("DEBUG_TRACER={:?}", guard.tracer_provider());
            println!("DEBUG_LOGGER={:?}", guard.logger_provider());
            println!("DEBUG_METER={:?}", guard.meter_provider());
            tracing::info_span!("plain").in_scope(|| tracing::info!("plain log"));
        }
        // Whatever the environment says; one span and one log.
        _ => {
            tracing::info_span!("plain").in_scope(|| tracing::info!("plain log"));
            println!(
                "SESSION={}",
                otel_session::current_session()
                    .map(|s| s.id().to_string())
                    .unwrap_or_default()
            );
        }
    }
}
