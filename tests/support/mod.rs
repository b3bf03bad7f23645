//! End-to-end test support: a real collector (rotel) started on free loopback
//! ports, an OTLP gRPC receiver it forwards to, and child processes running a
//! scenario through `otel_session::init!()`.
#![allow(dead_code)]

mod child;
pub mod fake_otlp;
pub mod otelcol;
pub mod rss;
mod temp;
pub mod tls;

#[allow(unused_imports)] // not every test binary runs children
pub use child::{
    child_env, dies_with_test, example_bin, grpc_env, run_child, run_child_with, ChildRun,
};
#[allow(unused_imports)] // not every test binary uses every helper
pub use temp::{temp_dir, TempDir};

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use tonic::codec::CompressionEncoding;

/// A span as received, flattened for assertions.
#[derive(Debug, Clone)]
pub struct GotSpan {
    pub name: String,
    pub attrs: HashMap<String, String>,
    pub session_id_count: usize,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub events: Vec<String>,
    /// Each span event's name and attributes, in order.
    pub event_attrs: Vec<(String, HashMap<String, String>)>,
    pub start_ns: u64,
    pub end_ns: u64,
    pub scope: String,
    pub resource: HashMap<String, String>,
    /// The span status code (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Attribute keys the span carries more than once (OTLP wants them unique).
    pub repeated_keys: Vec<String>,
}

impl GotSpan {
    pub fn sid(&self) -> Option<&str> {
        self.attrs.get("session.id").map(String::as_str)
    }
}

/// A log record as received.
#[derive(Debug, Clone)]
pub struct GotLog {
    pub event_name: String,
    pub body: String,
    pub severity: i32,
    pub attrs: HashMap<String, String>,
    pub scope: String,
    pub resource: HashMap<String, String>,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    /// Attribute keys the record carries more than once.
    pub repeated_keys: Vec<String>,
}

impl GotLog {
    pub fn sid(&self) -> Option<&str> {
        self.attrs.get("session.id").map(String::as_str)
    }
}

/// A metric data point as received: (metric name, attributes, value).
#[derive(Debug, Clone)]
pub struct GotPoint {
    pub name: String,
    pub attrs: HashMap<String, String>,
    pub value: f64,
}

#[derive(Default)]
pub struct Received {
    pub spans: Vec<GotSpan>,
    pub logs: Vec<GotLog>,
    pub points: Vec<GotPoint>,
}

impl Received {
    /// Asserts that only the app's telemetry (log records of target `app`, spans
    /// of the `tracing` layer) and otel-session's arrived: nothing the export
    /// stack emitted about itself was fed back.
    pub fn assert_nothing_fed_back(&self, app: &str) {
        let foreign: Vec<String> = self
            .logs
            .iter()
            .filter(|l| l.scope != app && l.scope != "otel-session")
            .map(|l| format!("{}: {}", l.scope, l.body))
            .collect();
        assert!(
            foreign.is_empty(),
            "{} log records of the export stack fed back: {:?}",
            foreign.len(),
            &foreign[..foreign.len().min(10)]
        );
        let foreign_spans: Vec<String> = self
            .spans
            .iter()
            .filter(|s| s.scope != "tracing" && s.scope != "otel-session")
            .map(|s| format!("{}: {}", s.scope, s.name))
            .collect();
        assert!(foreign_spans.is_empty(), "{foreign_spans:?}");
    }
}

fn value(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(&kv.value)))
        .collect()
}

