//! Logging and metrics setup, and the metric names the gateway records.
//! Labels are bounded by configuration (route prefixes, status codes,
//! fixed kinds); never a user, email, token or cookie.

pub mod access_log;
pub mod otel;
pub mod trace_context;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Counter, Histogram};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// An error and its sources on one line ("client error (Connect): tcp
/// connect error: Connection refused"), for a log line: hyper's top-level
/// message alone says little. Transport errors carry no secrets.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Keeps the background log writer alive; dropping it flushes what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global tracing subscriber. `RUST_LOG` overrides the level.
/// With `tracer` (span export on), a second layer hands the gateway's spans
/// ([`otel::TARGET`]) to OpenTelemetry; the log formatter never sees spans.
///
/// Lines are formatted on the request's thread but written by a background
/// thread in batches: a `write` per access-log line on the request path
/// halved throughput. The queue never drops lines (`lossy(false)`): when it
/// is full, requests wait, so an access log is never silently incomplete.
pub fn init_logging(
    format: LogFormat,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> LogGuard {
    use tracing_subscriber::filter::{FilterExt as _, filter_fn};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, fmt};

    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(65_536)
        .thread_name("portcullis-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs_only = filter.and(filter_fn(|meta| !meta.is_span()));
    access_log::set_pretty(format == LogFormat::Pretty);
    let fmt_layer = match format {
        LogFormat::Json => fmt::layer()
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(logs_only)
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_writer(writer)
            .with_filter(logs_only)
            .boxed(),
    };
    let export = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(|meta| {
                meta.is_span() && meta.target() == otel::TARGET
            }))
    });
    let result = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(export)
        .try_init();
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    guard
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process.
pub fn init_metrics() {
    PROMETHEUS.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                &buckets,
            )
            .ok()?;
        let handle = builder.install_recorder().ok()?;
        // Histogram samples are buffered until upkeep folds them into the
        // buckets; without it a gateway that nobody scrapes grows forever.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("portcullis-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            eprintln!("cannot start the metrics upkeep thread: {err}");
        }
        metrics::describe_counter!(
            "portcullis_requests_total",
            "Requests answered, by route and status"
        );
        metrics::describe_histogram!(
            "portcullis_request_duration_seconds",
            metrics::Unit::Seconds,
            "Time from request head to response head, by route"
        );
        metrics::describe_counter!(
            "portcullis_upstream_errors_total",
            "Upstream failures, by route and kind"
        );
        Some(handle)
    });
}

/// Renders the Prometheus text exposition.
pub fn render_metrics() -> String {
    match PROMETHEUS.get() {
        Some(Some(handle)) => handle.render(),
        _ => String::new(),
    }
}

/// Status codes whose counters are resolved once per route.
const COMMON_STATUSES: [u16; 16] = [
    200, 201, 204, 206, 301, 302, 303, 304, 400, 401, 403, 404, 500, 502, 503, 504,
];

/// A route's metric handles, resolved once: looking a labelled metric up by
/// name on every request (hashing and allocating its labels) showed in
/// profiles of the proxy path.
pub struct RouteMetrics {
    label: String,
    duration: Histogram,
    statuses: Vec<(u16, Counter)>,
}

impl RouteMetrics {
    /// Handles for the route labelled `label`.
    pub fn new(label: &str) -> Self {
        let owned = label.to_owned();
        RouteMetrics {
            duration: metrics::histogram!("portcullis_request_duration_seconds", "route" => owned.clone()),
            statuses: COMMON_STATUSES
                .iter()
                .map(|&code| {
                    let counter = metrics::counter!(
                        "portcullis_requests_total",
                        "route" => owned.clone(),
                        "status" => code.to_string()
                    );
                    (code, counter)
                })
                .collect(),
            label: owned,
        }
    }

    /// The route label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Records one answered request.
    pub fn record(&self, status: http::StatusCode, elapsed: Duration, error: Option<&'static str>) {
        let code = status.as_u16();
        match self.statuses.iter().find(|(c, _)| *c == code) {
            Some((_, counter)) => counter.increment(1),
            None => metrics::counter!(
                "portcullis_requests_total",
                "route" => self.label.clone(),
                "status" => code.to_string()
            )
            .increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
        if let Some(kind @ ("connect" | "timeout" | "upstream")) = error {
            metrics::counter!("portcullis_upstream_errors_total", "route" => self.label.clone(), "kind" => kind)
                .increment(1);
        }
    }
}
