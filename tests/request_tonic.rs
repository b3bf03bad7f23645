//! `SessionLayer` on a tonic gRPC server with a real tonic client: each call is
//! a request session; a gRPC error with a server-fault code (INTERNAL) makes it
//! `errored` (tonic answers HTTP 200 and puts the status in `grpc-status`), a
//! client-fault code (INVALID_ARGUMENT) does not.

use std::collections::HashMap;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use otel_session::{SessionManager, SessionMode};

/// Answers by the number of resource spans in the request: 0 ok, 1 INTERNAL,
/// 2 INVALID_ARGUMENT; and reports the request session it saw in a header.
struct Handler;

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let seen = otel_session::current_session().is_some();
        match req.into_inner().resource_spans.len() {
            0 if seen => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            0 => Err(tonic::Status::failed_precondition(
                "no request session in the handler",
            )),
            1 => Err(tonic::Status::internal("the database is down")),
            _ => Err(tonic::Status::invalid_argument("bad batch")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_request_sessions_counted_by_grpc_status() {
    let metrics = InMemoryMetricExporter::default();
    let mp = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let sessions = SessionManager::builder()
        .with_mode(SessionMode::Request)
        .with_meter(mp.meter("otel-session"))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let server = tonic::transport::Server::builder()
        .layer(sessions.request_layer())
        .add_service(TraceServiceServer::new(Handler))
        .serve_with_incoming(incoming);
    tokio::spawn(server);

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let batch = |n: usize| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans::default(); n],
    };
    let mut codes = Vec::new();
    for n in [0, 0, 1, 2, 0, 1] {
        let code = match client.export(batch(n)).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        codes.push(code);
    }
    assert_eq!(
        codes,
        [
            tonic::Code::Ok,
            tonic::Code::Ok,
            tonic::Code::Internal,
            tonic::Code::InvalidArgument,
            tonic::Code::Ok,
            tonic::Code::Internal
        ],
        "the handler saw its request session in every call"
    );

    mp.force_flush().unwrap();
    let mut ended: HashMap<String, u64> = HashMap::new();
    let mut started = 0;
    if let Some(rm) = metrics.get_finished_metrics().unwrap().last() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                if let AggregatedMetrics::U64(MetricData::Sum(s)) = m.data() {
                    for dp in s.data_points() {
                        if m.name() == "otel_session.started" {
                            started += dp.value();
                        } else if m.name() == "otel_session.ended" {
                            let status = dp
                                .attributes()
                                .find(|kv| kv.key.as_str() == "otel_session.status")
                                .map(|kv| kv.value.to_string())
                                .unwrap_or_default();
                            *ended.entry(status).or_default() += dp.value();
                        }
                    }
                }
            }
        }
    }
    assert_eq!(started, 6);
    assert_eq!(ended.get("ok"), Some(&4), "{ended:?}");
    assert_eq!(
        ended.get("errored"),
        Some(&2),
        "INTERNAL is a server fault: {ended:?}"
    );
}
