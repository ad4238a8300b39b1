//! gRPC server metrics with go-grpc-prometheus names, recorded by a tower layer on the
//! tonic server:
//!
//! - `grpc_server_started_total{grpc_type,grpc_service,grpc_method}`
//! - `grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}`
//! - `grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}` (histogram)
//!
//! Every series is registered once at start, from the services' encoded
//! `FileDescriptorSet`s, into a table keyed by the request path
//! (`/kmem.v1.AllocatorService/Kmalloc`). The hot path does one lookup by path and then
//! touches only pre-registered atomic handles: no label hashing, no allocation.
//!
//! The status code: tonic sends errors as trailers-only responses (`grpc-status` in the
//! response headers); for OK (and for errors found mid-stream) `grpc-status` is in the
//! body's trailers, so the response body is wrapped. A call whose body is dropped before
//! it ends (client went away) counts as `Canceled`, as in go-grpc-prometheus.
//!
//! The recorder is `metrics-exporter-prometheus`'s, built but not installed globally:
//! its histograms push into lock-free buckets, and its renderer writes the 0.0.4 text
//! format with real buckets (set with `set_buckets_for_metric`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use ::metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder, Unit};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use prost::Message;

/// gRPC status codes by number, spelled as go-grpc-prometheus does (`codes.Code.String()`).
pub const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

/// Bucket edges of `grpc_server_handling_seconds`: 25 µs … 10 s. Simulated calls take
/// microseconds; NOFAIL waits and streams take seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The pre-registered handles of one method.
pub struct MethodMetrics {
    started: Counter,
    handled: [Counter; 17],
    seconds: Histogram,
}

/// The per-method handle table and the renderer.
pub struct RpcMetrics {
    methods: HashMap<String, Arc<MethodMetrics>>,
    handle: PrometheusHandle,
}

fn grpc_type(client_streaming: bool, server_streaming: bool) -> &'static str {
    match (client_streaming, server_streaming) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    }
}

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

impl RpcMetrics {
    /// Register every method of every service in the encoded descriptor sets.
    pub fn new(descriptor_sets: &[&[u8]]) -> Result<RpcMetrics, String> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("grpc_server_handling_seconds".into()),
                LATENCY_BUCKETS,
            )
            .map_err(|e| e.to_string())?
            .build_recorder();
        recorder.describe_counter(
            "grpc_server_started_total".into(),
            None,
            "Total number of RPCs started on the server.".into(),
        );
        recorder.describe_counter(
            "grpc_server_handled_total".into(),
            None,
            "Total number of RPCs completed on the server, regardless of success or failure."
                .into(),
        );
        recorder.describe_histogram(
            "grpc_server_handling_seconds".into(),
            Some(Unit::Seconds),
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server."
                .into(),
        );
        let mut methods = HashMap::new();
        for fds in descriptor_sets {
            let set = prost_types::FileDescriptorSet::decode(*fds)
                .map_err(|e| format!("bad FileDescriptorSet: {e}"))?;
            for file in set.file {
                let pkg = file.package().to_string();
                for svc in &file.service {
                    let service = if pkg.is_empty() {
                        svc.name().to_string()
                    } else {
                        format!("{pkg}.{}", svc.name())
                    };
                    for m in &svc.method {
                        let path = format!("/{service}/{}", m.name());
                        let labels = vec![
                            Label::new(
                                "grpc_type",
                                grpc_type(m.client_streaming(), m.server_streaming()),
                            ),
                            Label::new("grpc_service", service.clone()),
                            Label::new("grpc_method", m.name().to_string()),
                        ];
                        let key = |name: &'static str, extra: Option<&'static str>| {
                            let mut l = labels.clone();
                            if let Some(code) = extra {
                                l.push(Label::new("grpc_code", code));
                            }
                            Key::from_parts(name, l)
                        };
                        let mm = MethodMetrics {
                            started: recorder
                                .register_counter(&key("grpc_server_started_total", None), &META),
                            handled: std::array::from_fn(|i| {
                                recorder.register_counter(
                                    &key("grpc_server_handled_total", Some(CODES[i])),
                                    &META,
                                )
                            }),
                            seconds: recorder.register_histogram(
                                &key("grpc_server_handling_seconds", None),
                                &META,
                            ),
                        };
                        methods.entry(path).or_insert_with(|| Arc::new(mm));
                    }
                }
            }
        }
        Ok(RpcMetrics {
            methods,
            handle: recorder.handle(),
        })
    }

    /// The handles of a request path, if it names a registered method.
    pub fn method(&self, path: &str) -> Option<&Arc<MethodMetrics>> {
        self.methods.get(path)
    }

    /// Number of registered methods.
    pub fn len(&self) -> usize {
        self.methods.len()
    }

    /// True when no method is registered.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    /// The RPC families in the Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The renderer, for the periodic upkeep task (drains histogram buffers).
    pub fn handle(&self) -> PrometheusHandle {
        self.handle.clone()
    }
}

