//! Memory: the quickstart over OTLP with no collector listening peaks at 12 MiB
//! resident at most (figures and method: BENCHMARKS.md, "Memory"). Measured
//! exactly (see `support::rss`) on the release build of the example, as users
//! ship it (a debug build's code alone is about 10 MiB resident):
//! `scripts/test-all.sh` builds it first (`cargo build --release --example
//! quickstart`); a missing or stale build fails the test with that command.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::rss::peak_rss;

const LIMIT_KIB: u64 = 12 * 1024;

/// The newest modification time under `path` (files of the crate's sources).
fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).expect("source");
    if meta.is_dir() {
        std::fs::read_dir(path)
            .expect("dir")
            .flatten()
            .map(|e| newest(&e.path()))
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    } else {
        meta.modified().expect("mtime")
    }
}

/// `target/release/examples/quickstart`, built after the last source change.
fn release_quickstart() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let target = exe
        .parent()
        .and_then(|d| d.parent())
        .and_then(|d| d.parent())
        .expect("target dir");
    let bin = target.join("release/examples/quickstart");
    let fix = "run `cargo build --release --example quickstart` first (scripts/test-all.sh does)";
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {fix}", bin.display()));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sources = [
        root.join("src"),
        root.join("examples/quickstart.rs"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    let newest_source = sources.iter().map(|p| newest(p)).max().expect("sources");
    assert!(
        built >= newest_source,
        "{} is older than the sources: {fix}",
        bin.display()
    );
    bin
}

fn quickstart_peak(protocol: &str) -> u64 {
    let port = support::free_port();
    let run = peak_rss(
        &release_quickstart(),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("could not export"),
        "it did try to export: {}",
        run.stderr
    );
    println!(
        "quickstart over {protocol}, no collector: peak RSS {} KiB",
        run.peak_kib
    );
    run.peak_kib
}

#[test]
fn the_quickstart_over_otlp_http_with_no_collector_peaks_at_12_mib_at_most() {
    let peak = quickstart_peak("http/protobuf");
    assert!(peak > 1024, "a real measurement: {peak} KiB");
    assert!(peak <= LIMIT_KIB, "peak RSS {peak} KiB > {LIMIT_KIB} KiB");
}

#[test]
fn the_quickstart_over_otlp_grpc_with_no_collector_peaks_at_12_mib_at_most() {
    let peak = quickstart_peak("grpc");
    assert!(peak <= LIMIT_KIB, "peak RSS {peak} KiB > {LIMIT_KIB} KiB");
}
