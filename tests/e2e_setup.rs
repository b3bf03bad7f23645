//! End to end, the set-up for production: queue sizes from the environment.
//!
//! Children: `examples/e2e_child.rs`. Needs rotel
//! (`bash scripts/install-collector.sh`).

mod support;

use std::time::Duration;

use support::{run_child, ChildRun, Receiver, Rotel};

const LIMIT: Duration = Duration::from_secs(60);

fn ok(run: &ChildRun) {
    assert!(
        run.status.success(),
        "child failed ({:?}):\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

#[test]
fn queue_sizes_from_the_environment_are_clamped_and_cannot_abort_the_process() {
    let receiver = Receiver::start();
    let rotel = Rotel::start(receiver.addr);
    let run = run_child(
        "plain",
        &support::grpc_env(
            rotel.grpc_endpoint(),
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100000000"),
                ("OTEL_BLRP_MAX_QUEUE_SIZE", "18446744073709551615"),
                (
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                    "99999999999999999999999999",
                ),
                ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "0"),
                ("OTEL_BSP_SCHEDULE_DELAY", "0"),
            ],
        ),
        LIMIT,
    );
    ok(&run);
    for warning in [
        "OTEL_BSP_MAX_QUEUE_SIZE=\"100000000\" is above the maximum of 131072; using 131072",
        "OTEL_BLRP_MAX_QUEUE_SIZE=\"18446744073709551615\" is above the maximum of 131072",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=\"99999999999999999999999999\" is above the maximum of 8192",
        "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE=\"0\" is not valid (must be at least 1); using 512",
        "OTEL_BSP_SCHEDULE_DELAY=\"0\" is not valid (must be greater than 0)",
    ] {
        assert_eq!(
            run.stderr.matches(warning).count(),
            1,
            "{warning}\n{}",
            run.stderr
        );
    }
    let got = receiver.wait_for(Duration::from_secs(15), |r| {
        r.spans.iter().any(|s| s.name == "plain") && r.logs.iter().any(|l| l.body == "plain log")
    });
    assert!(got.spans.iter().any(|s| s.name == "plain"), "spans flow");
    assert!(got.logs.iter().any(|l| l.body == "plain log"), "logs flow");
}
