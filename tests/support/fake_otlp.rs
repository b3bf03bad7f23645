//! Collectors that misbehave on purpose, to test retries: an OTLP/HTTP server
//! (HTTP/1.1 on a raw `TcpListener`) and an OTLP/gRPC trace service (tonic) that
//! refuse for a while (or always) and then accept, recording every request; the
//! gRPC one can say when to retry (`RetryInfo`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;

/// How the fake collector answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// `status` (with `Retry-After: secs` when given) until `window` has passed
    /// since the first request, then success.
    FailFor {
        status: u16,
        retry_after: Option<u32>,
        window: Duration,
    },
    /// Always `status`.
    Always(u16),
    /// The first request is answered `status` after `delay`; later ones are
    /// never answered (a collector that stopped responding).
    SlowThenSilent { delay: Duration, status: u16 },
}

/// One request the fake collector got.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub path: String,
    pub status: u16,
    /// Its `content-encoding` header.
    pub encoding: Option<String>,
}

/// What the fake collector saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: Vec<Request>,
    /// Names of the spans in requests it accepted.
    pub spans: Vec<String>,
    first: Option<Instant>,
}

impl Seen {
    pub fn on(&self, path: &str) -> Vec<&Request> {
        self.requests.iter().filter(|r| r.path == path).collect()
    }
}

fn status_for(answer: Answer, seen: &mut Seen, now: Instant) -> (u16, Option<u32>) {
    let first = *seen.first.get_or_insert(now);
    match answer {
        Answer::FailFor {
            status,
            retry_after,
            window,
        } if now.duration_since(first) < window => (status, retry_after),
        Answer::FailFor { .. } => (200, None),
        Answer::Always(status) => (status, None),
        Answer::SlowThenSilent { status, .. } => (status, None),
    }
}

/// A fake OTLP/HTTP collector on 127.0.0.1; stops on drop.
pub struct FakeHttp {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeHttp {
    pub fn start(answer: Answer) -> FakeHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake collector");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, st) = (Arc::clone(&s), Arc::clone(&st));
                        std::thread::spawn(move || serve(conn, answer, &s, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeHttp {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one keep-alive connection: each request is read whole, recorded and
/// answered.
fn serve(conn: TcpStream, answer: Answer, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::Relaxed) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(_) => return,
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length = 0usize;
        let mut encoding = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if k.eq_ignore_ascii_case("content-encoding") {
                    encoding = Some(v.trim().to_string());
                }
            }
        }
        let mut body = vec![0; length];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut read = 0;
        while read < length && Instant::now() < deadline {
            match reader.read(&mut body[read..]) {
                Ok(0) => return,
                Ok(n) => read += n,
                Err(_) => continue,
            }
        }
        let now = Instant::now();
        let (status, retry_after) = {
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let (status, retry_after) = status_for(answer, &mut s, now);
            s.requests.push(Request {
                at: now,
                path: path.clone(),
                status,
                encoding: encoding.clone(),
            });
            if status == 200 && path == "/v1/traces" {
                if let Ok(req) = ExportTraceServiceRequest::decode(&body[..]) {
                    for rs in req.resource_spans {
                        for ss in rs.scope_spans {
                            s.spans.extend(ss.spans.into_iter().map(|sp| sp.name));
                        }
                    }
                }
            }
            if let Answer::SlowThenSilent { delay, .. } = answer {
                if s.requests.len() > 1 {
                    drop(s);
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    return;
                }
                drop(s);
                std::thread::sleep(delay);
            }
            (status, retry_after)
        };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n"
        );
        if let Some(secs) = retry_after {
            head.push_str(&format!("retry-after: {secs}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// A fake OTLP/gRPC trace service on 127.0.0.1 answering `code` until `window`
/// has passed since the first request (forever with `None`), then accepting.
pub struct FakeGrpc {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct Traces {
    seen: Arc<Mutex<Seen>>,
    code: tonic::Code,
    window: Option<Duration>,
    retry_info: Option<Duration>,
}

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let now = Instant::now();
        let mut s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let first = *s.first.get_or_insert(now);
        let failing = self.window.is_none_or(|w| now.duration_since(first) < w);
        s.requests.push(Request {
            at: now,
            path: "traces".into(),
            status: if failing { self.code as u16 } else { 0 },
            encoding: req
                .metadata()
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        if failing {
            return Err(match self.retry_info {
                Some(delay) => {
                    use tonic_types::{ErrorDetails, StatusExt as _};
                    tonic::Status::with_error_details(
                        self.code,
                        "refused by the test",
                        ErrorDetails::with_retry_info(Some(delay)),
                    )
                }
                None => tonic::Status::new(self.code, "refused by the test"),
            });
        }
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                s.spans.extend(ss.spans.into_iter().map(|sp| sp.name));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl FakeGrpc {
    pub fn start(code: tonic::Code, window: Option<Duration>) -> FakeGrpc {
        Self::with_retry_info(code, window, None)
    }

    /// [`start`](Self::start), its refusals carrying `RetryInfo` (retry after
    /// `retry_info`) when given.
    pub fn with_retry_info(
        code: tonic::Code,
        window: Option<Duration>,
        retry_info: Option<Duration>,
    ) -> FakeGrpc {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let service = Traces {
            seen: Arc::clone(&seen),
            code,
            window,
            retry_info,
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake gRPC collector");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(
                        TraceServiceServer::new(service)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        FakeGrpc {
            addr,
            seen,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeGrpc {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
