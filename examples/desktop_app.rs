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
    // A real UI loop also calls this once per frame: a frame that takes longer
    // than OTEL_SESSION_HANG_THRESHOLD (5 s) is reported as a hang (see the
    // README's "Crashes" and `cargo run --example crash -- hang`).
    otel_session::heartbeat();
    println!("SESSION_1={}", id());
    tracing::info_span!("open-document").in_scope(|| tracing::info!("document opened"));

    println!("\n== window loses focus for 300 ms, then comes back: same session");
    otel_session::background();
    std::thread::sleep(Duration::from_millis(300));
    otel_session::foreground();
    println!("SESSION_AFTER_SHORT={}", id());
    tracing::info_span!("edit").in_scope(|| tracing::info!("typing"));

    println!("\n== the app is minimised for 1.2 s: a new session on return");
    otel_session::background();
    std::thread::sleep(Duration::from_millis(1200));
    otel_session::foreground();
    println!("SESSION_2={}", id());
    tracing::info_span!("edit").in_scope(|| tracing::info!("typing again"));

    println!("\n== the user walks away for 2 s: the session ends by itself");
    std::thread::sleep(Duration::from_millis(2000));
    println!("SESSION_WHILE_AWAY={}", id());
    tracing::info_span!("click").in_scope(|| tracing::info!("back at the keyboard"));
    println!("SESSION_3={}", id());
    drop(guard);
}
