//! What the guard's `tracing` layers let through.

/// `false` for spans and events of the crates that carry telemetry out (exact
/// crate names: `tower_http`, an application's own layer, passes).
pub(crate) fn not_export_stack(meta: &tracing::Metadata<'_>) -> bool {
    const STACK: [&str; 11] = [
        "h2",
        "hyper",
        "hyper_util",
        "tonic",
        "tower",
        "reqwest",
        "rustls",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "opentelemetry_http",
    ];
    let target = meta.target();
    let krate = target.split("::").next().unwrap_or(target);
    !STACK.contains(&krate)
}

#[cfg(all(test, feature = "tracing"))]
mod tests {
    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Records which targets pass the filter.
    fn passes(target_events: impl FnOnce()) -> Vec<String> {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::Layer as _;
        #[derive(Clone, Default)]
        struct Seen(Arc<Mutex<Vec<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Seen {
            fn on_event(
                &self,
                e: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0
                    .lock()
                    .unwrap()
                    .push(e.metadata().target().to_string());
            }
        }
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry().with(seen.clone().with_filter(
            tracing_subscriber::filter::filter_fn(super::not_export_stack),
        ));
        with_default(subscriber, target_events);
        let out = seen.0.lock().unwrap().clone();
        out
    }

    #[test]
    fn the_export_stack_is_left_out_by_crate_name_only() {
        let seen = passes(|| {
            tracing::info!(target: "h2::codec", "frame");
            tracing::info!(target: "hyper", "conn");
            tracing::info!(target: "tonic::transport", "channel");
            tracing::info!(target: "opentelemetry_sdk", "internal");
            tracing::info!(target: "tower::buffer", "poll");
            tracing::info!(target: "tower_http::trace::on_failure", "500");
            tracing::info!(target: "hyperion", "app crate");
            tracing::info!(target: "my_app::checkout", "app");
        });
        assert_eq!(
            seen,
            [
                "tower_http::trace::on_failure",
                "hyperion",
                "my_app::checkout"
            ]
        );
    }
}
