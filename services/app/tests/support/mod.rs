//! What the in-process use-case tests share: a fresh, migrated SQLite store, a caller, a hook
//! call decided and recorded, and the audit log a use case left.

#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, value::RawValue, Value as Json};
use stride_app::actor::{Actor, Stamp};
use stride_app::catalog::{Catalog, Service};
use stride_app::hook::{answer, fingerprint, Answer, Call, Fetch, HookError, Unfetched};
use stride_auth::{Caller, Kind};
use stride_fhir::clinic::ClinicZone;
use stride_guideline::RuleSet;
use stride_hooks::request::HookRequest;
use stride_store::{AuditQuery, NewAuditEntry, PoolOptions, Store};
use time::{Duration, OffsetDateTime};

/// A fresh SQLite store, migrated; the folder holding it lives as long as the first value.
pub async fn fresh_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("stride.db").display());
    let store = stride_store::connect(&url, &PoolOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

/// An authenticated caller of `tenant` with no scopes, no launch and a token that never ends.
pub fn caller(issuer: &str, subject: &str, tenant: &str, kind: Kind) -> Caller {
    Caller {
        issuer: issuer.into(),
        subject: subject.into(),
        tenant: stride_store::TenantId::parse(tenant).unwrap(),
        all_tenants: false,
        timezone: None,
        kind,
        jti: None,
        expires_at: i64::MAX,
        scopes: Vec::new(),
        patient: None,
        fhir_user: None,
    }
}

/// `tenant`'s audit chain, in chain order.
pub async fn audit_log(store: &dyn Store, tenant: &str) -> Vec<NewAuditEntry> {
    let query = AuditQuery {
        tenant: Some(stride_store::TenantId::parse(tenant).unwrap()),
        ..AuditQuery::default()
    };
    store
        .audit_stream(&query, true)
        .map(|e| e.unwrap().entry)
        .collect()
        .await
}

/// Everything is in the prefetch: a fetch would be a bug.
pub struct NoFetch;

impl Fetch for NoFetch {
    fn available(&self) -> bool {
        false
    }
    async fn fetch(&mut self, _: &str, _: &str) -> Result<Vec<Box<RawValue>>, Unfetched> {
        Err(Unfetched::Failed)
    }
}

/// A CDS client of `tenant` calling the hook route.
pub fn actor(issuer: &str, tenant: &str) -> Actor {
    let caller = caller(issuer, "ehr-client", tenant, Kind::CdsClient);
    let stamp = Stamp {
        trace_id: None,
        route: "/cds-services/{id}".into(),
        method: "POST".into(),
    };
    Actor::new(caller, stamp)
}

/// A runner three days into knee pain: decided as rest.
pub fn body(instance: &str) -> Vec<u8> {
    body_of(instance, "1990-04-01")
}

/// The same runner, born on `birth_date`.
pub fn body_of(instance: &str, birth_date: &str) -> Vec<u8> {
    let onset = (OffsetDateTime::now_utc() - Duration::days(3)).date();
    let bundle = |entries: Vec<Json>| {
        json!({"resourceType": "Bundle", "type": "searchset",
               "entry": entries.into_iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()})
    };
    let knee = json!({"resourceType": "Condition", "id": "k",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
        "subject": {"reference": "Patient/p1"}, "onsetDateTime": onset.to_string()});
    serde_json::to_vec(&json!({
        "hook": "patient-view",
        "hookInstance": instance,
        "context": {"userId": "Practitioner/dr-1", "patientId": "p1"},
        "prefetch": {
            "Patient": {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": birth_date},
            "Condition": bundle(vec![knee]),
            "Observation": bundle(Vec::new()),
            "CarePlan": bundle(Vec::new()),
        },
    }))
    .unwrap()
}

/// A fresh store and the project's rule sets.
pub struct World {
    _dir: tempfile::TempDir,
    pub store: Arc<dyn Store>,
    pub catalog: Arc<Catalog>,
}

pub async fn world() -> World {
    let (dir, store) = fresh_store().await;
    let guidelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guidelines");
    World {
        _dir: dir,
        store,
        catalog: Arc::new(Catalog::load(&guidelines).unwrap()),
    }
}

/// One call of `body` by `actor` with a fresh token (`jti`), as the route makes it.
pub async fn call(w: &World, actor: &Actor, body: &[u8], jti: &str) -> Result<Answer, HookError> {
    call_under(w, actor, body, jti, None).await
}

/// The same, with `shadow`, a version of the guideline, decided beside it.
pub async fn call_under(
    w: &World,
    actor: &Actor,
    body: &[u8],
    jti: &str,
    shadow: Option<&str>,
) -> Result<Answer, HookError> {
    let svc = w.catalog.service("running-knee-patient-view").unwrap();
    let rs = w.catalog.current(&svc.guideline).unwrap().clone();
    let shadow = shadow.map(|v| w.catalog.get(&svc.guideline, &v.parse().unwrap()).unwrap());
    let req = stride_hooks::request::parse(body, svc.hook, true).unwrap();
    let zone = ClinicZone::for_tenant(None);
    let c = hook_call(
        svc,
        (&rs, shadow),
        &req,
        &actor.caller,
        &zone,
        OffsetDateTime::now_utc(),
    );
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let claim = w
        .store
        .claim_jti(&actor.caller.issuer, jti, now + 300, now)
        .await
        .unwrap();
    answer(w.store.as_ref(), actor, &c, &mut NoFetch, claim).await
}

/// A hook call of `req` to `svc` by `caller`, decided by the version in force and any
/// candidate in shadow (`versions`), as the route makes it.
pub fn hook_call<'a>(
    svc: &'a Service,
    versions: (&'a Arc<RuleSet>, Option<&'a Arc<RuleSet>>),
    req: &'a HookRequest<'a>,
    caller: &'a Caller,
    zone: &'a ClinicZone,
    now: OffsetDateTime,
) -> Call<'a> {
    Call {
        service: svc,
        rule_set: versions.0,
        shadow: versions.1,
        request: req,
        tenant: &caller.tenant,
        issuer: &caller.issuer,
        zone,
        now,
        public_url: "https://stride.example",
        fingerprint: fingerprint(svc, req),
        smart_launch: false,
    }
}

/// The adversarial patient records of `tests/fixtures/adversarial/` (issue 30: written from
/// the guideline text alone, without reading the code), with their file names, in name order.
pub fn adversarial_records() -> Vec<(String, Json)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/adversarial");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let case = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
            (name, case)
        })
        .collect()
}

/// An adversarial record's clinic zone and the moment it is decided at (`zone`, `today`).
pub fn decided_when(case: &Json) -> (ClinicZone, OffsetDateTime) {
    let zone = ClinicZone::named(case["zone"].as_str().unwrap()).unwrap();
    let now = OffsetDateTime::parse(
        case["today"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (zone, now)
}
