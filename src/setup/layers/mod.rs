//! The guard's `tracing` layers ([`Guard::tracing_layer`](crate::Guard::tracing_layer),
//! [`Guard::log_layer`](crate::Guard::log_layer)) and what they let through.
//!
//! - **Level filter.** [`Builder::with_tracing_filter`](crate::Builder::with_tracing_filter)
//!   when given, else `RUST_LOG` when set and not empty, else `info`, in
//!   `tracing-subscriber`'s `EnvFilter` syntax (`info,my_app=debug,h2=off`). An
//!   invalid filter is one warning naming it; the next source is used. It is a
//!   per-layer filter: it decides what is exported, not what your other layers see.
//! - **The export stack's own telemetry** is left out by OpenTelemetry's telemetry
//!   suppression, not by crate name: whatever is emitted on a thread that exports
//!   (the SDK's batch and periodic threads, our export runtime, see
//!   `export::runtime`) passes neither layer. Your own `hyper`, `reqwest`, `tonic`
//!   or `tower` events, on your threads, are exported like any others.
//! - **Each event once**, as a log record ([`Guard::log_layer`](crate::Guard::log_layer)).
//!   The span layer does not also record it as a span event unless
//!   [`Builder::with_span_events`](crate::Builder::with_span_events) asks for it;
//!   an `ERROR` event still marks its span's status as Error (see `span_layer`).
//! - **Counting never depends on what is exported**: with logs (or traces) off,
//!   the layer of that signal counts the errors its pipeline would have
//!   counted (`count`).
//! - **Two OpenTelemetry layers in one subscriber** (`tracing-opentelemetry`
//!   panics when both see a span): the span layer detects another one at its
//!   first span, turns itself off and says so once, instead of the panic.

mod count;
mod span_layer;

pub(crate) use count::{Counting, ErrorCounter};
pub(crate) use span_layer::SessionSpanLayer;

use tracing_subscriber::filter::{EnvFilter, FilterExt as _};

/// The filter when neither code nor `RUST_LOG` give one.
pub(crate) const DEFAULT_FILTER: &str = "info";

/// What the guard's layers let through, fixed at `init()`.
#[derive(Debug, Clone)]
pub(crate) struct LayerSettings {
    /// Validated `EnvFilter` directives.
    pub(crate) directives: String,
    /// Also record `tracing` events as span events.
    pub(crate) span_events: bool,
}

