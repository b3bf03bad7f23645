//! The resource enricher: what it adds, and that it never overrides what the user
//! set through OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES. (One test: it changes
//! the process environment.)

use opentelemetry::Key;
use opentelemetry_sdk::Resource;
use otel_session::SessionResourceDetector;

fn get(r: &Resource, k: &'static str) -> Option<String> {
    r.get(&Key::from_static_str(k)).map(|v| v.to_string())
}

#[test]
fn detector_adds_app_and_device_context_without_overriding_the_user() {
    let detector = SessionResourceDetector::new()
        .with_service_version("2.1.0")
        .with_deployment_environment("staging");

    let plain = Resource::builder()
        .with_detector(Box::new(detector.clone()))
        .build();
    assert_eq!(get(&plain, "service.version").as_deref(), Some("2.1.0"));
    assert_eq!(
        get(&plain, "deployment.environment.name").as_deref(),
        Some("staging")
    );
    assert_eq!(
        get(&plain, "os.type").as_deref(),
        Some(std::env::consts::OS)
    );
    if cfg!(target_arch = "x86_64") {
        assert_eq!(get(&plain, "host.arch").as_deref(), Some("amd64"));
    } else {
        assert!(get(&plain, "host.arch").is_some());
    }
    if cfg!(feature = "os-version") {
        assert!(get(&plain, "os.version").is_some_and(|v| !v.is_empty()));
    } else {
        assert_eq!(
            get(&plain, "os.version"),
            None,
            "no os.version without os_info"
        );
    }
    assert_eq!(
        get(&plain, "telemetry.distro.name").as_deref(),
        Some("otel-session")
    );
    assert_eq!(
        get(&plain, "telemetry.distro.version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        get(&plain, "host.name"),
        None,
        "identifying host data is left out"
    );
    assert_eq!(get(&plain, "session.id"), None);

    // SAFETY: this test binary has a single test; nothing else reads the environment.
    unsafe {
        std::env::set_var(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=9.9.9,deployment.environment.name=prod,os.type=custom",
        );
        std::env::set_var("OTEL_SERVICE_NAME", "checkout");
    }
    let user_set = Resource::builder()
        .with_detector(Box::new(detector))
        .build();
    assert_eq!(get(&user_set, "service.version").as_deref(), Some("9.9.9"));
    assert_eq!(
        get(&user_set, "deployment.environment.name").as_deref(),
        Some("prod")
    );
    assert_eq!(get(&user_set, "os.type").as_deref(), Some("custom"));
    assert_eq!(get(&user_set, "service.name").as_deref(), Some("checkout"));
    assert_eq!(
        get(&user_set, "telemetry.distro.name").as_deref(),
        Some("otel-session")
    );
}
