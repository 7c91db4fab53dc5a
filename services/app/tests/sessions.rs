//! Staff sessions as a use case (`sessions`), in process on a fresh SQLite store: a sign-in
//! opens a session every replica finds and records who signed in, how, with which scopes and
//! until when; a sign-out ends it and records that (issue 32: use cases tested without HTTP).

mod support;

use serde_json::json;
use stride_app::actor::{Actor, Stamp};
use stride_app::sessions::{sign_in, sign_out};
use stride_auth::Kind;
use stride_store::StaffSession;

#[tokio::test]
async fn a_sign_in_opens_a_session_and_a_sign_out_ends_it_each_recorded() {
    let (_dir, store) = support::fresh_store().await;
    let mut caller = support::caller("https://idp.example", "ana", "clinic-a", Kind::Staff);
    caller.scopes = vec!["careplan.read".into()];
    caller.patient = Some("Patient/p1".into());
    let actor = Actor::new(
        caller.clone(),
        Stamp {
            trace_id: Some("t-1".into()),
            route: "/ui/auth/callback".into(),
            method: "GET".into(),
        },
    );
    let now = 1_800_000_000;
    let session = StaffSession {
        id_hash: "h".repeat(64),
        issuer: caller.issuer.clone(),
        subject: caller.subject.clone(),
        tenant: caller.tenant.clone(),
        all_tenants: false,
        scopes: caller.scopes.clone(),
        csrf: "c".into(),
        created_at: now,
        expires_at: now + 3600,
        patient: caller.patient.clone(),
        fhir_user: None,
    };
    sign_in(
        store.as_ref(),
        &actor,
        &session,
        json!({"via": "OpenID Connect"}),
        now,
    )
    .await
    .unwrap();
    let found = store.session(&session.id_hash, now + 1).await.unwrap();
    assert_eq!(found.map(|s| s.subject), Some("ana".to_owned()));

    // Ending a session nobody presented, by nobody signed in, records nothing.
    sign_out(store.as_ref(), None, None).await.unwrap();
    sign_out(store.as_ref(), Some(&actor), Some(&session.id_hash))
        .await
        .unwrap();
    assert!(store
        .session(&session.id_hash, now + 2)
        .await
        .unwrap()
        .is_none());

    let nobody = support::audit_log(store.as_ref(), stride_app::actor::UNAUTHENTICATED).await;
    assert!(nobody.is_empty(), "{nobody:?}");
    let log = support::audit_log(store.as_ref(), "clinic-a").await;
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["staff-sign-in", "staff-sign-out"]);
    let signed_in = &log[0];
    assert_eq!(signed_in.caller_subject.as_deref(), Some("ana"));
    assert_eq!(
        signed_in
            .patient_ref
            .as_ref()
            .map(stride_store::PatientRef::as_str),
        Some("Patient/p1")
    );
    assert_eq!(signed_in.trace_id.as_deref(), Some("t-1"));
    assert_eq!(signed_in.details["via"], "OpenID Connect");
    assert_eq!(signed_in.details["route"], "/ui/auth/callback");
    assert_eq!(signed_in.details["scopes"], json!(["careplan.read"]));
    assert_eq!(signed_in.details["expiresAt"], json!(now + 3600));
}