/// The filter directives: `code` if valid, else `RUST_LOG` from `lookup` if set
/// and valid, else [`DEFAULT_FILTER`]; a warning for each invalid one.
pub(crate) fn resolve_directives(
    code: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (String, Vec<String>) {
    let mut warnings = Vec::new();
    if let Some(dirs) = code {
        match EnvFilter::builder().parse(dirs) {
            Ok(_) => return (dirs.to_string(), warnings),
            Err(_) => warnings.push(format!(
                "Builder::with_tracing_filter({dirs:?}) is not a valid filter ({}); \
                 the guard's tracing layers use RUST_LOG or {DEFAULT_FILTER} instead",
                filter_reason(dirs)
            )),
        }
    }
    if let Some(dirs) = lookup("RUST_LOG").filter(|v| !v.trim().is_empty()) {
        match EnvFilter::builder().parse(&dirs) {
            Ok(_) => return (dirs, warnings),
            Err(_) => warnings.push(format!(
                "RUST_LOG={dirs:?} is not a valid filter ({}); the guard's tracing layers \
                 use {DEFAULT_FILTER}",
                filter_reason(&dirs)
            )),
        }
    }
    (DEFAULT_FILTER.to_string(), warnings)
}

/// The levels a directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Why `dirs` is not a filter, in words (the parser's own messages speak of
/// "invalid field filter" and regex internals): the first directive it
/// refuses (`EnvFilter` splits on commas too), and its level when that is
/// what is wrong.
fn filter_reason(dirs: &str) -> String {
    let bad = dirs
        .split(',')
        .filter(|d| !d.is_empty())
        .find(|d| EnvFilter::builder().parse(d).is_err())
        .unwrap_or(dirs);
    let syntax = "write a level or target=level, e.g. info,my_app=debug,h2=off";
    let is_level = |l: &str| {
        let l = l.trim();
        LEVELS.iter().any(|n| n.eq_ignore_ascii_case(l))
            || matches!(l, "0" | "1" | "2" | "3" | "4" | "5")
    };
    match bad.rsplit_once('=') {
        Some((_, level)) if !level.contains([']', '}']) && !is_level(level) => {
            format!(
                "in {bad:?}, {level:?} is not a level: expected {}{}",
                crate::setup::config::one_of(&LEVELS),
                crate::setup::config::suggest::did_you_mean(level, &LEVELS)
            )
        }
        _ if bad.contains('{') => format!(
            "{bad:?} is not a directive: {syntax}; a field value in {{..}} is a regular \
             expression and has to be a valid one"
        ),
        _ => format!("{bad:?} is not a directive: {syntax}"),
    }
}

/// A layer that may be absent: `Option<L>` in all but one respect. The guard's
/// layers are `None` when their signal is off, and `tracing-subscriber` 0.3's
/// `Option<L>` does not pass `on_register_dispatch` on, which the span layer
/// needs (to find its spans for an `ERROR` status and to detect another
/// OpenTelemetry layer).
pub(crate) struct MaybeLayer<L>(pub(crate) Option<L>);

impl<S, L> tracing_subscriber::Layer<S> for MaybeLayer<L>
where
    S: tracing::Subscriber,
    L: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        if let Some(layer) = &self.0 {
            layer.on_register_dispatch(subscriber);
        }
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        self.0.register_callsite(metadata)
    }
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.enabled(metadata, ctx)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        self.0.max_level_hint()
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, ctx);
    }
    fn on_record(
        &self,
        span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_record(span, values, ctx);
    }
    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_follows_from(span, follows, ctx);
    }
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        self.0.event_enabled(event, ctx)
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_event(event, ctx);
    }
    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_enter(id, ctx);
    }
    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_exit(id, ctx);
    }
    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.on_close(id, ctx);
    }
    fn on_id_change(
        &self,
        old: &tracing::span::Id,
        new: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.on_id_change(old, new, ctx);
    }
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: `Option<L>`'s own answer (its "no layer" marker included).
        unsafe { self.0.downcast_raw(id) }
    }
}

/// One of two layers (a signal's layer, or the counting layer that stands in
/// for it when the signal is off). Not `a.and_then(b)` with one of them
/// absent: `tracing-subscriber` 0.3 then loses the present one's events when
/// it has a per-layer filter.
pub(crate) enum Either<A, B> {
    A(A),
    B(B),
}

macro_rules! either {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            Either::A($l) => $e,
            Either::B($l) => $e,
        }
    };
}

impl<S, A, B> tracing_subscriber::Layer<S> for Either<A, B>
where
    S: tracing::Subscriber,
    A: tracing_subscriber::Layer<S>,
    B: tracing_subscriber::Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        either!(self, l => l.on_register_dispatch(subscriber))
    }
    fn on_layer(&mut self, subscriber: &mut S) {
        either!(self, l => l.on_layer(subscriber))
    }
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        either!(self, l => l.register_callsite(metadata))
    }
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        either!(self, l => l.enabled(metadata, ctx))
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        either!(self, l => l.max_level_hint())
    }
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        either!(self, l => l.on_new_span(attrs, id, ctx))
    }
    fn on_record(
        &self,
        span: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        either!(self, l => l.on_record(span, values, ctx))
    }
    fn on_follows_from(
        &self,
        span: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        either!(self, l => l.on_follows_from(span, follows, ctx))
    }
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        either!(self, l => l.event_enabled(event, ctx))
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        either!(self, l => l.on_event(event, ctx))
    }
    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        either!(self, l => l.on_enter(id, ctx))
    }
    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        either!(self, l => l.on_exit(id, ctx))
    }
    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        either!(self, l => l.on_close(id, ctx))
    }
    fn on_id_change(
        &self,
        old: &tracing::span::Id,
        new: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        either!(self, l => l.on_id_change(old, new, ctx))
    }
    unsafe fn downcast_raw(&self, id: std::any::TypeId) -> Option<*const ()> {
        if id == std::any::TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the present layer's own answer.
        either!(self, l => unsafe { l.downcast_raw(id) })
    }
}

