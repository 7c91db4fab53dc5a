//! `GET /openapi.json`: every endpoint, its parameters, bodies and answers (OpenAPI 3.0).
//! Written out rather than derived: the CDS Hooks shapes are the specification's, not ours,
//! and a test checks that every path listed here is served.

use actix_web::{get, web, HttpResponse};
use serde_json::{json, Value as Json};

use crate::state::AppState;

fn outcome(description: &str) -> Json {
    json!({"description": description, "content": {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}})
}

fn ok_json(description: &str, schema: Json) -> Json {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn fhir_read(kind: &str) -> Json {
    json!({"get": {
        "summary": format!("Read a {kind}"),
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": kind, "content": {"application/fhir+json": {"schema": {"type": "object", "required": ["resourceType"]}}}},
            "404": outcome("No such resource"),
        }
    }})
}

/// PlanDefinition/$apply (its own function: one `json!` for the whole document would pass
/// the macro's recursion limit).
fn plan_apply(id_param: &Json) -> Json {
    json!({"post": {
        "summary": "The CarePlan a patient-view hook call would draft with this version, for the patient data sent or fetched (FHIR R4 $apply; stored as a draft for review only with store=true)",
        "description": "Parameters: subject (Patient/[id], required); encounter (Encounter/[id]); either data (a Bundle of the patient's Conditions and Observations) or fhirServer (valueUrl) with fhirAccessToken (valueString), to fetch them as a hook's prefetch fallback does; store (valueBoolean).",
        "security": [{"cdsClientJwt": []}],
        "parameters": [id_param],
        "requestBody": {"required": true, "content": {"application/fhir+json": {"schema": {"type": "object", "required": ["resourceType", "parameter"], "properties": {
            "resourceType": {"type": "string", "enum": ["Parameters"]},
            "parameter": {"type": "array", "items": {"type": "object", "required": ["name"]}}}}}}},
        "responses": {"200": {"description": "CarePlan (with store=true: the identical draft already waiting for review, at Location)", "content": {"application/fhir+json": {"schema": {"type": "object", "required": ["resourceType"]}}}},
                      "201": {"description": "CarePlan stored as a new draft for review (store=true), at Location", "content": {"application/fhir+json": {"schema": {"type": "object", "required": ["resourceType"]}}}},
                      "400": outcome("Bad Parameters (subject Patient/[id], and a data Bundle or a fhirServer, are required)"),
                      "412": outcome("The patient's data could not be fetched from the fhirServer named"),
                      "503": outcome("Overloaded, or the call could not be recorded"),
                      "401": outcome("No valid CDS client token for this URL"), "404": outcome("No such PlanDefinition"),
                      "409": outcome("A draft version drafts no plans"),
                      "422": outcome("The guideline does not apply to the data sent")},
    }})
}

/// CarePlan/$review (its own function, for the same reason as `plan_apply`).
fn careplan_review(id_param: &Json) -> Json {
    json!({"post": {
        "summary": "Approve, revise (edited recommendations, reason) or reject (reason) a drafted CarePlan (staff, careplan.review)",
        "security": [{"staffJwt": []}],
        "parameters": [id_param],
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["action", "version"], "properties": {
            "action": {"type": "string", "enum": ["approve", "revise", "reject"]}, "version": {"type": "integer"},
            "reason": {"type": "string"},
            "recommendations": {"type": "array", "items": {"type": "object", "required": ["id", "text"], "properties": {"id": {"type": "string"}, "text": {"type": "string"}}}},
            "activity": {"type": "array", "items": {"type": "object"}}}}}}},
        "responses": {"200": {"description": "The reviewed CarePlan", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                      "400": outcome("Bad review (missing reason, unknown recommendation, invalid activities)"), "401": outcome("No valid staff token"),
                      "403": outcome("Scope careplan.review missing"), "404": outcome("No such CarePlan"),
                      "409": outcome("Already decided by someone else: reload")},
    }})
}

