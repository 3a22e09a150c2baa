//! The Prometheus metrics of one server: gRPC server metrics under the
//! names go-grpc-prometheus gives them (the names dashboards already use),
//! and registrar's own under `registrar_`. No label ever carries a secret,
//! a username or an image reference: labels are method names, codes,
//! orchestrations, deny reasons and registry ids.
//!
//! Served as text by `server/metrics_http.rs`; the gRPC layer that counts
//! calls is `server/grpc_metrics.rs`. The store's writers report each group
//! they make durable through [`StoreMetrics`].

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The labels of a gRPC method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// unary, client_stream, server_stream or bidi_stream.
    pub grpc_type: &'static str,
    /// The fully qualified service name.
    pub grpc_service: String,
    /// The method name.
    pub grpc_method: String,
}

/// The labels of a finished gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandledLabels {
    /// unary, client_stream, server_stream or bidi_stream.
    pub grpc_type: &'static str,
    /// The fully qualified service name.
    pub grpc_service: String,
    /// The method name.
    pub grpc_method: String,
    /// The status code's name as gRPC spells it (`OK`, `NotFound`, ...).
    pub grpc_code: &'static str,
}

/// The orchestration a pull was answered for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum OrchestrationLabel {
    /// Cattle.
    cattle,
    /// Kubernetes.
    kubernetes,
}

/// The labels of a ResolvePull answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullLabels {
    /// The environment's orchestration.
    pub orchestration: OrchestrationLabel,
    /// allowed (with a credential), anonymous (allowed without one), or the
    /// deny reason (not_whitelisted, default_not_whitelisted,
    /// registry_inactive, credential_expired).
    pub result: &'static str,
}

/// The labels of an ECR token refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// ok or error.
    pub result: &'static str,
}

/// The labels of a check of a credential against its registry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerificationLabels {
    /// write (verify on CreateRegistry/UpdateRegistry), on_demand
    /// (VerifyRegistry) or background.
    pub trigger: &'static str,
    /// ok, rejected (the registry refused the credential) or failed (the
    /// registry could not be asked).
    pub result: &'static str,
}

/// The labels of a registry's credential expiry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    /// The registry's id (an opaque id, never its address).
    pub registry_id: String,
}

/// What the store's writer reports of each group of commits it writes.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    commits: Counter,
    conflicts: Counter,
    batch_size: Histogram,
    flush_seconds: Histogram,
}

impl StoreMetrics {
    /// Records one group: how many commits it held, how many were written,
    /// how many were refused for a lost race, and how long its durable
    /// write took.
    pub fn group(&self, size: usize, written: usize, conflicts: usize, flush: Duration) {
        self.batch_size.observe(size as f64);
        self.commits.inc_by(written as u64);
        self.conflicts.inc_by(conflicts as u64);
        self.flush_seconds.observe(flush.as_secs_f64());
    }
}

/// Every metric of one server, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// grpc_server_started_total.
    pub grpc_started: Family<MethodLabels, Counter>,
    /// grpc_server_handled_total.
    pub grpc_handled: Family<HandledLabels, Counter>,
    /// grpc_server_msg_received_total.
    pub grpc_received: Family<MethodLabels, Counter>,
    /// grpc_server_msg_sent_total.
    pub grpc_sent: Family<MethodLabels, Counter>,
    /// grpc_server_handling_seconds.
    pub grpc_seconds: Family<MethodLabels, Histogram>,
    resolve_pull: Family<PullLabels, Counter>,
    /// registrar_log_head_position.
    pub head: Gauge,
    /// registrar_replica_lag_positions.
    pub lag: Gauge,
    store: StoreMetrics,
    /// registrar_watch_streams.
    pub watch_streams: Gauge,
    ecr_refresh: Family<ResultLabels, Counter>,
    verifications: Family<VerificationLabels, Counter>,
    /// registrar_credential_expiry_timestamp_seconds.
    pub credential_expiry: Family<RegistryLabels, Gauge>,
    /// registrar_audit_failures_total.
    pub audit_failures: Counter,
    /// Held while a scrape rebuilds the gauges read from the view, so two
    /// scrapes at once do not see each other's half-built families.
    pub scraping: std::sync::Mutex<()>,
}

