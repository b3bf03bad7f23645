//! A real TLS terminator in front of rotel (which speaks plaintext only): nginx,
//! installed by `scripts/install-tls-proxy.sh`, on free 127.0.0.1 ports, with
//! certificates made at run time by the `openssl` command (a private CA, a server
//! certificate for 127.0.0.1 and localhost, one for another name, and a client
//! certificate for mutual TLS).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{free_ports, listens_on, terminate, Rotel};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system's temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "otel-session-{what}-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Certificates made for one test.
pub struct Pki {
    pub dir: TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A private CA; `server.pem` for 127.0.0.1 and localhost, `other.pem` for
    /// collector.example only, `client.pem` for mutual TLS; keys beside them.
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let d = &dir.0;
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=otel-session test CA",
            ],
        );
        let leaf = |name: &str, subject: &str, ext: &str| {
            std::fs::write(d.join(format!("{name}.ext")), ext).expect("ext file");
            openssl(
                d,
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    subject,
                ],
            );
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &format!("{name}.pem"),
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{name}.ext"),
                ],
            );
        };
        leaf(
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        leaf(
            "other",
            "/CN=collector.example",
            "subjectAltName=DNS:collector.example\nextendedKeyUsage=serverAuth\n",
        );
        leaf(
            "client",
            "/CN=otel-session test client",
            "extendedKeyUsage=clientAuth\n",
        );
        Pki { dir }
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.path(name).to_string_lossy().into_owned()
    }
}

/// The nginx binary: `NGINX_BIN`, or where the Debian package puts it.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX_BIN") {
        return PathBuf::from(p);
    }
    let default = PathBuf::from("/usr/sbin/nginx");
    assert!(
        default.exists(),
        "nginx (the TLS terminator of the TLS tests) is not installed: run \
         `bash scripts/install-tls-proxy.sh` (scripts/test-all.sh does), or set NGINX_BIN"
    );
    default
}

/// nginx terminating TLS in front of a rotel; killed on drop.
pub struct TlsProxy {
    child: Child,
    _dir: TempDir,
    /// TLS, gRPC (ALPN h2) and OTLP/HTTP.
    pub grpc: u16,
    pub http: u16,
    /// TLS requiring a client certificate signed by the test CA.
    pub mtls_grpc: u16,
    pub mtls_http: u16,
    /// TLS requiring the header `x-api-key` to be the key given to `start`.
    pub key_grpc: u16,
    pub key_http: u16,
    /// TLS with a certificate for collector.example only.
    pub other_name_http: u16,
}

impl TlsProxy {
    /// Starts nginx on free ports in front of `rotel`, retrying when a port was
    /// taken meanwhile.
    pub fn start(pki: &Pki, rotel: &Rotel, api_key: &str) -> TlsProxy {
        let bin = nginx_bin();
        for _attempt in 0..5 {
            // Seven different ports: nginx takes a port listed twice with a
            // warning only, and then serves both servers' requests with the
            // first one (OTLP/HTTP requests went to rotel's gRPC port, which
            // answered 200: the export "succeeded" and nothing arrived).
            let ports = free_ports(7);
            let dir = TempDir::new("nginx");
            std::fs::create_dir_all(dir.path("tmp")).expect("nginx temp dir");
            let conf = config(pki, rotel, api_key, &dir, &ports);
            std::fs::write(dir.path("nginx.conf"), conf).expect("nginx.conf");
            let mut cmd = Command::new(&bin);
            cmd.arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(dir.path("nginx.conf"))
                .args(["-e", "stderr"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path("nginx.log")).expect("nginx log"),
                ));
            super::dies_with_test(&mut cmd);
            let mut child = cmd.spawn().expect("start nginx");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let exited = matches!(child.try_wait(), Ok(Some(_)));
                let log = std::fs::read_to_string(dir.path("nginx.log")).unwrap_or_default();
                // A port taken meanwhile by another process: nginx would retry
                // binding it for two seconds while that process answers there.
                if log.contains("Address already in use") {
                    terminate(&mut child, Duration::from_secs(2));
                    break; // retry with new ports
                }
                if exited {
                    panic!("nginx exited early: {log}");
                }
                // Its own sockets: a port that answers may be another server's.
                if listens_on(child.id(), &ports) {
                    return TlsProxy {
                        child,
                        _dir: dir,
                        grpc: ports[0],
                        http: ports[1],
                        mtls_grpc: ports[2],
                        mtls_http: ports[3],
                        key_grpc: ports[4],
                        key_http: ports[5],
                        other_name_http: ports[6],
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("nginx did not open its ports within 10 s: {log}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("could not start nginx on free ports after 5 attempts");
    }

    /// `https://127.0.0.1:port`.
    pub fn url(port: u16) -> String {
        format!("https://127.0.0.1:{port}")
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(2));
    }
}

fn config(pki: &Pki, rotel: &Rotel, api_key: &str, dir: &TempDir, p: &[u16]) -> String {
    let d = dir.0.display();
    let (rg, rh) = (rotel.grpc, rotel.http);
    let (ca, cert, key) = (
        pki.file("ca.pem"),
        pki.file("server.pem"),
        pki.file("server.key"),
    );
    let (other, other_key) = (pki.file("other.pem"), pki.file("other.key"));
    let grpc = format!("location / {{ grpc_pass grpc://127.0.0.1:{rg}; }}");
    let http = format!("location / {{ proxy_pass http://127.0.0.1:{rh}; }}");
    let check = format!("if ($http_x_api_key != \"{api_key}\") {{ return 401; }}");
    // A gRPC-aware refusal (nginx's recipe for gRPC errors): status UNAUTHENTICATED.
    let check_grpc = format!("if ($http_x_api_key != \"{api_key}\") {{ return 418; }}");
    let mtls = format!("ssl_verify_client on; ssl_client_certificate {ca};");
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 64m;
  ssl_certificate {cert};
  ssl_certificate_key {key};
  server {{ listen 127.0.0.1:{} ssl http2; {grpc} }}
  server {{ listen 127.0.0.1:{} ssl; {http} }}
  server {{ listen 127.0.0.1:{} ssl http2; {mtls} {grpc} }}
  server {{ listen 127.0.0.1:{} ssl; {mtls} {http} }}
  server {{ listen 127.0.0.1:{} ssl http2;
    location / {{ {check_grpc} grpc_pass grpc://127.0.0.1:{rg}; error_page 418 = @unauthenticated; }}
    location @unauthenticated {{ default_type application/grpc; add_header grpc-status 16;
      add_header grpc-message \"wrong API key\"; return 204; }}
  }}
  server {{ listen 127.0.0.1:{} ssl; location / {{ {check} proxy_pass http://127.0.0.1:{rh}; }} }}
  server {{ listen 127.0.0.1:{} ssl; ssl_certificate {other}; ssl_certificate_key {other_key}; {http} }}
}}
",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    )
}
