//! Rule-set versions go live for a clinic only through recorded sign-offs. Two distinct staff
//! holding `guideline.approve` each acknowledge the impact report of the version against the
//! one in force for their clinic (naming its hash), for the rule-set file as it is now (its
//! content hash: a changed file needs new sign-offs); a rejection carries its reason and stops
//! activation until a later approval by the same signer. Activation puts the version in force
//! for the clinic at once, on this replica now and on the others when they read it back.
//! Every sign-off and activation is an audit entry, written with it.

use std::time::Duration;
use stride_store::TenantId;

use serde::Deserialize;
use serde_json::json;
use stride_auth::Caller;
use stride_guideline::RuleSetVersion;
use stride_store::audit::Action;
use stride_store::{Activation, SignOff, Store, StoreError};

use crate::actor::Actor;
use crate::catalog::Catalog;
use crate::impact::{report, Candidate, ImpactError, Scope};
use crate::impact_jobs::{Ask, Jobs, View};
use crate::pins::Pins;

/// How long a sign-off over the API waits for the clinic's report when none is kept yet: a
/// clinic's log of thousands of decisions is done within it.
pub const SIGN_OFF_WAIT: Duration = Duration::from_secs(2);

/// Distinct approvals a version needs before it may be activated for a clinic.
pub const APPROVALS_NEEDED: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    #[error("no such rule-set version")]
    UnknownVersion,
    /// The request is incomplete: what to fix.
    #[error("{0}")]
    Invalid(String),
    /// Not now: the impact report moved on, approvals are missing, or a signer rejected it.
    #[error("{0}")]
    Conflict(String),
    /// A clinic the caller may not act for.
    #[error("not your clinic")]
    Forbidden,
    /// The clinic's impact report could not be computed now (the job failed; logged).
    #[error("the clinic's impact report could not be computed; try again")]
    ReportFailed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ImpactError> for GovernanceError {
    fn from(e: ImpactError) -> Self {
        match e {
            ImpactError::UnknownCandidate(_) => GovernanceError::UnknownVersion,
            ImpactError::Store(e) => GovernanceError::Store(e),
        }
    }
}

/// `POST /guidelines/{id}/{version}/$sign-off`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignOffRequest {
    pub decision: String,
    pub reason: Option<String>,
    /// The `impactHash` of the impact report the signer saw.
    pub impact: String,
}

fn signer(caller: &Caller) -> String {
    format!("{}|{}", caller.issuer, caller.subject)
}

/// Keep the impact report a signer read (over all the clinic's stored decisions, against the
/// version in force for it now): a sign-off names it by its hash, so decisions recorded after
/// the signer read it do not make the sign-off stale. Reports over part of the log (`since`)
/// are not kept: nobody signs off on part.
///
/// `report`: the report as its page shows it (JSON), when it was computed to be read there.
pub async fn keep_report(
    store: &dyn Store,
    catalog: &Catalog,
    pins: &Pins,
    tenant: &TenantId,
    candidate: &Candidate,
    summary: &crate::impact::Summary,
    report: Option<String>,
) -> Result<(), GovernanceError> {
    let rs = catalog
        .get(&candidate.guideline, &candidate.version)
        .ok_or(GovernanceError::UnknownVersion)?;
    // No version in force yet (a guideline's first version): the report is against none.
    let in_force = pins.version_in_force(catalog, &candidate.guideline, tenant);
    store
        .record_impact_report(&stride_store::ImpactReport {
            impact_hash: summary.impact_hash.clone(),
            guideline_id: candidate.guideline.clone(),
            version: candidate.version.to_string(),
            content_hash: rs.content_hash.clone(),
            in_force_version: in_force,
            tenant: tenant.to_owned(),
            decisions: summary.decisions as i64,
            changed: summary.changed as i64,
            computed_at: time::OffsetDateTime::now_utc(),
            report,
        })
        .await?;
    Ok(())
}

/// The impact report of `version` against what is in force for `tenant`, over the clinic's
/// stored decisions as they are now.
async fn current_report(
    store: &dyn Store,
    catalog: &Catalog,
    guideline: &str,
    version: RuleSetVersion,
    tenant: &TenantId,
) -> Result<crate::impact::Summary, GovernanceError> {
    let scope = Scope {
        candidate: Candidate {
            guideline: guideline.to_owned(),
            version,
        },
        since_us: None,
        tenant: Some(tenant.to_owned()),
    };
    Ok(report(store, catalog, &scope, |_| {}, 0, |_| {}).await?)
}