/// go-grpc-prometheus's handling-time buckets (Prometheus' default ones).
const GRPC_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Returns a new set of metrics, all at zero, registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let grpc_started = Family::<MethodLabels, Counter>::default();
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server",
            grpc_started.clone(),
        );
        let grpc_handled = Family::<HandledLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure",
            grpc_handled.clone(),
        );
        let grpc_received = Family::<MethodLabels, Counter>::default();
        registry.register(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server",
            grpc_received.clone(),
        );
        let grpc_sent = Family::<MethodLabels, Counter>::default();
        registry.register(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server",
            grpc_sent.clone(),
        );
        let grpc_seconds =
            Family::<MethodLabels, Histogram>::new_with_constructor(grpc_histogram as fn() -> _);
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server",
            grpc_seconds.clone(),
        );
        let resolve_pull = Family::<PullLabels, Counter>::default();
        registry.register(
            "registrar_resolve_pull",
            "ResolvePull answers by orchestration and result (allowed, anonymous, or the deny reason)",
            resolve_pull.clone(),
        );
        let head = Gauge::default();
        registry.register(
            "registrar_log_head_position",
            "Position of the last event of the log this server has applied",
            head.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "registrar_replica_lag_positions",
            "Positions of the shared log this replica knows of and has not applied yet (0 for the embedded store)",
            lag.clone(),
        );
        let store = StoreMetrics {
            commits: Counter::default(),
            conflicts: Counter::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            flush_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        };
        registry.register(
            "registrar_commits",
            "Commits this server wrote to the log",
            store.commits.clone(),
        );
        registry.register(
            "registrar_commit_batch_size",
            "Commits per group the log's writer made durable together",
            store.batch_size.clone(),
        );
        registry.register(
            "registrar_flush_seconds",
            "Time of one group's durable write (a flush, or a database transaction)",
            store.flush_seconds.clone(),
        );
        registry.register(
            "registrar_append_conflicts",
            "Commits refused because another commit changed their stream first (decided again)",
            store.conflicts.clone(),
        );
        let watch_streams = Gauge::default();
        registry.register(
            "registrar_watch_streams",
            "Watch streams open",
            watch_streams.clone(),
        );
        let ecr_refresh = Family::<ResultLabels, Counter>::default();
        registry.register(
            "registrar_ecr_refresh",
            "ECR token refreshes by result",
            ecr_refresh.clone(),
        );
        let verifications = Family::<VerificationLabels, Counter>::default();
        registry.register(
            "registrar_registry_verifications",
            "Logins to registries that checked a credential, by trigger and result",
            verifications.clone(),
        );
        let credential_expiry = Family::<RegistryLabels, Gauge>::default();
        registry.register(
            "registrar_credential_expiry_timestamp_seconds",
            "When each expiring credential expires (Unix time), by registry id",
            credential_expiry.clone(),
        );
        let audit_failures = Counter::default();
        registry.register(
            "registrar_audit_failures",
            "Audit entries that could not be written (the answer was refused)",
            audit_failures.clone(),
        );
        registry.register(
            "registrar_build",
            "The running version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            registry,
            grpc_started,
            grpc_handled,
            grpc_received,
            grpc_sent,
            grpc_seconds,
            resolve_pull,
            head,
            lag,
            store,
            watch_streams,
            ecr_refresh,
            verifications,
            credential_expiry,
            audit_failures,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// Returns the handles the store's writer reports to.
    pub fn store(&self) -> StoreMetrics {
        self.store.clone()
    }

    /// Counts a ResolvePull answer.
    pub fn resolve_pull(&self, orchestration: OrchestrationLabel, result: &'static str) {
        self.resolve_pull
            .get_or_create(&PullLabels {
                orchestration,
                result,
            })
            .inc();
    }

    /// Counts an ECR token refresh.
    pub fn ecr_refresh(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.ecr_refresh
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a check of a credential against its registry.
    pub fn verification(&self, trigger: &'static str, result: &'static str) {
        self.verifications
            .get_or_create(&VerificationLabels { trigger, result })
            .inc();
    }

    /// Encodes every metric in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn grpc_histogram() -> Histogram {
    Histogram::new(GRPC_BUCKETS)
}

/// Shared by the server's parts.
pub type SharedMetrics = Arc<Metrics>;
