//! The gRPC server metrics of go-grpc-prometheus, counted by a tower layer
//! around every service: started, handled (with the status code), messages
//! received and sent (gRPC frames, counted in the bodies as they pass), and
//! the handling time from the request's arrival to its status.
//!
//! Methods are known from the API's descriptor set and health's and
//! reflection's; a path that names no known method is counted under
//! `unknown`, so a client cannot grow the label sets.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prost::Message as _;

use crate::metrics::{HandledLabels, MethodLabels, Metrics};

/// gRPC's status codes, by number, as go-grpc-prometheus names them.
const CODES: [&str; 17] = [
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

/// One method's counters: each label set is made on first use (so a
/// scrape shows only what happened), then counted without a lookup.
#[derive(Debug)]
struct Method {
    metrics: Arc<Metrics>,
    labels: MethodLabels,
    started: OnceLock<Counter>,
    received: OnceLock<Counter>,
    sent: OnceLock<Counter>,
    seconds: OnceLock<Histogram>,
    handled: [OnceLock<Counter>; 17],
}

impl Method {
    fn new(metrics: &Arc<Metrics>, grpc_type: &'static str, service: &str, method: &str) -> Self {
        Self {
            metrics: Arc::clone(metrics),
            labels: MethodLabels {
                grpc_type,
                grpc_service: service.to_owned(),
                grpc_method: method.to_owned(),
            },
            started: OnceLock::new(),
            received: OnceLock::new(),
            sent: OnceLock::new(),
            seconds: OnceLock::new(),
            handled: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn started(&self) -> &Counter {
        self.started.get_or_init(|| {
            self.metrics
                .grpc_started
                .get_or_create(&self.labels)
                .clone()
        })
    }

    fn received(&self) -> Counter {
        self.received
            .get_or_init(|| {
                self.metrics
                    .grpc_received
                    .get_or_create(&self.labels)
                    .clone()
            })
            .clone()
    }

    fn sent(&self) -> Counter {
        self.sent
            .get_or_init(|| self.metrics.grpc_sent.get_or_create(&self.labels).clone())
            .clone()
    }

    fn seconds(&self) -> &Histogram {
        self.seconds.get_or_init(|| {
            self.metrics
                .grpc_seconds
                .get_or_create(&self.labels)
                .clone()
        })
    }

    fn handled(&self, code: usize) -> &Counter {
        self.handled[code].get_or_init(|| {
            self.metrics
                .grpc_handled
                .get_or_create(&HandledLabels {
                    grpc_type: self.labels.grpc_type,
                    grpc_service: self.labels.grpc_service.clone(),
                    grpc_method: self.labels.grpc_method.clone(),
                    grpc_code: CODES[code],
                })
                .clone()
        })
    }
}

/// Every known method by its path (`/package.Service/Method`).
#[derive(Debug)]
struct Methods {
    by_path: HashMap<String, Arc<Method>>,
    unknown: Arc<Method>,
}

impl Methods {
    fn new(metrics: &Arc<Metrics>, descriptor_sets: &[&[u8]]) -> Self {
        let mut by_path = HashMap::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package();
                for service in &file.service {
                    let name = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    for m in &service.method {
                        let grpc_type = match (m.client_streaming(), m.server_streaming()) {
                            (false, false) => "unary",
                            (true, false) => "client_stream",
                            (false, true) => "server_stream",
                            (true, true) => "bidi_stream",
                        };
                        by_path.insert(
                            format!("/{name}/{}", m.name()),
                            Arc::new(Method::new(metrics, grpc_type, &name, m.name())),
                        );
                    }
                }
            }
        }
        Self {
            by_path,
            unknown: Arc::new(Method::new(metrics, "unary", "unknown", "unknown")),
        }
    }
}

/// The layer: wraps each service so its calls are counted.
#[derive(Debug, Clone)]
pub(super) struct GrpcMetricsLayer {
    methods: Arc<Methods>,
}

impl GrpcMetricsLayer {
    /// Makes the label sets of every method the descriptor sets name.
    pub(super) fn new(metrics: &Arc<Metrics>, descriptor_sets: &[&[u8]]) -> Self {
        Self {
            methods: Arc::new(Methods::new(metrics, descriptor_sets)),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            methods: Arc::clone(&self.methods),
        }
    }
}

/// The service the layer makes.
#[derive(Debug, Clone)]
pub(super) struct GrpcMetricsService<S> {
    inner: S,
    methods: Arc<Methods>,
}

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes>,
{
    type Response = http::Response<MeteredBody<B>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let method = self
            .methods
            .by_path
            .get(request.uri().path())
            .unwrap_or(&self.methods.unknown)
            .clone();
        method.started().inc();
        let start = Instant::now();
        let received = method.received();
        let request = request.map(|body| {
            tonic::body::Body::new(MeteredBody {
                inner: body,
                frames: Frames::default(),
                messages: received,
                call: None,
            })
        });
        let future = self.inner.call(request);
        // Counted as handled exactly once: by its status, or as Canceled
        // when the call is dropped (its client went away) before one.
        let mut call = Call {
            method: Arc::clone(&method),
            start,
            done: false,
        };
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(e) => {
                    call.finish(UNKNOWN);
                    return Err(e);
                }
            };
            // A status in the headers is a trailers-only answer: the call
            // is over whatever the body holds.
            if let Some(code) = response
                .headers()
                .get("grpc-status")
                .map(|v| code_index(v.as_bytes()))
            {
                call.finish(code);
            }
            let sent = method.sent();
            Ok(response.map(|body| MeteredBody {
                inner: body,
                frames: Frames::default(),
                messages: sent,
                call: Some(call),
            }))
        })
    }
}

