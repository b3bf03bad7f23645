//! The standard OpenTelemetry Collector (`otelcol-session`, built from the
//! Collector's Go modules by `scripts/install-otelcol.sh`) running a file of
//! `collector-config/` as it is, on free 127.0.0.1 ports given through the
//! file's `${env:…}` settings; and Prometheus (Debian's package) scraping it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tls::TempDir;
use super::{dies_with_test, free_ports, terminate, until_listening};

/// The collector binary: `OTELCOL_BIN`, or where `scripts/install-otelcol.sh`
/// puts it.
pub fn otelcol_bin() -> PathBuf {
    let bin = std::env::var_os("OTELCOL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/otelcol/otelcol-session")
        });
    assert!(
        bin.exists(),
        "the OpenTelemetry Collector is not built: run `bash scripts/install-otelcol.sh` \
         (the README's test command does), or set OTELCOL_BIN"
    );
    bin
}

/// A file of `collector-config/`.
pub fn config(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("collector-config")
        .join(name)
}

/// `otelcol validate --config FILE` with `env`: the collector's own check of a
/// configuration (component names, fields, types).
pub fn validate(file: &Path, env: &[(&str, String)]) -> Result<(), String> {
    let mut cmd = Command::new(otelcol_bin());
    cmd.arg("validate").arg("--config").arg(file);
    clean_env(&mut cmd, env);
    let out = cmd.output().map_err(|e| format!("run otelcol: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn clean_env(cmd: &mut Command, env: &[(&str, String)]) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("OTEL") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// A running collector; SIGTERM (it flushes and exits) on drop.
pub struct Otelcol {
    child: Option<Child>,
    file: PathBuf,
    env: Vec<(String, String)>,
    pub grpc: u16,
    pub http: u16,
    /// Where it serves its own metrics (`/metrics`).
    pub metrics: u16,
    /// Its output (`otelcol.log`): a file, so that it never blocks on a pipe.
    dir: TempDir,
}

impl Otelcol {
    /// Runs `file` with `env` (plus the receiver's ports) on free ports,
    /// retrying with new ones when a port was taken meanwhile.
    pub fn start(file: &Path, env: &[(&str, String)]) -> Otelcol {
        for _attempt in 0..5 {
            let free = free_ports(3);
            let mut col = Otelcol {
                child: None,
                file: file.to_path_buf(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                grpc: free[0],
                http: free[1],
                metrics: free[2],
                dir: TempDir::new("otelcol"),
            };
            match col.spawn() {
                Ok(()) => return col,
                Err(out) if out.contains("address already in use") => continue,
                Err(out) => panic!("otelcol ({}) did not start: {out}", file.display()),
            }
        }
        panic!("could not start otelcol on free ports after 5 attempts");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(otelcol_bin());
        cmd.arg("--config").arg(&self.file);
        let mut env: Vec<(&str, String)> = vec![
            ("OTELCOL_GRPC_ENDPOINT", format!("127.0.0.1:{}", self.grpc)),
            ("OTELCOL_HTTP_ENDPOINT", format!("127.0.0.1:{}", self.http)),
            ("OTELCOL_METRICS_PORT", self.metrics.to_string()),
        ];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.clone())));
        clean_env(&mut cmd, &env);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path("otelcol.log"))
            .expect("otelcol log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("otelcol log")))
            .stderr(Stdio::from(log));
        dies_with_test(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let log = self.dir.path("otelcol.log");
        until_listening(&mut child, &[self.grpc, self.http], &log, 20)?;
        self.child = Some(child);
        Ok(())
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("otelcol.log")).unwrap_or_default()
    }

    /// SIGTERM (it flushes what it holds and exits), then wait.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(10));
        }
    }

    /// Starts it again on the same ports with the same configuration.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old sockets may linger a moment.
                Err(out) if Instant::now() < deadline && out.contains("address already in use") => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(out) => panic!("otelcol did not restart: {out}"),
            }
        }
    }
}

impl Drop for Otelcol {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Prometheus binary: `PROMETHEUS_BIN`, or Debian's.
pub fn prometheus_bin() -> PathBuf {
    let bin = std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        bin.exists(),
        "Prometheus is not installed: run `bash scripts/install-prometheus.sh` \
         (the README's test command does), or set PROMETHEUS_BIN"
    );
    bin
}

/// A Prometheus of its own (free port, own data directory) scraping `targets`
/// every `interval`; killed on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Prometheus {
    pub fn start(targets: &[String], interval: Duration) -> Prometheus {
        for _attempt in 0..5 {
            let port = free_ports(1)[0];
            let dir = TempDir::new("prometheus");
            let list = targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let ms = interval.as_millis();
            std::fs::write(
                dir.path("prometheus.yml"),
                format!(
                    "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {ms}ms\n  \
                     evaluation_interval: {ms}ms\nscrape_configs:\n  - job_name: otelcol\n    \
                     static_configs:\n      - targets: [{list}]\n"
                ),
            )
            .expect("prometheus.yml");
            let log = std::fs::File::create(dir.path("prometheus.log")).expect("log");
            let mut cmd = Command::new(prometheus_bin());
            cmd.arg(format!(
                "--config.file={}",
                dir.path("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
            dies_with_test(&mut cmd);
            let mut child = cmd.spawn().expect("start prometheus");
            match until_listening(&mut child, &[port], &dir.path("prometheus.log"), 20) {
                Ok(()) => return Prometheus { child, port, dir },
                Err(out) if out.contains("address already in use") => {}
                Err(out) => panic!("prometheus did not start: {out}"),
            }
        }
        panic!("could not start prometheus on a free port after 5 attempts");
    }

    /// An instant query through the HTTP API at `time` (Unix seconds): the
    /// result as (labels, value) pairs.
    pub fn query(&self, promql: &str, time: f64) -> Vec<(serde_json::Value, f64)> {
        let url = reqwest::Url::parse_with_params(
            &format!("http://127.0.0.1:{}/api/v1/query", self.port),
            &[
                ("query", promql.to_string()),
                ("time", format!("{time:.3}")),
            ],
        )
        .expect("a query URL");
        let body = reqwest::blocking::get(url)
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(json["status"], "success", "{promql}: {body}");
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let v = r["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (r["metric"].clone(), v)
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}
