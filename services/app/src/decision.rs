//! One patient's records decided for a clinic, and the CarePlan that decision drafts: the path
//! a hook call and `$apply` share. Each gathers the records its own way (a hook's prefetch or
//! fallback fetch, `$apply`'s `data` or `fhirServer`) and does its own with the result (cards
//! and a record kept for a retry; an operation's answer); between the two, the same
//! approved phase, the same clinician's decisions and the same draft, so that `$apply` never
//! drafts what a patient-view call would not.

use serde_json::Value as Json;
use stride_fhir::careplan::{careplan, ImagingSuggestion, PlanContext};
use stride_fhir::clinic::ClinicZone;
use stride_fhir::intake::Intake;
use stride_guideline::facts::{Code, PhaseState, Record, RecordKind};
use stride_guideline::{evaluate, Decision, Facts, RuleSet};
use stride_store::{
    AuditFacts, CarePlanStatus, NewAuditEntry, NewCarePlan, PatientPlans, PatientRef, Store,
    TenantId,
};
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::hook::HookError;

/// Whose records are decided, for which clinic, and when.
pub struct Subject<'a> {
    pub tenant: &'a TenantId,
    /// The patient's FHIR id.
    pub patient: &'a str,
    /// The clinic's zone: "today" and every record's day are its local dates.
    pub zone: &'a ClinicZone,
    pub now: OffsetDateTime,
}

impl Subject<'_> {
    /// The patient as the store and the audit log name them.
    pub fn reference(&self) -> PatientRef {
        PatientRef::of_checked_id(self.patient)
    }
}

/// What a patient's records decide.
pub struct Decided {
    pub facts: Facts,
    /// The day the facts are read on (the clinic's date).
    pub as_of: Date,
    pub decision: Decision,
    /// The candidate in shadow's decision on the same facts and day.
    pub shadow: Option<Decision>,
    /// The records that could not be read: their source and why.
    pub unread: Vec<(String, String)>,
    /// Who the patient is, from a Patient among the records (kept with a new draft).
    pub identity: Option<Json>,
    /// The patient's plans of the guideline, read for the approved phase when the guideline
    /// may apply: the pending drafts among them are where a draft looks first (`Reuse`).
    pub plans: Option<PatientPlans>,
}

/// Decide the records read into `intake` with `rs` (and `shadow`, a candidate decided beside
/// it on the same facts and day). `may_apply`: the guideline may apply to the patient (the
/// caller's reading of the Conditions), so the phase clinic staff approved is read; a call
/// for a patient it cannot apply to pays no query for it. The clinician's recorded decisions
/// are added when a decision holds a red flag they can evaluate, and both are decided again
/// with them.
pub async fn decide(
    store: &dyn Store,
    subject: &Subject<'_>,
    rs: &RuleSet,
    shadow: Option<&RuleSet>,
    intake: Intake,
    may_apply: bool,
) -> Result<Decided, HookError> {
    let mut intake = intake;
    let as_of = intake.localise(subject.zone, subject.now);
    let plans = if may_apply {
        Some(
            store
                .patient_plans(subject.tenant, &subject.reference(), &rs.doc.id)
                .await
                // Without the approved phase the decision could differ: no answer (fail
                // closed, as for the write).
                .map_err(HookError::store("approved CarePlans"))?,
        )
    } else {
        None
    };
    let phase_state = match &plans {
        Some(plans) => approved_phase(plans, rs, subject, &intake),
        None => None,
    };
    let unread = intake
        .problems
        .iter()
        .map(|p| (p.source.clone(), p.message.clone()))
        .collect();
    let offset = intake.fallback_offset();
    let identity = intake.identity.take();
    let mut facts = Facts {
        phase_state,
        records: intake.records,
    };
    let judge = |rs: &RuleSet, facts: &Facts| {
        tracing::info_span!("evaluate", rule_set = %rs.doc.id, version = %rs.doc.version, records = facts.records.len())
            .in_scope(|| evaluate(rs, facts, as_of))
    };
    let mut decision = judge(rs, &facts);
    let mut shadow_decision = shadow.map(|candidate| judge(candidate, &facts));
    let rule_sets: Vec<&RuleSet> = std::iter::once(rs).chain(shadow).collect();
    let decided: Vec<&Decision> = std::iter::once(&decision).chain(&shadow_decision).collect();
    if with_clinician_decisions(store, &rule_sets, &decided, subject, offset, &mut facts).await? {
        decision = judge(rs, &facts);
        shadow_decision = shadow.map(|candidate| judge(candidate, &facts));
    }
    Ok(Decided {
        facts,
        as_of,
        decision,
        shadow: shadow_decision,
        unread,
        identity,
        plans,
    })
}