/// A call until its status is known: counted as handled exactly once, as
/// Canceled when its body is dropped before a status.
#[derive(Debug)]
struct Call {
    method: Arc<Method>,
    start: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if self.done {
            return;
        }
        self.done = true;
        self.method.handled(code).inc();
        self.method
            .seconds()
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

fn code_index(value: &[u8]) -> usize {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&c| c < CODES.len())
        .unwrap_or(UNKNOWN)
}

/// Counts the gRPC messages in a body's data: each starts with a 5-byte
/// header (a compression flag and a big-endian length), and data frames
/// may cut messages and headers anywhere.
#[derive(Debug, Default)]
struct Frames {
    /// Header bytes seen of the next message (0 to 4).
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message's body still to pass.
    remaining: u64,
}

impl Frames {
    /// Returns how many messages began in `data`.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut began = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= take as u64;
                data = &data[take..];
                continue;
            }
            let take = (5 - self.have).min(data.len());
            self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
            self.have += take;
            data = &data[take..];
            if self.have == 5 {
                began += 1;
                self.have = 0;
                self.remaining = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
            }
        }
        began
    }
}

pin_project_lite::pin_project! {
    /// A body whose gRPC messages are counted; a response body also ends
    /// its call when the trailers carry the status.
    pub(super) struct MeteredBody<B> {
        #[pin]
        inner: B,
        frames: Frames,
        messages: Counter,
        call: Option<Call>,
    }
}

impl<B: Body<Data = Bytes>> Body for MeteredBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let began = this.frames.feed(data);
                    if began > 0 {
                        this.messages.inc_by(began);
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(call) = this.call.as_mut() {
                        let code = trailers
                            .get("grpc-status")
                            .map_or(UNKNOWN, |v| code_index(v.as_bytes()));
                        call.finish(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.as_mut() {
                    call.finish(UNKNOWN);
                }
            }
            Poll::Ready(None) => {
                // A body that ends without trailers ended without a status.
                if let Some(call) = this.call.as_mut() {
                    call.finish(UNKNOWN);
                }
            }
            Poll::Pending => {}
        }
        polled
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
    fn messages_are_counted_however_the_data_is_cut() {
        // Three messages: 3 bytes, 0 bytes, 2 bytes.
        let mut stream = Vec::new();
        for body in [&b"abc"[..], b"", b"de"] {
            stream.push(0);
            stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for cut in 1..stream.len() {
            let mut frames = Frames::default();
            let mut n = 0;
            for chunk in stream.chunks(cut) {
                n += frames.feed(chunk);
            }
            assert_eq!(n, 3, "cut into chunks of {cut}");
        }
    }

    #[test]
    fn methods_have_their_streaming_type_and_strangers_share_one_label_set() {
        let metrics = Arc::new(Metrics::new());
        let methods = Methods::new(
            &metrics,
            &[
                crate::api::FILE_DESCRIPTOR_SET,
                tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            ],
        );
        let kind = |path: &str| methods.by_path.get(path).map(|m| m.labels.grpc_type);
        assert_eq!(kind("/registrar.v1.PullService/ResolvePull"), Some("unary"));
        assert_eq!(
            kind("/registrar.v1.PullService/Watch"),
            Some("server_stream")
        );
        assert_eq!(
            kind("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Some("bidi_stream")
        );
        assert_eq!(kind("/registrar.v1.PullService/Nope"), None);
        assert_eq!(methods.unknown.labels.grpc_service, "unknown");
    }

    #[test]
    fn a_status_names_its_code_and_nonsense_is_unknown() {
        assert_eq!(CODES[code_index(b"0")], "OK");
        assert_eq!(CODES[code_index(b"5")], "NotFound");
        assert_eq!(CODES[code_index(b"16")], "Unauthenticated");
        assert_eq!(CODES[code_index(b"17")], "Unknown");
        assert_eq!(CODES[code_index(b"x")], "Unknown");
    }
}