/// The keys that occur more than once in `kvs` (a map of them keeps one).
fn repeated_keys(kvs: &[KeyValue]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut repeated: Vec<String> = kvs
        .iter()
        .filter(|kv| !seen.insert(kv.key.as_str()))
        .map(|kv| kv.key.clone())
        .collect();
    repeated.sort();
    repeated.dedup();
    repeated
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Received>>, bool, Duration);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.2).await;
        let req = req.into_inner();
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if self.1 {
            // Light: names only, so the receiver is not what a benchmark measures.
            for rs in req.resource_spans {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        got.spans.push(GotSpan {
                            name: s.name,
                            attrs: HashMap::new(),
                            session_id_count: 0,
                            trace_id: Vec::new(),
                            span_id: Vec::new(),
                            parent_span_id: Vec::new(),
                            events: Vec::new(),
                            event_attrs: Vec::new(),
                            start_ns: 0,
                            end_ns: 0,
                            scope: String::new(),
                            resource: HashMap::new(),
                            status_code: 0,
                            repeated_keys: Vec::new(),
                        });
                    }
                }
            }
            return Ok(tonic::Response::new(ExportTraceServiceResponse::default()));
        }
        for rs in req.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for s in ss.spans {
                    got.spans.push(GotSpan {
                        name: s.name.clone(),
                        session_id_count: s
                            .attributes
                            .iter()
                            .filter(|kv| kv.key == "session.id")
                            .count(),
                        attrs: attrs(&s.attributes),
                        trace_id: s.trace_id.clone(),
                        span_id: s.span_id.clone(),
                        parent_span_id: s.parent_span_id.clone(),
                        events: s.events.iter().map(|e| e.name.clone()).collect(),
                        event_attrs: s
                            .events
                            .iter()
                            .map(|e| (e.name.clone(), attrs(&e.attributes)))
                            .collect(),
                        start_ns: s.start_time_unix_nano,
                        end_ns: s.end_time_unix_nano,
                        scope: scope.clone(),
                        resource: resource.clone(),
                        status_code: s.status.as_ref().map_or(0, |st| st.code),
                        repeated_keys: repeated_keys(&s.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.2).await;
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for rl in req.into_inner().resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for sl in rl.scope_logs {
                let scope = sl
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for l in sl.log_records {
                    got.logs.push(GotLog {
                        event_name: l.event_name.clone(),
                        body: value(&l.body),
                        severity: l.severity_number,
                        attrs: attrs(&l.attributes),
                        scope: scope.clone(),
                        resource: resource.clone(),
                        trace_id: l.trace_id.clone(),
                        span_id: l.span_id.clone(),
                        repeated_keys: repeated_keys(&l.attributes),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.2).await;
        let mut got = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for rm in req.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    match &m.data {
                        Some(metric::Data::Sum(s)) => {
                            for dp in &s.data_points {
                                let v = match dp.value {
                                    Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i as f64,
                                    Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(d)) => d,
                                    None => 0.0,
                                };
                                got.points.push(GotPoint {
                                    name: m.name.clone(),
                                    attrs: attrs(&dp.attributes),
                                    value: v,
                                });
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for dp in &h.data_points {
                                got.points.push(GotPoint {
                                    name: m.name.clone(),
                                    attrs: attrs(&dp.attributes),
                                    value: dp.count as f64,
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// An OTLP gRPC receiver on 127.0.0.1 with its own runtime (gzip accepted, large
/// messages allowed: rotel compresses and batches up to 8,192 spans).
pub struct Receiver {
    pub addr: SocketAddr,
    data: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::start_with(false, Duration::ZERO)
    }

    /// A receiver that keeps only span names (for benchmarks).
    pub fn start_light() -> Receiver {
        Self::start_with(true, Duration::ZERO)
    }

    /// A receiver that answers every export only after `delay` (a slow collector).
    pub fn start_slow(delay: Duration) -> Receiver {
        Self::start_with(false, delay)
    }

    fn start_with(light: bool, delay: Duration) -> Receiver {
        let sink = Sink(Arc::default(), light, delay);
        let data = Arc::clone(&sink.0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let limit = 64 * 1024 * 1024;
                tonic::transport::Server::builder()
                    .add_service(
                        TraceServiceServer::new(sink.clone())
                            .accept_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(limit),
                    )
                    .add_service(
                        LogsServiceServer::new(sink.clone())
                            .accept_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(limit),
                    )
                    .add_service(
                        MetricsServiceServer::new(sink)
                            .accept_compressed(CompressionEncoding::Gzip)
                            .max_decoding_message_size(limit),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Receiver {
            addr,
            data,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until `done` holds for what was received; returns it.
    pub fn wait_for(
        &self,
        limit: Duration,
        done: impl Fn(&Received) -> bool,
    ) -> std::sync::MutexGuard<'_, Received> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let got = self.data.lock().unwrap_or_else(|e| e.into_inner());
                if done(&got) || Instant::now() >= deadline {
                    return got;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forgets what was received so far.
    pub fn clear(&self) {
        *self.data.lock().unwrap_or_else(|e| e.into_inner()) = Received::default();
    }

    pub fn received(&self) -> std::sync::MutexGuard<'_, Received> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The rotel binary: `ROTEL_BIN`, or where `scripts/install-collector.sh` puts it.
pub fn rotel_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib = root.join(".tools/venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            let candidate = e.path().join("site-packages/rotel/rotel-agent");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    panic!(
        "the rotel collector is not installed: run `bash scripts/install-collector.sh` \
         (the README's test command does), or set ROTEL_BIN"
    );
}

/// The arguments in `collector-config/rotel-e2e.args`, one per line.
fn rotel_args() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("collector-config/rotel-e2e.args");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different free ports on 127.0.0.1. All `n` are held while they are picked:
/// calling [`free_port`] `n` times can give the same port twice (the kernel may
/// hand a port out again once it is closed; about 1 in 650 sets of 7 here), and a
/// server configured with one port twice serves both uses with one socket.
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// Whether the process `pid` itself listens on 127.0.0.1 at each of `ports`:
/// its open sockets (`/proc/PID/fd`) include the listening socket of each port
/// (`/proc/net/tcp`). A port that only accepts connections may be another
/// process's (one that took it between [`free_ports`] and our server's bind): a
/// connection test alone would take that server for ours.
pub fn listens_on(pid: u32, ports: &[u16]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let sockets: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let listening: std::collections::HashSet<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            let (ip, port) = f.get(1)?.split_once(':')?;
            let ours = ip == "0100007F" && f.get(3) == Some(&"0A") && sockets.contains(*f.get(9)?);
            ours.then(|| u16::from_str_radix(port, 16).ok()).flatten()
        })
        .collect();
    ports.iter().all(|p| listening.contains(p))
}

/// Waits (up to `limit_s` seconds) until `child`, just started, listens on
/// 127.0.0.1 at each of `ports` — its own sockets: a port that answers may be
/// another server's. Else the child is gone and the error is its output
/// (`log`), where a server says that a port was taken.
pub fn until_listening(
    child: &mut Child,
    ports: &[u16],
    log: &std::path::Path,
    limit_s: u64,
) -> Result<(), String> {
    let output = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(limit_s);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited ({status}): {}", output()));
        }
        if listens_on(child.id(), ports) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no ports open within {limit_s} s: {}", output()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running rotel, forwarding OTLP to a receiver; killed on drop.
pub struct Rotel {
    child: Child,
    pub grpc: u16,
    pub http: u16,
    /// Its output (`rotel.log`): a file, so that it never blocks on a full pipe.
    _dir: tls::TempDir,
}

impl Rotel {
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Starts rotel on free ports (retrying when a port was taken meanwhile),
    /// forwarding to `forward_to`, batching for 10 ms.
    pub fn start(forward_to: SocketAddr) -> Rotel {
        Self::start_on(forward_to, None)
    }

    /// As [`start`](Self::start), on the given gRPC port if any.
    pub fn start_on(forward_to: SocketAddr, grpc_port: Option<u16>) -> Rotel {
        Self::start_on_ports(forward_to, grpc_port, None)
    }

    /// Runs the child `scenario` against a collector that is down at first: it
    /// exports over `protocol` to a free port (export timeout 1 s, plus `more`),
    /// where rotel, forwarding to `forward_to`, starts when the child prints
    /// `WAIT`. The run, and rotel if it started.
    pub fn down_then_up(
        forward_to: SocketAddr,
        scenario: &str,
        protocol: &str,
        more: &[(&str, String)],
        limit: std::time::Duration,
    ) -> (ChildRun, Option<Rotel>) {
        let port = free_port();
        let mut env = vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_string()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_string()),
        ];
        env.extend(more.iter().cloned());
        let mut rotel = None;
        let run = run_child_with(scenario, &env, limit, |_| {
            rotel = Some(if protocol == "grpc" {
                Rotel::start_on_ports(forward_to, Some(port), None)
            } else {
                Rotel::start_on_ports(forward_to, None, Some(port))
            })
        });
        (run, rotel)
    }

    /// As [`start`](Self::start), on the given gRPC and HTTP ports if any.
    pub fn start_on_ports(
        forward_to: SocketAddr,
        grpc_port: Option<u16>,
        http_port: Option<u16>,
    ) -> Rotel {
        let bin = rotel_bin();
        for _attempt in 0..5 {
            // Two different ports, and not a port given for the other endpoint.
            let (grpc, http) = loop {
                let free = free_ports(2);
                let pair = (grpc_port.unwrap_or(free[0]), http_port.unwrap_or(free[1]));
                if pair.0 != pair.1 {
                    break pair;
                }
            };
            let mut cmd = Command::new(&bin);
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("ROTEL_") {
                    cmd.env_remove(k);
                }
            }
            // The configuration the tests run is a file of the repo's, kept in
            // step with the one for users (collector-config/).
            let pid_file = std::env::temp_dir().join(format!("rotel-{grpc}.pid"));
            let args: Vec<String> = rotel_args()
                .iter()
                .map(|a| {
                    a.replace("{GRPC_PORT}", &grpc.to_string())
                        .replace("{HTTP_PORT}", &http.to_string())
                        .replace("{FORWARD_TO}", &forward_to.to_string())
                        .replace("{PID_FILE}", &pid_file.to_string_lossy())
                })
                .collect();
            // Its output, stdout and stderr (where it says that a port was taken).
            let dir = tls::TempDir::new("rotel");
            let log = std::fs::File::create(dir.path("rotel.log")).expect("rotel log");
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("rotel log")))
                .stderr(Stdio::from(log));
            dies_with_test(&mut cmd);
            let mut child = cmd.spawn().expect("start rotel");
            match until_listening(&mut child, &[grpc, http], &dir.path("rotel.log"), 10) {
                Ok(()) => {
                    return Rotel {
                        child,
                        grpc,
                        http,
                        _dir: dir,
                    }
                }
                Err(out)
                    if out.to_ascii_lowercase().contains("address already in use")
                        && grpc_port.is_none()
                        && http_port.is_none() => {} // retry with new ports
                Err(out) => panic!("rotel did not start: {out}"),
            }
        }
        panic!("could not start rotel on free ports after 5 attempts");
    }

    /// SIGTERM (rotel flushes and exits), then wait.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// SIGTERM `child` (a collector or backend flushes and exits), wait up to `grace`,
/// then kill it.
pub fn terminate(child: &mut Child, grace: Duration) {
    // SAFETY: signalling our own child by pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Rotel {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