/// The patient's phase as clinic staff approved it: the newest active CarePlan of this
/// guideline, from Stride's store (approved on the review page, among `plans`) or among the
/// records (a prefetched plan). Its phase and the day it took effect (the clinic's date) are
/// the phase state.
fn approved_phase(
    plans: &PatientPlans,
    rs: &RuleSet,
    subject: &Subject<'_>,
    intake: &Intake,
) -> Option<PhaseState> {
    let zone = subject.zone;
    let mut best: Option<(OffsetDateTime, PhaseState)> = None;
    let mut consider = |at: OffsetDateTime, ps: PhaseState| {
        if best.as_ref().is_none_or(|(t, _)| at > *t) {
            best = Some((at, ps));
        }
    };
    if let Some(p) = &plans.approved {
        consider(
            p.updated_at,
            PhaseState {
                phase: p.phase.clone(),
                since: intake.clinic_date(zone, p.updated_at),
                source: format!("CarePlan/{}", p.id),
            },
        );
    }
    // `url` or `url|version`: any version of this guideline.
    let ours = |canonical: &String| {
        canonical
            .strip_prefix(rs.doc.url.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('|'))
    };
    for p in &intake.plans {
        let phase = p
            .categories
            .iter()
            .find(|c| c.system == rs.doc.decision_system)
            .map(|c| c.code.clone());
        let (Some(phase), Some(day)) = (phase, p.since_day) else {
            continue;
        };
        if p.status == "active" && p.instantiates.iter().any(ours) {
            let at = p.since.unwrap_or_else(|| day.midnight().assume_utc());
            let since = p.since.map_or(day, |t| intake.clinic_date(zone, t));
            consider(
                at,
                PhaseState {
                    phase,
                    since,
                    source: p.source.clone(),
                },
            );
        }
    }
    best.map(|(_, ps)| ps)
}

/// A clinician's recorded decision (an override with a reason) can only evaluate a red flag
/// that stays until evaluated: when `decided` shows one (in any of `rule_sets`' decisions), the
/// patient's overrides are read, added to `facts`, and `true` says to decide again. Every other
/// call pays nothing for it (a query per call cost the load check's PostgreSQL run dearly).
async fn with_clinician_decisions(
    store: &dyn Store,
    rule_sets: &[&RuleSet],
    decided: &[&Decision],
    subject: &Subject<'_>,
    offset: UtcOffset,
    facts: &mut Facts,
) -> Result<bool, HookError> {
    let waiting = decided
        .iter()
        .any(|d| d.red_flags.iter().any(|f| f.since.is_some()));
    if !waiting {
        return Ok(false);
    }
    let decisions = clinician_decisions(store, rule_sets, subject, offset).await?;
    if decisions.is_empty() {
        return Ok(false);
    }
    facts.records.extend(decisions);
    Ok(true)
}

/// The red flags clinic staff overrode with a reason on this patient's cards, as records of
/// the clinician's decision on the day they decided: a red flag that stays until evaluated is
/// evaluated by it, as by imaging or a review of the plan. Read only when a decision holds
/// such a red flag (`with_clinician_decisions`), for rule sets that have them.
async fn clinician_decisions(
    store: &dyn Store,
    rule_sets: &[&RuleSet],
    subject: &Subject<'_>,
    offset: UtcOffset,
) -> Result<Vec<Record>, HookError> {
    let Some(rs) = rule_sets
        .iter()
        .find(|rs| rs.doc.data_quality.imaging_red_flags_stick)
    else {
        return Ok(Vec::new());
    };
    let overridden = store
        .overridden(subject.tenant, &subject.reference())
        .await
        .map_err(HookError::store("overridden red flags"))?;
    Ok(overridden
        .into_iter()
        .map(|o| Record {
            at: None,
            text: None,
            codes: vec![Code {
                system: rs.doc.decision_system.clone(),
                code: o.decision_id.clone(),
            }],
            components: Vec::new(),
            date: Some(subject.zone.date_of(o.at, offset)),
            end: None,
            kind: RecordKind::Decision,
            sites: Vec::new(),
            source: format!("Feedback/override-of-{}", o.decision_id),
            start: None,
            status: None,
            value: None,
        })
        .collect())
}

/// What the audit entry of any decision records (a hook call, `$apply`): whom it was about,
/// the facts and the day, the exact version and the decision ids — what a replay needs.
pub fn record(
    audit: &mut NewAuditEntry,
    rs: &RuleSet,
    subject: &Subject<'_>,
    decided: &Decided,
) -> Result<(), HookError> {
    audit.patient_ref = Some(subject.reference());
    audit.as_of = Some(decided.as_of.to_string());
    audit.facts = Some(AuditFacts::from_canonical(&decided.facts).map_err(HookError::internal)?);
    audit.rule_set_id = Some(rs.doc.id.clone());
    audit.rule_set_version = Some(rs.doc.version.to_string());
    audit.rule_set_hash = Some(rs.content_hash.clone());
    audit.decision_ids = ids(&decided.decision);
    Ok(())
}