/// That report's hash: what a signer acknowledges.
pub async fn impact_hash(
    store: &dyn Store,
    catalog: &Catalog,
    guideline: &str,
    version: RuleSetVersion,
    tenant: &TenantId,
) -> Result<String, GovernanceError> {
    Ok(current_report(store, catalog, guideline, version, tenant)
        .await?
        .impact_hash)
}

/// Record `actor`'s decision on `guideline` `version` for their clinic. The report they name
/// must be kept (read on the impact page, or with `stride rules impact --tenant`); when none
/// is kept for the clinic yet, its job is started (or joined) and waited for up to `wait`,
/// and a report still being computed then is a conflict to try again, never a wait as long
/// as the log.
pub async fn sign_off(
    jobs: &Jobs,
    actor: &Actor,
    guideline: &str,
    version: RuleSetVersion,
    request: &SignOffRequest,
    wait: Duration,
) -> Result<SignOff, GovernanceError> {
    let (store, catalog, pins) = (jobs.store(), jobs.catalog(), jobs.pins());
    let caller = &actor.caller;
    let rs = catalog
        .get(guideline, &version)
        .ok_or(GovernanceError::UnknownVersion)?;
    let decision = request.decision.as_str();
    if !["approve", "reject"].contains(&decision) {
        return Err(GovernanceError::Invalid(
            "decision: approve or reject".into(),
        ));
    }
    let reason = request
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if decision == "reject" && reason.is_none() {
        return Err(GovernanceError::Invalid(
            "reason: required to reject".into(),
        ));
    }
    let tenant = caller.tenant.clone();
    if let Some((now, _)) = pins.in_force_for_tenant(catalog, guideline, &tenant) {
        if now.doc.version == version && now.content_hash == rs.content_hash {
            return Err(GovernanceError::Conflict(format!(
                "{guideline} {version} is already in force for this clinic"
            )));
        }
    }
    // The report the signer read, as kept when it was computed: of this file content, against
    // the version in force for the clinic now.
    let in_force = pins.version_in_force(catalog, guideline, &tenant);
    let named = request.impact.trim();
    let find = || async {
        Ok::<_, GovernanceError>(
            store
                .impact_report(named, guideline, &version.to_string(), &tenant)
                .await?
                .into_iter()
                .find(|r| r.content_hash == rs.content_hash && r.in_force_version == in_force),
        )
    };
    let mut seen = find().await?;
    if seen.is_none() {
        // A report nobody kept may still be the clinic's report as it is now (read with
        // `stride rules impact` over a log of this clinic alone, say): the job computes and
        // keeps it, unless a report is kept already (then the signer read another).
        let ask = Ask {
            candidate: Candidate {
                guideline: guideline.to_owned(),
                version,
            },
            tenant: Some(tenant.clone()),
            since_us: None,
            again: false,
        };
        match jobs.view(&ask, wait).await? {
            View::Ready(_) => seen = find().await?,
            View::Running { read, .. } => {
                return Err(GovernanceError::Conflict(format!(
                    "impact: the clinic's impact report of {guideline} {version} is being \
                     computed ({read} decisions read so far); read it on the impact page when \
                     it is done and sign off on its impactHash"
                )))
            }
            // Said in the log by the job; the signer is told to try again.
            View::Failed(_) => return Err(GovernanceError::ReportFailed),
        }
    }
    let Some(seen) = seen else {
        return Err(GovernanceError::Conflict(format!(
            "impact: no impact report of {guideline} {version} against {in_force} for this clinic \
             has this hash; read the report (the impact page) and sign off on its impactHash"
        )));
    };
    let s = SignOff {
        id: stride_store::new_row_id(),
        guideline_id: guideline.to_owned(),
        version: version.to_string(),
        content_hash: rs.content_hash.clone(),
        tenant,
        signer: signer(caller),
        decision: decision.to_owned(),
        reason: reason.clone(),
        impact_hash: seen.impact_hash,
        in_force_version: in_force,
        created_at: time::OffsetDateTime::now_utc(),
    };
    let mut audit = actor.entry(Action::GuidelineSignOff, "success");
    audit.rule_set_id = Some(guideline.to_owned());
    audit.rule_set_version = Some(version.to_string());
    audit.rule_set_hash = Some(rs.content_hash.clone());
    audit.details["signOff"] =
        json!({"decision": decision, "reason": reason, "impact": s.impact_hash});
    store.record_sign_off(&s, &audit).await?;
    Ok(s)
}

