//! Staff sessions of the pages. A sign-in opens a session and records who signed in, with
//! which scopes and until when; a sign-out ends it and records that too. Both were written in
//! the sign-in route (its entry's route and method overwritten by the sign-in's details); they
//! are a use case like any other read or change of the store.

use serde_json::{json, Value as Json};
use stride_store::audit::Action;
use stride_store::{PatientRef, PendingLogin, StaffSession, Store, StoreError};

use crate::actor::Actor;

/// Open `session` for `actor` at `now` (seconds) and record the sign-in with `details` (how
/// they signed in).
pub async fn sign_in(
    store: &dyn Store,
    actor: &Actor,
    session: &StaffSession,
    details: Json,
    now: i64,
) -> Result<(), StoreError> {
    store.create_session(session, now).await?;
    let mut entry = actor.entry(Action::StaffSignIn, "success");
    entry.patient_ref = actor.caller.patient.clone().map(PatientRef::stored);
    if let Json::Object(details) = details {
        for (k, v) in details {
            entry.details[k] = v;
        }
    }
    entry.details["scopes"] = json!(actor.caller.scopes);
    entry.details["expiresAt"] = json!(session.expires_at);
    store.append_audit(&entry).await
}

/// Keep a sign-in started with the identity provider (its state's hash, PKCE verifier and
/// nonce) until the browser comes back with it, or until it expires.
pub async fn begin_login(
    store: &dyn Store,
    login: &PendingLogin,
    now: i64,
) -> Result<(), StoreError> {
    store.begin_login(login, now).await
}

/// The sign-in `state_hash` names, removed so that it finishes only once.
pub async fn take_login(
    store: &dyn Store,
    state_hash: &str,
    now: i64,
) -> Result<Option<PendingLogin>, StoreError> {
    store.take_login(state_hash, now).await
}

/// The session whose id hashes to `id_hash`, while it lasts (at `now`, seconds).
pub async fn current(
    store: &dyn Store,
    id_hash: &str,
    now: i64,
) -> Result<Option<StaffSession>, StoreError> {
    store.session(id_hash, now).await
}

/// End the session whose id hashes to `session` (if one was presented) and record the
/// sign-out of `actor` (if someone was signed in).
pub async fn sign_out(
    store: &dyn Store,
    actor: Option<&Actor>,
    session: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(id_hash) = session {
        store.end_session(id_hash).await?;
    }
    if let Some(actor) = actor {
        store
            .append_audit(&actor.entry(Action::StaffSignOut, "success"))
            .await?;
    }
    Ok(())
}
