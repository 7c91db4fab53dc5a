//! The patient's take-home plan of an approved CarePlan: what the patient reads, from the
//! rule set's patient wording (never from literals here), a calendar of the coming days, and
//! the stop rules. One use case with no HTTP: the staff page, the PDF and the FHIR
//! DocumentReference all show what `approved` composes, so they cannot drift apart.

use stride_fhir::clinic::ClinicZone;
use stride_guideline::decision::{HOLD_FOR_EVALUATION, INSUFFICIENT_DATA};
use stride_guideline::model::{Frequency, PatientText};
use stride_guideline::RuleSet;
use stride_store::{CarePlanRecord, CarePlanStatus, Store, TenantId};
use time::{Date, Duration};

use crate::catalog::Catalog;
use crate::review::{load_visible, ReviewError};

/// How many days the calendar shows: two weeks, the span between the protocol's checks.
pub const CALENDAR_DAYS: i64 = 14;

/// Why there is no take-home plan.
#[derive(Debug, thiserror::Error)]
pub enum TakeHomeError {
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// Only an approved (or revised) plan goes home with the patient.
    #[error("this CarePlan is {0}: a take-home plan exists once it is approved")]
    NotApproved(String),
    /// The plan's rule-set version carries no patient wording (versions before 1.0.2).
    #[error("rule set {0} has no patient wording: no take-home plan for its CarePlans")]
    NoWording(String),
    /// A reviewer revised the plan: the rule set's patient wording no longer describes it.
    #[error("this CarePlan was revised: the take-home plan is written from the guideline's wording, which no longer describes it; give the patient the revised plan")]
    Revised,
}

/// One day of the calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarDay {
    pub day: Date,
    /// A session day (walk, walk-run, run) rather than a rest day.
    pub session: bool,
    pub label: String,
}

/// What the patient takes home.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeHome {
    /// The guideline's title and version, for the footer.
    pub guideline: String,
    pub version: String,
    pub title: String,
    pub summary: String,
    pub to_do: Vec<String>,
    pub avoid: Vec<String>,
    /// Empty when the phase has no sessions to schedule (hold, full return).
    pub calendar: Vec<CalendarDay>,
    pub stop: String,
    pub come_back: String,
    /// The sources the wording rests on, as "Title, Publisher (year)", numbered in order.
    pub sources: Vec<String>,
    /// The first day of the calendar: the day the plan was approved.
    pub from: Date,
}

impl TakeHome {
    /// Every sentence a patient reads, in reading order: what the readability test measures.
    pub fn plain_text(&self) -> String {
        let mut parts = vec![format!("{}.", self.title), self.summary.clone()];
        parts.extend(self.to_do.iter().cloned());
        parts.extend(self.avoid.iter().cloned());
        let mut labels: Vec<&str> = self.calendar.iter().map(|d| d.label.as_str()).collect();
        labels.dedup();
        parts.extend(labels.iter().map(|l| format!("{l}.")));
        parts.push(self.stop.clone());
        parts.push(self.come_back.clone());
        parts.join(" ")
    }
}

/// The patient's words for `phase` (a phase id, or hold / insufficient data).
fn wording<'a>(rs: &'a RuleSet, phase: &str) -> Option<&'a PatientText> {
    let words = rs.doc.patient.as_ref()?;
    match phase {
        HOLD_FOR_EVALUATION => Some(&words.hold),
        INSUFFICIENT_DATA => Some(&words.insufficient_data),
        id => rs.doc.phases.iter().find(|p| p.id == id)?.patient.as_ref(),
    }
}

/// How often the phase's activities meet: the most frequent schedule any of them gives.
fn schedule(rs: &RuleSet, phase: &str) -> Option<Frequency> {
    let p = rs.doc.phases.iter().find(|p| p.id == phase)?;
    let mut found = None;
    for f in p
        .activities
        .iter()
        .filter_map(|a| a.dosing.as_ref()?.frequency)
    {
        match f {
            Frequency::Daily => return Some(Frequency::Daily),
            Frequency::AlternateDays => found = Some(Frequency::AlternateDays),
            Frequency::None => {}
        }
    }
    found
}

/// The take-home plan of `phase` under `rs`, its calendar starting `from`; `None` when the
/// rule set has no patient wording for it.
pub fn compose(rs: &RuleSet, phase: &str, from: Date) -> Option<TakeHome> {
    let words = rs.doc.patient.as_ref()?;
    let text = wording(rs, phase)?;
    let calendar = match (schedule(rs, phase), &text.days) {
        (Some(f), Some(days)) => (0..CALENDAR_DAYS)
            .map(|i| {
                let session = f == Frequency::Daily || i % 2 == 0;
                CalendarDay {
                    day: from + Duration::days(i),
                    session,
                    label: if session { &days.session } else { &days.rest }.clone(),
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    let sources = text
        .cite
        .iter()
        .filter_map(|n| rs.doc.sources.iter().find(|s| s.n == *n))
        .map(|s| format!("{}, {} ({})", s.title, s.publisher, s.year))
        .collect();
    Some(TakeHome {
        guideline: rs.doc.title.clone(),
        version: rs.doc.version.to_string(),
        title: text.title.clone(),
        summary: text.summary.clone(),
        to_do: text.to_do.clone(),
        avoid: text.avoid.clone(),
        calendar,
        stop: words.stop.clone(),
        come_back: text.come_back.clone(),
        sources,
        from,
    })
}

/// Whether a plan under this rule-set version can have a take-home plan (what the approved
/// CarePlan links to).
pub fn has_wording(catalog: &Catalog, plan: &CarePlanRecord) -> bool {
    !crate::review::was_revised(&plan.resource)
        && rule_set(catalog, plan).is_some_and(|rs| wording(rs, &plan.phase).is_some())
}

fn rule_set<'c>(catalog: &'c Catalog, plan: &CarePlanRecord) -> Option<&'c RuleSet> {
    let version = plan.rule_set_version.parse().ok()?;
    catalog
        .get(&plan.rule_set_id, &version)
        .map(|rs| rs.as_ref())
}

/// The take-home plan of the CarePlan `id`, if `caller` may see it and it was approved as
/// drafted. The calendar starts on the day it was approved, on the clinic's calendar
/// (`clinic_zone`: the tenant's IANA zone, if it has one).
pub async fn approved(
    store: &dyn Store,
    catalog: &Catalog,
    actor: &crate::actor::Actor,
    id: &str,
    view: &str,
    clinic_zone: impl FnOnce(&TenantId) -> Option<String>,
) -> Result<(CarePlanRecord, TakeHome), TakeHomeError> {
    let plan = load_visible(store, &actor.caller, id).await?;
    if plan.status != CarePlanStatus::Active {
        let said = match plan.status {
            CarePlanStatus::Draft => "still a draft",
            CarePlanStatus::Revoked => "rejected",
            _ => "not in force",
        };
        return Err(TakeHomeError::NotApproved(said.into()));
    }
    if crate::review::was_revised(&plan.resource) {
        return Err(TakeHomeError::Revised);
    }
    let missing =
        || TakeHomeError::NoWording(format!("{} {}", plan.rule_set_id, plan.rule_set_version));
    let rs = rule_set(catalog, &plan).ok_or_else(missing)?;
    let zone = ClinicZone::for_tenant(clinic_zone(&plan.tenant).as_deref());
    let from = zone.date_of(plan.updated_at, time::UtcOffset::UTC);
    let home = compose(rs, &plan.phase, from).ok_or_else(missing)?;
    crate::careplans::record_read(store, actor, &plan, Some(view)).await?;
    Ok((plan, home))
}
