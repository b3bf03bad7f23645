//! A desktop app's sessions: the app session follows focus and idleness.
//!
//! ```text
//! cargo run --example desktop_app                     # console, no collector needed
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!     cargo run --example desktop_app                 # OTLP to your collector
//! ```
//!
//! A real UI program calls `otel_session::background()` when its window loses
//! focus (or the app is suspended) and `otel_session::foreground()` when it
//! comes back; see the README's recipes for Tauri, winit/egui and Bevy. Here the
//! focus changes are simulated, with timeouts shortened so the whole life of a
//! few sessions fits in a few seconds (override them with the usual variables):
//! - back after less than the background timeout (1 s here): same session;
//! - back after more: the old session ends (reason `background`) and a new one
//!   starts;
//! - idle longer than the inactivity timeout (1.5 s here): the session ends by
//!   itself (reason `inactivity`, dated at its last activity) and the next
//!   activity starts a new one.
//!
//! Sessions also say what the user was doing (README, "Properties and feature
//! flags"): the screen on display (`app.screen`, a property of the current
//! session only), the install's release channel (`app.channel`, permanent:
//! every later session carries it) and the arm of an experiment (feature flag
//! `new-editor`, carried by every later session of this run). Each session's
//! `session` summary span and `session.end` event carry them; `app.screen` and
//! the flag are also stamped onto every span and log record here
//! (`OTEL_SESSION_STAMP_ATTRIBUTES`, which overrides this example's list).

use std::time::Duration;

use otel_session::config::ExporterKind;
use tracing_subscriber::layer::SubscriberExt as _;

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let to_collector = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    let guard = otel_session::Builder::from_env()
        .with_service_version(env!("CARGO_PKG_VERSION"))
        .configure(|c| {
            // Short timeouts for the demo (the defaults are 30 s, 15 min and 4 h).
            let ms = |v: String| {
                otel_session::config::parse_duration(&v)
                    .map(|(d, _)| d)
                    .ok()
            };
            c.background_timeout =
                ms(env_or("OTEL_SESSION_BACKGROUND_TIMEOUT", "1s")).unwrap_or(c.background_timeout);
            c.inactivity_timeout =
                ms(env_or("OTEL_SESSION_INACTIVITY_TIMEOUT", "1500ms")).filter(|d| !d.is_zero());
            // Telemetry filtered by screen and arm, not only sessions: one more
            // attribute per key on every span and log record (BENCHMARKS.md).
            if c.stamp_attributes.is_empty() {
                c.stamp_attributes = vec!["app.screen".into(), "feature_flag.new-editor".into()];
            }
            if !to_collector {
                c.traces_exporter = ExporterKind::Console;
                c.logs_exporter = ExporterKind::Console;
                c.metrics_exporter = ExporterKind::None;
            }
        })
        .init()
        .expect("telemetry set up");
    let subscriber = tracing_subscriber::registry()
        .with(guard.tracing_layer())
        .with(guard.log_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let id = || {
        otel_session::current_session()
            .map(|s| s.id().to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    // What the current session carries, as `key=value` pairs.
    let carried = || {
        otel_session::current_session()
            .map(|s| {
                let pairs: Vec<String> = s
                    .attributes()
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                pairs.join(" ")
            })
            .unwrap_or_default()
    };
    // The app navigates: the screen is a property of the current session only.
    let show = |screen: &'static str| {
        otel_session::set_session_attribute("app.screen", screen).expect("a valid property")
    };
    // Facts about this install: every later session carries them too (and the
    // next run, with OTEL_SESSION_PERSIST_PATH) until removed.
    otel_session::set_permanent_session_attribute("app.channel", "beta").expect("a valid property");
    // The experiment arm (in a real app, from your flag provider): this session
    // and the later ones of this run.
    otel_session::add_feature_flag("new-editor", "b").expect("a valid flag");
    // A real UI loop also calls this once per frame: a frame that takes longer
    // than OTEL_SESSION_HANG_THRESHOLD (5 s) is reported as a hang (see the
    // README's "Crashes" and `cargo run --example crash -- hang`).
    otel_session::heartbeat();
    println!("SESSION_1={}", id());
    show("documents");
    tracing::info_span!("open-document").in_scope(|| tracing::info!("document opened"));

    println!("\n== window loses focus for 300 ms, then comes back: same session");
    otel_session::background();
    std::thread::sleep(Duration::from_millis(300));
    otel_session::foreground();
    println!("SESSION_AFTER_SHORT={}", id());
    show("editor");
    tracing::info_span!("edit").in_scope(|| tracing::info!("typing"));

    println!("\n== the app is minimised for 1.2 s: a new session on return");
    otel_session::background();
    std::thread::sleep(Duration::from_millis(1200));
    otel_session::foreground();
    println!("SESSION_2={}", id());
    // The channel and the flag came along; the screen did not (set it again).
    println!("CARRIED_2={}", carried());
    show("editor");
    tracing::info_span!("edit").in_scope(|| tracing::info!("typing again"));

    println!("\n== the user walks away for 2 s: the session ends by itself");
    std::thread::sleep(Duration::from_millis(2000));
    println!("SESSION_WHILE_AWAY={}", id());
    // No session now: the property waits for the next one (nothing starts for it).
    show("settings");
    tracing::info_span!("click").in_scope(|| tracing::info!("back at the keyboard"));
    println!("SESSION_3={}", id());
    println!("CARRIED_3={}", carried());
    drop(guard);
}