/// A decision's ids, as the audit log and the answers name them.
pub fn ids(decision: &Decision) -> Vec<String> {
    decision
        .decision_ids()
        .iter()
        .map(|d| d.to_string())
        .collect()
}

/// The CarePlan a decision drafts.
pub struct Draft {
    pub id: Uuid,
    /// The patient's draft of the same decision, stored already and waiting for review: it is
    /// the plan, and no second one is stored.
    pub pending: bool,
    resource: Resource,
}

/// A draft's CarePlan: as JSON (made by this decision, or a pending draft read whole), or a
/// pending draft's stored text.
enum Resource {
    Json(Json),
    /// The stored JSON text, parsed only by a caller that returns the plan (a hook call only
    /// links a pending draft).
    Stored(String),
}

/// Where a draft looks for the patient's pending draft of the same decision (one per patient
/// and decision, a unique key in both backends).
pub enum Reuse<'a> {
    /// Nowhere: a new plan.
    Never,
    /// Among the plans read with the decision (`Decided::plans`); the draft found is taken
    /// out of them.
    Among(&'a mut PatientPlans),
    /// In the store, read now.
    Read,
}

impl<'a> Reuse<'a> {
    /// Among the plans read with the decision when there are any, else in the store.
    pub fn of(plans: Option<&'a mut PatientPlans>) -> Self {
        plans.map_or(Reuse::Read, Reuse::Among)
    }
}

/// The draft of `decision` for the subject: the patient's pending draft of the same decision
/// where `reuse` looks for one, else a new plan with the `imaging` it requests.
pub async fn draft(
    store: &dyn Store,
    subject: &Subject<'_>,
    rs: &RuleSet,
    decision: &Decision,
    encounter: Option<&str>,
    imaging: &[ImagingSuggestion],
    reuse: Reuse<'_>,
) -> Result<Draft, HookError> {
    let pending = match reuse {
        Reuse::Never => None,
        Reuse::Among(plans) => plans
            .take_draft(&key(decision))
            .map(|p| (p.id, Resource::Stored(p.resource))),
        Reuse::Read => store
            .pending_draft(subject.tenant, &subject.reference(), &key(decision))
            .await
            .map_err(HookError::store("pending drafts"))?
            .map(|p| (p.id, Resource::Json(p.resource))),
    };
    if let Some((id, resource)) = pending {
        return Ok(Draft {
            id,
            pending: true,
            resource,
        });
    }
    let id = stride_store::new_row_id();
    let ctx = PlanContext {
        id: &id.to_string(),
        patient: subject.patient,
        encounter,
        author: None,
        now: subject.now,
    };
    let resource = careplan(rs, decision, &ctx, imaging).map_err(HookError::internal)?;
    Ok(Draft {
        id,
        pending: false,
        resource: Resource::Json(resource),
    })
}

impl Draft {
    /// The CarePlan of a draft made by this decision; `None` for the patient's pending draft,
    /// which is stored already and only linked.
    pub fn made(&self) -> Option<&Json> {
        match (&self.resource, self.pending) {
            (Resource::Json(r), false) => Some(r),
            _ => None,
        }
    }

    /// The CarePlan, for a caller that returns it. A stored draft that is not JSON is a
    /// corrupt store, not a bad request.
    pub fn into_resource(self) -> Result<Json, HookError> {
        match self.resource {
            Resource::Json(r) => Ok(r),
            Resource::Stored(text) => serde_json::from_str(&text).map_err(|e| {
                HookError::store("pending drafts")(stride_store::StoreError::Corrupt(format!(
                    "careplans.resource is not JSON: {e}"
                )))
            }),
        }
    }

    /// The row to store for a draft made by this decision, awaiting review, with who the
    /// patient is; `None` for a pending draft, stored already.
    pub fn row(
        &self,
        rs: &RuleSet,
        decision: &Decision,
        subject: &Subject<'_>,
        identity: Option<Json>,
    ) -> Option<NewCarePlan> {
        Some(NewCarePlan {
            id: self.id,
            tenant: subject.tenant.clone(),
            patient_ref: subject.reference(),
            status: CarePlanStatus::Draft,
            rule_set_id: rs.doc.id.clone(),
            rule_set_version: rs.doc.version.to_string(),
            phase: decision.phase.clone().unwrap_or_default(),
            red_flag: !decision.red_flags.is_empty(),
            resource: self.made()?.clone(),
            created_at: subject.now,
            decision_key: Some(key(decision)),
            patient: identity,
        })
    }
}

/// What makes two drafts the same decision: the rule set and version, the decision ids and
/// the activities prescribed.
fn key(d: &Decision) -> String {
    let activities: Vec<&str> = d
        .activities
        .iter()
        .chain(&d.rehab)
        .map(|a| a.id.as_str())
        .collect();
    format!(
        "{}|{}|{}|{}",
        d.rule_set.id,
        d.rule_set.version,
        d.decision_ids().join(","),
        activities.join(",")
    )
}