/// One call in flight. Dropped unfinished = `Canceled`.
struct Tracker {
    mm: Arc<MethodMetrics>,
    start: Instant,
    done: bool,
}

impl Tracker {
    fn finish(&mut self, code: usize) {
        if !self.done {
            self.done = true;
            self.mm.handled[code.min(16)].increment(1);
            self.mm.seconds.record(self.start.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

fn status_of(h: &HeaderMap) -> Option<usize> {
    let v = h.get("grpc-status")?;
    Some(
        v.to_str()
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&c| c < CODES.len())
            .unwrap_or(UNKNOWN),
    )
}

/// The layer: `Server::builder().layer(RpcMetricsLayer::new(..))`. With `None` it
/// passes calls through untouched.
#[derive(Clone)]
pub struct RpcMetricsLayer {
    metrics: Option<Arc<RpcMetrics>>,
}

impl RpcMetricsLayer {
    pub fn new(metrics: Option<Arc<RpcMetrics>>) -> Self {
        RpcMetricsLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcMetricsService<S> {
    inner: S,
    metrics: Option<Arc<RpcMetrics>>,
}

impl<S, B, RB> tower_service::Service<Request<B>> for RpcMetricsService<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    RB: Body,
{
    type Response = Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let tracker = self
            .metrics
            .as_ref()
            .and_then(|m| m.method(req.uri().path()))
            .map(|mm| {
                mm.started.increment(1);
                Tracker {
                    mm: mm.clone(),
                    start: Instant::now(),
                    done: false,
                }
            });
        MeteredFuture {
            inner: self.inner.call(req),
            tracker,
        }
    }
}

pin_project_lite::pin_project! {
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        tracker: Option<Tracker>,
    }
}

impl<F, RB, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Body,
{
    type Output = Result<Response<MeteredBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.inner.poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        let mut tracker = this.tracker.take();
        match res {
            Ok(resp) => {
                if let (Some(t), Some(code)) = (tracker.as_mut(), status_of(resp.headers())) {
                    // Trailers-only response: the call is over.
                    t.finish(code);
                    tracker = None;
                }
                Poll::Ready(Ok(resp.map(|inner| MeteredBody { inner, tracker })))
            }
            Err(e) => {
                if let Some(t) = tracker.as_mut() {
                    t.finish(UNKNOWN);
                }
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for the `grpc-status` trailer.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        tracker: Option<Tracker>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Some(t) = this.tracker.as_mut() {
            match &r {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(code) = frame.trailers_ref().and_then(status_of) {
                        t.finish(code);
                    }
                }
                Poll::Ready(Some(Err(_))) => t.finish(UNKNOWN),
                // Ended without a status trailer: treat as OK.
                Poll::Ready(None) => t.finish(0),
                Poll::Pending => {}
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_kmem_method_with_its_type() {
        let m = RpcMetrics::new(&[kmem_client::pb::FILE_DESCRIPTOR_SET]).unwrap();
        assert!(m.method("/kmem.v1.AllocatorService/Kmalloc").is_some());
        assert!(m.method("/kmem.v1.AllocatorService/Nope").is_none());
        let mm = m
            .method("/kmem.v1.AllocatorService/Kmalloc")
            .unwrap()
            .clone();
        let mut t = Tracker {
            mm,
            start: Instant::now(),
            done: false,
        };
        t.finish(8);
        drop(t);
        let text = m.render();
        assert!(
            text.contains(r#"grpc_server_handled_total{grpc_type="unary",grpc_service="kmem.v1.AllocatorService",grpc_method="Kmalloc",grpc_code="ResourceExhausted"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("grpc_server_handling_seconds_bucket{"),
            "{text}"
        );
        assert!(text.contains(r#"grpc_type="bidi_stream""#), "{text}");
    }
}
