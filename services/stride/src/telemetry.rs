//! Logs: structured JSON through `tracing`. The request span carries the route template,
//! never the path or query (they can hold patient ids), nor client address or user agent.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{Error, HttpMessage};
use tracing::Span;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the OpenTelemetry pipeline alive; dropping it flushes what is buffered.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Export what the batch processor holds now (tests, shutdown).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// The OTLP/HTTP pipeline when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The standard variables
/// are read by the SDK: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER(_ARG)`, and the batch processor's
/// `OTEL_BSP_SCHEDULE_DELAY`, `_MAX_QUEUE_SIZE`, `_MAX_EXPORT_BATCH_SIZE`, `_EXPORT_TIMEOUT`
/// (the batch processor is built from the SDK's default configuration, which reads them).
/// What is buffered at shutdown is exported when `Telemetry` drops (after the server has
/// drained, before the process exits; tested in tests/cli.rs with a real SIGTERM).
fn otlp() -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())?;
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("stride: OpenTelemetry export to {endpoint} disabled: {e}");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("stride");
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Some(provider)
}

/// Install the global subscriber once. `RUST_LOG` filters the log (default `info`); the trace
/// export has a filter of its own, `STRIDE_TRACE_FILTER` (default `info`), and follows
/// `OTEL_TRACES_SAMPLER`: an operator who quiets the log with `RUST_LOG=warn` keeps the traces.
pub fn init(format: LogFormat) -> Telemetry {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    let provider = otlp();
    let trace_filter = std::env::var("STRIDE_TRACE_FILTER")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("stride"))
            .with_filter(trace_filter)
    });
    let log_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(otel);
    let result = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    // One line per finished request, with its route, status and duration.
                    .with_span_events(FmtSpan::CLOSE)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().with_filter(log_filter()))
            .try_init(),
    };
    // A second init (tests spawning several apps) keeps the first subscriber.
    let _ = result;
    Telemetry { provider }
}

/// W3C trace context from a request's headers (`traceparent`, `tracestate`).
struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Inject the current span's trace context into outgoing headers (to the EHR's FHIR server).
pub fn inject(headers: &mut reqwest::header::HeaderMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers))
    });
}

pub struct StrideRootSpan;

/// The route template a request matched ("unmatched" for none), kept in its extensions.
#[derive(Clone)]
pub struct Route(pub String);

impl RootSpanBuilder for StrideRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        // Matching a path against the routes is a regex search: the metrics reuse this one.
        request.extensions_mut().insert(Route(route.clone()));
        let method = request.method().as_str().to_owned();
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "http request",
            otel.name = %format!("{method} {route}"),
            otel.kind = "server",
            http.method = %method,
            http.route = %route,
            http.status_code = tracing::field::Empty,
            request_id = %request_id,
            exception.message = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // Continue the caller's trace when it sent a W3C traceparent.
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&Headers(request.headers()))
        });
        let _ = span.set_parent(parent);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        match outcome {
            Ok(res) => {
                span.record("http.status_code", res.status().as_u16());
                if res.status().is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                if let Some(e) = res.response().error() {
                    span.record("exception.message", tracing::field::display(e));
                }
            }
            Err(e) => {
                span.record(
                    "http.status_code",
                    e.as_response_error().status_code().as_u16(),
                );
                span.record("exception.message", tracing::field::display(e));
            }
        }
    }
}
