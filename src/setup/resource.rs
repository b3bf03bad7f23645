//! The resource enricher: a [`ResourceDetector`] for the app and device context a
//! session is read against (`service.name` when given, `service.version`,
//! `deployment.environment.name`, `os.type`, `os.version`, `host.arch`,
//! `telemetry.distro.*`, and any attributes you add).
//!
//! `os.type` and `host.arch` use the semantic conventions' well-known values
//! (`darwin`, `amd64`, `arm64`, …). We do not reuse `opentelemetry-resource-detectors`
//! for them: its detectors report Rust's `std::env::consts` names (`macos`,
//! `x86_64`, `aarch64`), which backends do not recognise, and its host detector also
//! adds `host.name` / `host.id`, which identify a user's machine. `os.version` comes
//! from the `os_info` crate (Cargo feature `os-version`, on by default; without
//! it there is no `os.version`, while `os.type` and `host.arch` come from
//! `std::env::consts` either way). Keys set through `OTEL_RESOURCE_ATTRIBUTES`
//! or `OTEL_SERVICE_NAME` are never overridden: the detector leaves them out. So
//! `service.name` is, first to last: `OTEL_SERVICE_NAME`, `service.name` in
//! `OTEL_RESOURCE_ATTRIBUTES`, [`with_service_name`](SessionResourceDetector::with_service_name)
//! (`init!()` passes your package name), the SDK's `unknown_service:<binary>`.
//! (The SDK alone lets `OTEL_RESOURCE_ATTRIBUTES` win over `OTEL_SERVICE_NAME`,
//! against the specification; this detector restores the specified order.)
//! `session.id` is not here: a resource is fixed for a provider's life, sessions
//! are not.

use std::collections::HashSet;

use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::resource::{EnvResourceDetector, ResourceDetector};
use opentelemetry_sdk::Resource;

/// `service.name`
pub const SERVICE_NAME: &str = "service.name";
/// `service.instance.id` (a random UUID v4 per process unless set)
pub use crate::model::attr::SERVICE_INSTANCE_ID;
pub use crate::model::attr::SERVICE_VERSION;
/// `deployment.environment.name`
pub const DEPLOYMENT_ENVIRONMENT_NAME: &str = "deployment.environment.name";
/// `os.type`
pub const OS_TYPE: &str = "os.type";
/// `os.version`
pub const OS_VERSION: &str = "os.version";
/// `host.arch`
pub const HOST_ARCH: &str = "host.arch";
/// `telemetry.distro.name`
pub const TELEMETRY_DISTRO_NAME: &str = "telemetry.distro.name";
/// `telemetry.distro.version`
pub const TELEMETRY_DISTRO_VERSION: &str = "telemetry.distro.version";

/// Detects the app and device attributes of a session (see the module docs).
///
/// ```
/// use opentelemetry_sdk::Resource;
/// use otel_session::SessionResourceDetector;
/// let resource = Resource::builder()
///     .with_detector(Box::new(
///         SessionResourceDetector::new().with_service_version("1.4.2"),
///     ))
///     .build();
/// assert_eq!(
///     resource.get(&"telemetry.distro.name".into()).map(|v| v.to_string()),
///     Some("otel-session".to_string())
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct SessionResourceDetector {
    service_name: Option<String>,
    service_version: Option<String>,
    environment: Option<String>,
    attributes: Vec<KeyValue>,
}

impl SessionResourceDetector {
    /// A detector with no service version or environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
    /// set one (the environment of a deployment wins over the name in code).
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Adds resource attributes. They win over this detector's own values
    /// (`os.*`, `service.version`, …); keys set in the environment win over them.
    pub fn with_attributes(mut self, attributes: impl IntoIterator<Item = KeyValue>) -> Self {
        self.attributes.extend(attributes);
        self
    }

    /// Sets `service.version` (the app's version: stability is per release).
    pub fn with_service_version(mut self, version: impl Into<String>) -> Self {
        self.service_version = Some(version.into());
        self
    }

    /// Sets `deployment.environment.name` (e.g. `production`).
    pub fn with_deployment_environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }
}

/// `os.type` as the semantic conventions spell it.
pub(crate) fn os_type() -> &'static str {
    match std::env::consts::OS {
        "macos" | "ios" => "darwin",
        "android" => "linux",
        "dragonfly" => "dragonflybsd",
        "illumos" => "solaris",
        other => other,
    }
}