pub fn document(public_url: &str) -> Json {
    let auth_errors = |mut r: serde_json::Map<String, Json>| {
        r.insert(
            "400".into(),
            outcome("Malformed request: the body says which field"),
        );
        r.insert("401".into(), outcome("No valid CDS client JWT"));
        r.insert(
            "403".into(),
            outcome("The caller may not call this service (kind or tenant)"),
        );
        r.insert("404".into(), outcome("No such CDS service"));
        r.insert("413".into(), outcome("Body over the size limit"));
        r.insert("415".into(), outcome("Body is not application/json"));
        r.insert(
            "503".into(),
            outcome("Database unavailable: nothing was decided (Retry-After)"),
        );
        Json::Object(r)
    };
    let id_param =
        json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let mut hook_responses = serde_json::Map::new();
    hook_responses.insert(
        "200".into(),
        ok_json(
            "Cards (possibly none)",
            json!({"$ref": "#/components/schemas/CdsResponse"}),
        ),
    );
    hook_responses.insert(
        "412".into(),
        outcome("Required data could be neither prefetched nor fetched"),
    );
    let mut feedback_responses = serde_json::Map::new();
    feedback_responses.insert("200".into(), json!({"description": "Feedback stored"}));
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "Stride", "version": env!("CARGO_PKG_VERSION"),
                 "description": "CDS Hooks 2.0 clinical decision support for sudden medial knee/thigh pain in runners."},
        "servers": [{"url": public_url}],
        "paths": {
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": ok_json("Alive", json!({"type": "object"}))}}},
            "/readyz": {"get": {"summary": "Readiness: database reachable and rule sets loaded", "responses": {
                "200": ok_json("Ready", json!({"type": "object"})), "503": ok_json("Not ready", json!({"type": "object"}))}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format)", "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/cds-services": {"get": {"summary": "CDS Hooks discovery", "responses": {
                "200": ok_json("The services", json!({"type": "object", "required": ["services"]}))}}},
            "/cds-services/{id}": {"post": {
                "summary": "Call a CDS service (a hook)",
                "security": [{"cdsClientJwt": []}],
                "parameters": [id_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HookRequest"}}}},
                "responses": auth_errors(hook_responses),
            }},
            "/cds-services/{id}/feedback": {"post": {
                "summary": "Card feedback (accepted / overridden)",
                "security": [{"cdsClientJwt": []}],
                "parameters": [id_param],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}}},
                "responses": auth_errors(feedback_responses),
            }},
            "/guidelines": {"get": {
                "summary": "Every guideline, its versions (status, effective period) and the default; with a staff token, which version answers each clinic the caller may see",
                "responses": {"200": ok_json("Guidelines, versions and the versions in force", json!({"type": "object",
                    "required": ["guidelines"], "properties": {"guidelines": {"type": "array", "items": {"type": "object"}}}})),
                    "401": outcome("A bearer token that is not a valid staff token")},
            }},
            "/guidelines/{id}/{version}": {"get": {
                "summary": "A rule-set version as loaded (JSON)",
                "parameters": [id_param, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": ok_json("The rule set", json!({"type": "object"})), "404": outcome("No such version")},
            }},
            "/guidelines/{id}/{version}/about": {"get": {
                "summary": "A version's source attributes in words (HTML; the page every card links to)",
                "parameters": [id_param, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}, "404": outcome("No such version")},
            }},
            "/guidelines/{id}/{version}/$sign-off": {"post": {
                "summary": "Approve or reject a rule-set version for the signer's clinic, naming the impactHash of the impact report read (staff, guideline.approve)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["decision", "impact"],
                    "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]}, "reason": {"type": "string"}, "impact": {"type": "string"}}}}}},
                "responses": {"201": ok_json("The sign-off as recorded", json!({"type": "object"})),
                              "400": outcome("A bad body (a rejection needs its reason)"), "401": outcome("No valid staff token"), "403": outcome("Scope guideline.approve missing"),
                              "404": outcome("No such version"), "409": outcome("No kept impact report with this hash, or the version is in force already"),
                              "413": outcome("Body too large"), "415": outcome("Not JSON")},
            }},
            "/guidelines/{id}/{version}/$activate": {"post": {
                "summary": "Put a version in force for a clinic once two distinct staff approved it (staff, guideline.approve)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param, {"name": "version", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["tenant"],
                    "properties": {"tenant": {"type": "string"}}}}}},
                "responses": {"200": ok_json("The activation as recorded", json!({"type": "object"})),
                              "400": outcome("A bad body"), "401": outcome("No valid staff token"), "403": outcome("Scope guideline.approve missing, or another clinic"),
                              "404": outcome("No such version"), "409": outcome("Fewer than two approvals, or a standing rejection"),
                              "413": outcome("Body too large"), "415": outcome("Not JSON")},
            }},
            "/analytics/cards": {"get": {
                "summary": "Card effectiveness per rule-set version, card, clinic and month: shown, accepted, overridden (by reason), without feedback (staff, analytics.read)",
                "security": [{"staffJwt": []}],
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "guideline", "in": "query", "schema": {"type": "string"}},
                    {"name": "version", "in": "query", "schema": {"type": "string"}},
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "ndjson", "fhir"]}},
                ],
                "responses": {"200": {"description": "NDJSON (default), CSV, or a Bundle of MeasureReports (fhir)", "content": {
                                  "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}},
                                  "application/fhir+json": {"schema": {"type": "object"}}}},
                              "400": outcome("A bad filter or format"), "401": outcome("No valid staff token"), "403": outcome("Scope analytics.read missing")},
            }},
            "/analytics/feedback": {"get": {
                "summary": "Every card feedback as the DSI criterion's export names it: intervention, action, feedback, user, date, location (staff, analytics.read)",
                "security": [{"staffJwt": []}],
                "parameters": [
                    {"name": "from", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "to", "in": "query", "schema": {"type": "string", "format": "date"}},
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "ndjson"]}},
                ],
                "responses": {"200": {"description": "NDJSON (default) or CSV", "content": {
                                  "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}},
                              "400": outcome("A bad filter or format"), "401": outcome("No valid staff token"), "403": outcome("Scope analytics.read missing")},
            }},
            "/ui/analytics": {"get": {
                "summary": "The card-effectiveness page (HTML; staff, analytics.read)",
                "security": [{"staffJwt": []}],
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                              "400": outcome("A bad filter"), "401": outcome("No valid staff token"), "403": outcome("Scope analytics.read missing")},
            }},
            "/fhir/DocumentReference": {"get": {
                "summary": "The take-home plan of an approved CarePlan (staff, careplan.read): related=CarePlan/{id}",
                "security": [{"staffJwt": []}],
                "parameters": [{"name": "related", "in": "query", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "Bundle (searchset): the DocumentReference, or none before approval", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                              "400": outcome("related is missing or not a CarePlan reference"), "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing")},
            }},
            "/fhir/DocumentReference/{id}": {"get": {
                "summary": "The take-home plan (PDF inline) of the approved CarePlan with this id (staff, careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param],
                "responses": {"200": {"description": "DocumentReference", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                              "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing"), "404": outcome("No such CarePlan"),
                              "409": outcome("The CarePlan is not approved"), "422": outcome("Its rule-set version has no patient wording")},
            }},
            "/ui/careplans/{id}/patient": {"get": {
                "summary": "The patient's take-home plan of an approved CarePlan (HTML; staff, careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param],
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                              "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing"), "404": outcome("No such CarePlan"),
                              "409": outcome("The CarePlan is not approved"), "422": outcome("Its rule-set version has no patient wording")},
            }},
            "/ui/careplans/{id}/patient.pdf": {"get": {
                "summary": "The same take-home plan as a PDF, A4 or US Letter (staff, careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param, {"name": "paper", "in": "query", "schema": {"type": "string", "enum": ["a4", "letter"]}}],
                "responses": {"200": {"description": "PDF", "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                              "400": outcome("paper is not a4 or letter"), "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing"),
                              "404": outcome("No such CarePlan"), "409": outcome("The CarePlan is not approved"), "422": outcome("Its rule-set version has no patient wording")},
            }},
            "/fhir/metadata": {"get": {"summary": "CapabilityStatement", "responses": {
                "200": {"description": "CapabilityStatement", "content": {"application/fhir+json": {"schema": {"type": "object"}}}}}}},
            "/fhir/CarePlan/{id}": {"get": {
                "summary": "A CarePlan Stride drafted (staff, scope careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param],
                "responses": {"200": {"description": "CarePlan", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                              "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing"), "404": outcome("No such CarePlan")},
            }},
            "/fhir/CarePlan": {"get": {
                "summary": "Search the tenant's CarePlans (staff, scope careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [
                    {"name": "patient", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["draft", "active", "revoked", "entered-in-error"]}},
                    {"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                ],
                "responses": {"200": {"description": "Bundle (searchset)", "content": {"application/fhir+json": {"schema": {"type": "object"}}}},
                              "400": outcome("Bad search parameter"), "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing")},
            }},
            "/fhir/CarePlan/{id}/$review": careplan_review(&id_param),
            "/ui/careplans/{id}": {"get": {
                "summary": "The CarePlan review page (HTML; staff, careplan.read)",
                "security": [{"staffJwt": []}],
                "parameters": [id_param],
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                              "401": outcome("No valid staff token"), "403": outcome("Scope careplan.read missing"), "404": outcome("No such CarePlan")},
            }},
            "/ui/style.css": {"get": {"summary": "The pages' stylesheet", "responses": {"200": {"description": "CSS", "content": {"text/css": {"schema": {"type": "string"}}}}}}},
            "/fhir/PlanDefinition/{id}": fhir_read("PlanDefinition"),
            "/fhir/PlanDefinition/{id}/$apply": plan_apply(&id_param),
            "/fhir/CodeSystem/{id}": fhir_read("CodeSystem"),
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": ok_json("OpenAPI 3.0", json!({"type": "object"}))}}},
        },
        "components": {
            "securitySchemes": {"staffJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "Staff access token from a staff issuer of the trust file; aud = the public URL; scopes careplan.read, careplan.review, audit.read."},
                "cdsClientJwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "CDS Hooks 2.0 client JWT: ES384/RS384, aud = the service URL, unique jti."}},
            "schemas": {
                "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"], "properties": {
                    "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                    "issue": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["severity", "code"]}}}},
                "HookRequest": {"type": "object", "required": ["hook", "hookInstance", "context"], "properties": {
                    "hook": {"type": "string", "enum": stride_hooks::Hook::names()},
                    "hookInstance": {"type": "string", "minLength": 1},
                    "fhirServer": {"type": "string", "format": "uri"},
                    "fhirAuthorization": {"type": "object", "required": ["access_token", "token_type", "expires_in", "scope", "subject"]},
                    "context": {"type": "object", "required": ["userId", "patientId"], "properties": {
                        "userId": {"type": "string", "minLength": 1}, "patientId": {"type": "string", "pattern": "^[A-Za-z0-9.-]{1,64}$"},
                        "encounterId": {"type": "string", "minLength": 1}, "draftOrders": {"type": "object"},
                        "selections": {"type": "array", "items": {"type": "string"}}}},
                    "prefetch": {"type": "object"}}},
                "Feedback": {"type": "object", "required": ["feedback"], "properties": {"feedback": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["card", "outcome", "outcomeTimestamp"], "properties": {
                        "card": {"type": "string", "minLength": 1}, "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                        "outcomeTimestamp": {"type": "string", "format": "date-time"},
                        "acceptedSuggestions": {"type": "array", "items": {"type": "object", "required": ["id"]}},
                        "overrideReason": {"type": "object"}}}}}},
                "CdsResponse": {"type": "object", "required": ["cards"], "properties": {
                    "cards": {"type": "array", "items": {"$ref": "#/components/schemas/Card"}},
                    "systemActions": {"type": "array", "items": {"type": "object"}}}},
                "Card": {"type": "object", "required": ["uuid", "summary", "indicator", "source"], "properties": {
                    "uuid": {"type": "string"}, "summary": {"type": "string", "maxLength": 140}, "detail": {"type": "string"},
                    "indicator": {"type": "string", "enum": ["info", "warning", "critical"]},
                    "source": {"type": "object", "required": ["label"]},
                    "suggestions": {"type": "array", "items": {"type": "object"}},
                    "selectionBehavior": {"type": "string", "enum": ["at-most-one", "any"]},
                    "overrideReasons": {"type": "array", "items": {"type": "object", "required": ["code", "system", "display"]}},
                    "links": {"type": "array", "items": {"type": "object", "required": ["label", "url", "type"]}}}},
            },
        },
    });
    // Added beside the document: one `json!` for every path reaches the macro's recursion limit.
    doc["paths"]["/ui/guidelines"] = json!({"get": {
        "summary": "The committee's page of guideline versions, sign-offs and where each is in force (HTML; staff, guideline.approve)",
        "security": [{"staffJwt": []}],
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                      "401": outcome("No valid staff token"), "403": outcome("Scope guideline.approve missing")},
    }});
    doc
}

#[get("/openapi.json")]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(state.settings.public_url.as_str()))
}

/// This module's endpoints (the order is the order they are matched in).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi);
}