/// `false` on a thread where OpenTelemetry telemetry is suppressed.
fn not_suppressed(_: &tracing::Metadata<'_>) -> bool {
    !opentelemetry::Context::is_current_telemetry_suppressed()
}

/// The per-layer filter of both layers: the level filter, and nothing emitted
/// under telemetry suppression.
pub(crate) fn layer_filter<S>(
    directives: &str,
) -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    EnvFilter::builder()
        .parse_lossy(directives)
        .and(tracing_subscriber::filter::filter_fn(not_suppressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn code_then_rust_log_then_info_each_bad_one_warned() {
        assert_eq!(resolve_directives(None, &env(&[])), ("info".into(), vec![]));
        assert_eq!(
            resolve_directives(None, &env(&[("RUST_LOG", "  ")])).0,
            "info",
            "an empty RUST_LOG counts as unset"
        );
        assert_eq!(
            resolve_directives(None, &env(&[("RUST_LOG", "trace")])),
            ("trace".into(), vec![])
        );
        assert_eq!(
            resolve_directives(Some("warn,my_app=debug"), &env(&[("RUST_LOG", "trace")])),
            ("warn,my_app=debug".into(), vec![])
        );
        let (d, w) = resolve_directives(None, &env(&[("RUST_LOG", "info,=[")]));
        assert_eq!(d, "info");
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("RUST_LOG=\"info,=[\" is not a valid filter"),
            "{w:?}"
        );
        let (d, w) = resolve_directives(Some("lots=of=noise"), &env(&[("RUST_LOG", "debug")]));
        assert_eq!(d, "debug", "a bad code filter falls back to RUST_LOG");
        assert!(w[0].starts_with("Builder::with_tracing_filter(\"lots=of=noise\")"));
    }

    #[test]
    fn a_bad_filter_is_explained_in_plain_words() {
        let warning = |dirs: &'static str| {
            let vars: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([("RUST_LOG", dirs)]));
            resolve_directives(None, &env(vars)).1.remove(0)
        };
        assert_eq!(
            warning("info,my_app=debg"),
            "RUST_LOG=\"info,my_app=debg\" is not a valid filter (in \"my_app=debg\", \"debg\" \
             is not a level: expected off, error, warn, info, debug or trace; did you mean \
             debug?); the guard's tracing layers use info"
        );
        assert_eq!(
            warning("debug,a[b]c=info"),
            "RUST_LOG=\"debug,a[b]c=info\" is not a valid filter (\"a[b]c=info\" is not a \
             directive: write a level or target=level, e.g. info,my_app=debug,h2=off); the \
             guard's tracing layers use info"
        );
        assert!(
            warning("x[y{z=/(/}]=info").contains("a field value in {..} is a regular expression"),
        );
        assert!(warning("x=6").contains("\"6\" is not a level"));
        for dirs in [
            "info,my_app=loud",
            "a[{=]",
            "x[y{z=/(/}]=info",
            "=[",
            "x=-1",
        ] {
            let w = warning(dirs);
            for jargon in [
                "invalid filter directive",
                "invalid field filter",
                "error parsing",
                "NFA",
            ] {
                assert!(!w.contains(jargon), "{jargon:?} in {w}");
            }
        }
    }
}