/// `host.arch` as the semantic conventions spell it.
pub(crate) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "powerpc" => "ppc32",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// `os.version` (Cargo feature `os-version`, on by default): what `os_info`
/// reports, the distribution's release on Linux (`12` for Debian 12), the
/// system's elsewhere; `None` when it cannot tell.
#[cfg(feature = "os-version")]
fn os_version() -> Option<String> {
    let v = os_info::get().version().to_string();
    (v != "Unknown" && !v.is_empty()).then_some(v)
}

/// Without the `os-version` feature there is no `os.version`: nothing in `std`
/// gives it, and guessing (a kernel release for a distribution's) would be
/// wrong for backends that group by it.
#[cfg(not(feature = "os-version"))]
fn os_version() -> Option<String> {
    None
}

/// This process's `service.instance.id`: a random UUID v4, the same for every
/// provider of the process (the semantic conventions' advice when nothing
/// stabler identifies the instance). Each process's cumulative metric series are
/// then its own: without it, every process of a release writes one series in
/// the collector's Prometheus exporter, each overwriting the last (see
/// collector-config/crash-free-rate.md); crash reports name the dead instance
/// by it. `OTEL_RESOURCE_ATTRIBUTES=service.instance.id=...` replaces it.
fn instance_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use crate::model::id::IdGenerator as _;
        crate::model::id::UuidV4Generator
            .new_session_id()
            .as_str()
            .to_string()
    })
    .clone()
}

impl ResourceDetector for SessionResourceDetector {
    fn detect(&self) -> Resource {
        // The resource is built from these in order, the last of equal keys
        // winning (the SDK's rule): ours, then the added attributes, then
        // `OTEL_SERVICE_NAME`.
        let mut attributes = vec![
            KeyValue::new(OS_TYPE, os_type()),
            KeyValue::new(HOST_ARCH, host_arch()),
        ];
        if let Some(name) = &self.service_name {
            attributes.push(KeyValue::new(SERVICE_NAME, name.clone()));
        }
        if let Some(v) = os_version() {
            attributes.push(KeyValue::new(OS_VERSION, v));
        }
        if let Some(v) = &self.service_version {
            attributes.push(KeyValue::new(SERVICE_VERSION, v.clone()));
        }
        if let Some(v) = &self.environment {
            attributes.push(KeyValue::new(DEPLOYMENT_ENVIRONMENT_NAME, v.clone()));
        }
        attributes.push(KeyValue::new(SERVICE_INSTANCE_ID, instance_id()));
        attributes.push(KeyValue::new(
            TELEMETRY_DISTRO_NAME,
            crate::model::attr::SCOPE_NAME,
        ));
        attributes.push(KeyValue::new(
            TELEMETRY_DISTRO_VERSION,
            env!("CARGO_PKG_VERSION"),
        ));

        attributes.extend(self.attributes.iter().cloned());

        let user_set: HashSet<Key> = EnvResourceDetector::new()
            .detect()
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        attributes.retain(|kv| !user_set.contains(&kv.key));
        // OTEL_SERVICE_NAME wins over `service.name` in OTEL_RESOURCE_ATTRIBUTES
        // (the specification's order; the SDK's resource builder applies the
        // attributes last, so this detector, applied after it, restores it).
        if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            attributes.push(KeyValue::new(SERVICE_NAME, name));
        }
        Resource::builder_empty()
            .with_attributes(attributes)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_has_one_random_instance_id() {
        let get = |r: &Resource| r.get(&Key::from_static_str(SERVICE_INSTANCE_ID));
        let a = SessionResourceDetector::new().detect();
        let b = SessionResourceDetector::new()
            .with_service_version("2")
            .detect();
        let id = get(&a).expect("service.instance.id").to_string();
        assert_eq!(
            get(&b).map(|v| v.to_string()),
            Some(id.clone()),
            "one per process"
        );
        let parsed = uuid::Uuid::try_parse(&id).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn added_attributes_win_the_last_of_equal_keys_and_no_name_is_invented() {
        let r = SessionResourceDetector::new()
            .with_attributes([
                KeyValue::new("app.tier", "first"),
                KeyValue::new(HOST_ARCH, "custom-arch"),
                KeyValue::new("app.tier", "last"),
            ])
            .detect();
        let get = |k: &'static str| r.get(&Key::from_static_str(k)).map(|v| v.to_string());
        assert_eq!(get("app.tier").as_deref(), Some("last"));
        let env_set = |k| {
            ["OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"]
                .iter()
                .any(|v| std::env::var(v).is_ok_and(|v| v.contains(k)))
        };
        if !env_set(HOST_ARCH) {
            assert_eq!(get(HOST_ARCH).as_deref(), Some("custom-arch"));
        }
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() && !env_set(SERVICE_NAME) {
            assert_eq!(get(SERVICE_NAME), None, "left to the SDK's default");
        }
    }
}