/// The sign-offs of `guideline` that `caller` may see (their clinic's, or every clinic's for
/// staff who see them all), oldest first.
pub async fn sign_offs(
    store: &dyn Store,
    caller: &Caller,
    guideline: &str,
) -> Result<Vec<SignOff>, StoreError> {
    let mut all = store.sign_offs(guideline).await?;
    all.retain(|s| caller.may_see(&s.tenant));
    Ok(all)
}

/// Signers a sign-off through the command line is recorded under: an operator names
/// themselves (`--as`), so all of them together count as one approver.
pub const CLI_ISSUER: &str = "stride-cli";

/// The sign-offs that count for `tenant` now: of this file content, against the version in
/// force now (`in_force`), each signer's latest.
pub fn standing<'a>(
    all: &'a [SignOff],
    version: &str,
    content_hash: &str,
    tenant: &TenantId,
    in_force: &str,
) -> Vec<&'a SignOff> {
    let mut latest: Vec<&SignOff> = Vec::new();
    for s in all.iter().filter(|s| {
        s.version == version
            && s.content_hash == content_hash
            && s.tenant == *tenant
            && s.in_force_version == in_force
    }) {
        latest.retain(|l| l.signer != s.signer);
        latest.push(s);
    }
    latest
}

/// Put `guideline` `version` in force for `tenant`, if two distinct staff approved it for this
/// content and nobody's latest word is a rejection.
#[allow(clippy::too_many_arguments)]
pub async fn activate(
    store: &dyn Store,
    catalog: &Catalog,
    pins: &Pins,
    actor: &Actor,
    guideline: &str,
    version: RuleSetVersion,
    tenant: &TenantId,
) -> Result<Activation, GovernanceError> {
    let caller = &actor.caller;
    let rs = catalog
        .get(guideline, &version)
        .ok_or(GovernanceError::UnknownVersion)?;
    if !caller.may_see(tenant) {
        return Err(GovernanceError::Forbidden);
    }
    if rs.doc.status == stride_guideline::model::Status::Retired {
        return Err(GovernanceError::Conflict(format!(
            "{guideline} {version} is retired: it stays loadable for replay, never in force again"
        )));
    }
    let in_force = pins.version_in_force(catalog, guideline, tenant);
    let all = store.sign_offs(guideline).await?;
    let standing = standing(
        &all,
        &version.to_string(),
        &rs.content_hash,
        tenant,
        &in_force,
    );
    if let Some(r) = standing.iter().find(|s| s.decision == "reject") {
        return Err(GovernanceError::Conflict(format!(
            "rejected by {}: {}",
            r.signer.rsplit('|').next().unwrap_or(&r.signer),
            r.reason.as_deref().unwrap_or("")
        )));
    }
    // Distinct people: signers through the command line name themselves, so together they
    // count once.
    let mut approvers: Vec<&str> = standing
        .iter()
        .filter(|s| s.decision == "approve")
        .map(|s| {
            if s.signer.starts_with(&format!("{CLI_ISSUER}|")) {
                CLI_ISSUER
            } else {
                s.signer.as_str()
            }
        })
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    let approvals = approvers.len();
    if approvals < APPROVALS_NEEDED {
        return Err(GovernanceError::Conflict(format!(
            "{guideline} {version} needs {APPROVALS_NEEDED} approvals by distinct staff for this \
             clinic, this file content and the version in force ({in_force}); it has {approvals} \
             (sign-offs from the command line count as one)"
        )));
    }
    let a = Activation {
        id: stride_store::new_row_id(),
        guideline_id: guideline.to_owned(),
        version: version.to_string(),
        content_hash: rs.content_hash.clone(),
        tenant: tenant.to_owned(),
        activated_by: signer(caller),
        created_at: time::OffsetDateTime::now_utc(),
    };
    let mut audit = actor.entry(Action::GuidelineActivation, "success");
    audit.tenant = tenant.to_owned();
    audit.rule_set_id = Some(guideline.to_owned());
    audit.rule_set_version = Some(version.to_string());
    audit.rule_set_hash = Some(rs.content_hash.clone());
    audit.details["activation"] = json!({
        "tenant": tenant,
        "signOffs": standing.iter().map(|s| json!({"signer": s.signer, "impact": s.impact_hash})).collect::<Vec<_>>(),
    });
    store.record_activation(&a, &audit).await?;
    pins.activate(tenant, guideline, version, a.created_at);
    Ok(a)
}
