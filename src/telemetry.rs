//! Logging and metrics setup, and the metric names the gateway records.
//! Labels are bounded by configuration (route prefixes, status codes,
//! fixed kinds); never a user, email, token or cookie.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides the level.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
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

/// Records one answered request.
pub fn record_request(
    route: &str,
    status: http::StatusCode,
    elapsed: Duration,
    error: Option<&'static str>,
) {
    let route = route.to_owned();
    metrics::counter!("portcullis_requests_total", "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!("portcullis_request_duration_seconds", "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if let Some(kind @ ("connect" | "timeout" | "upstream")) = error {
        metrics::counter!("portcullis_upstream_errors_total", "route" => route, "kind" => kind)
            .increment(1);
    }
}
