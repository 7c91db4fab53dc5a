//! OpenTelemetry: a running Stride exports its spans over OTLP/HTTP to a receiver this test
//! runs on loopback (decoded with the opentelemetry-proto definitions): names, attributes,
//! parent links, W3C trace context in and out, and no PHI.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use stride_tests::fhir::*;
use stride_tests::spawn_app;

const PV: &str = "/cds-services/running-knee-patient-view";
const PATIENT: &str = "patient-zz9";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn serve<F>(handler: F) -> String
where
    F: Fn(HttpRequest, web::Bytes) -> HttpResponse + Clone + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        let h = handler.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let h = h.clone();
            async move { h(req, body) }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    base
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_with_names_parents_and_no_phi() {
    // The receiver.
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = spans.clone();
    let otlp = serve(move |req, body| {
        assert_eq!(req.path(), "/v1/traces");
        let export = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for rs in export.resource_spans {
            for ss in rs.scope_spans {
                sink.lock().unwrap().extend(ss.spans);
            }
        }
        HttpResponse::Ok().finish()
    });
    // The EHR's FHIR server, which records the trace context Stride sends it.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen_by_ehr = seen.clone();
    let ehr = serve(move |req, _| {
        let tp = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        seen_by_ehr.lock().unwrap().push(tp);
        let body = if req.path().ends_with("/Condition") {
            bundle(&[condition("k", "M25.561", Some(20))])
        } else {
            bundle(&recovered_walker())
        };
        // The records are this patient's (a resource about anyone else is never used).
        let body = as_patient(&body, PATIENT);
        HttpResponse::Ok()
            .content_type("application/fhir+json")
            .json(body)
    });

    // SAFETY of set_var: this test binary has this one test; nothing reads the environment concurrently.
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp);
    // An operator quiets the log: the trace export must not go quiet with it.
    std::env::set_var("RUST_LOG", "warn");
    std::env::set_var("OTEL_SERVICE_NAME", "stride-under-test");
    let telemetry = stride::telemetry::init(stride::config::LogFormat::Json);
    let app = spawn_app().await;

    let mut body = patient_view(json!({}));
    body["context"]["patientId"] = json!(PATIENT);
    body["fhirServer"] = json!(format!("{ehr}/fhir"));
    let res = app
        .cds(PV)
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let mut got = Vec::new();
    for _ in 0..50 {
        let t = &telemetry;
        tokio::task::block_in_place(|| t.flush());
        got = spans.lock().unwrap().clone();
        if got.iter().any(|s| s.name == "POST /cds-services/{id}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let by_name = |n: &str| {
        got.iter().find(|s| s.name == n).unwrap_or_else(|| {
            panic!(
                "no span {n}: {:?}",
                got.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };

    // The caller's trace continues: same trace id, the caller's span as parent.
    let root = by_name("POST /cds-services/{id}");
    assert_eq!(hex(&root.trace_id), TRACE);
    assert_eq!(hex(&root.parent_span_id), PARENT);
    assert_eq!(
        attr(root, "http.route").as_deref(),
        Some("/cds-services/{id}")
    );
    assert_eq!(attr(root, "http.status_code").as_deref(), Some("200"));

    let hook = by_name("cds hook");
    assert_eq!(
        hook.parent_span_id, root.span_id,
        "the hook span is a child of the request span"
    );
    assert_eq!(attr(hook, "hook").as_deref(), Some("patient-view"));
    assert_eq!(
        attr(hook, "service").as_deref(),
        Some("running-knee-patient-view")
    );
    assert_eq!(attr(hook, "decision").as_deref(), Some("walk-run"));
    assert_eq!(attr(hook, "outcome").as_deref(), Some("answered"));
    for child in ["evaluate", "prefetch fetch", "record_hook"] {
        let s = by_name(child);
        assert_eq!(hex(&s.trace_id), TRACE, "{child} is in the same trace");
    }
    assert_eq!(by_name("evaluate").parent_span_id, hook.span_id);
    assert_eq!(by_name("auth").trace_id, root.trace_id);

    // Out: the EHR's FHIR server received the same trace.
    let sent = seen.lock().unwrap().clone();
    assert!(
        !sent.is_empty() && sent.iter().all(|tp| tp.contains(TRACE)),
        "{sent:?}"
    );

    // No PHI: the patient id appears in no span name or attribute.
    for s in &got {
        assert!(!s.name.contains(PATIENT));
        for a in &s.attributes {
            assert!(
                !format!("{:?}", a.value).contains(PATIENT),
                "{} carries the patient id",
                a.key
            );
        }
    }
}
