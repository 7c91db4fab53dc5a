//! FHIR R4 JSON → the engine's neutral records. Each resource is parsed on its own with the
//! fhir-sdk models, so one malformed resource is reported and the rest still count.
//! Resources the guideline does not read (Patient, MedicationRequest, …) are skipped unparsed.

use std::borrow::Cow;

use fhir_sdk::r4b::resources::{
    CarePlan, Condition, ConditionAbatement, ConditionOnset, DeviceRequest, DeviceRequestCode,
    DiagnosticReport, DiagnosticReportEffective, ImagingStudy, Observation,
    ObservationComponentValue, ObservationEffective, ObservationValue, Patient, ServiceRequest,
    ServiceRequestOccurrence,
};
use fhir_sdk::r4b::types::{
    CodeableConcept, Identifier, Meta, Period, Quantity, Reference, Timing,
};
use fhir_sdk::DateTime;
use serde_json::value::RawValue;
use stride_guideline::facts::RecordKind;
use stride_guideline::terminology::canonical;
use stride_guideline::{Code, Component, Record, Value};
use time::{Date, OffsetDateTime, UtcOffset};

use crate::clinic::ClinicZone;

/// A resource that could not be read, by reference only (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub message: String,
}

#[derive(Debug, Default, Clone)]
pub struct Intake {
    pub records: Vec<Record>,
    pub problems: Vec<Problem>,
    /// Resources read, by type (for the audit trail and supportingInfo).
    pub sources: Vec<String>,
    /// The instants each record's dates were read from (`None` for a date without a time), in
    /// the order of `records`: `localise` re-reads the dates on the clinic's calendar.
    instants: Vec<Instants>,
    /// Who each record read so far is (its source and version), to count a record sent twice
    /// once.
    seen: std::collections::HashMap<String, (String, Version)>,
    /// Panels whose members (`hasMember`) are not linked yet: (panel source, member sources).
    members: Vec<(String, Vec<String>)>,
    /// The patient the call is about (`context.patientId`): a resource about another patient
    /// is never used. `None`: not checked.
    pub patient: Option<String>,
    /// CarePlans the EHR sent (an approved plan is the patient's phase state).
    pub plans: Vec<PlanSeen>,
    /// Read Patient resources (their birth date): only when the rule set reads one, so no
    /// birth date is stored with facts that do not need it.
    pub read_patients: bool,
    /// Also read a Patient's administrative gender (a rule set with an age limit by sex).
    pub read_gender: bool,
    /// Who the patient is (name, birth date, sex), from the first Patient about the called
    /// patient among the resources added (prefetched, fetched or sent to `$apply`): kept with
    /// a drafted plan so that its reviewer sees who it is for.
    pub identity: Option<serde_json::Value>,
}

/// What a CarePlan says of the patient's place in a protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSeen {
    pub source: String,
    pub status: String,
    pub instantiates: Vec<String>,
    pub categories: Vec<Code>,
    /// `period.start`, else `created`: when the plan took effect.
    pub since: Option<OffsetDateTime>,
    pub since_day: Option<Date>,
}

/// The instants behind a record's dates: its day, the start of its period, its end (a
/// Condition's abatement).
#[derive(Debug, Default, Clone, Copy)]
struct Instants {
    date: Option<OffsetDateTime>,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
}

/// One resource read: its record, the instants behind its dates, who it is about, and the
/// keys that say it is the same record as another (identifiers, id and version).
struct Read {
    record: Record,
    at: Instants,
    subject: Option<String>,
    keys: Vec<String>,
    /// Which of two copies of one record is the later version (`Version`).
    version: Version,
    /// The Observations a panel names as its members (`hasMember`), as `Observation/{id}`.
    members: Vec<String>,
}

/// How late a version of a record is: a correction (status `amended` or `corrected`) over
/// any other status, then the later `meta.lastUpdated` (or `issued`). Of two copies with the
/// same identifier the later version is the one used: an amended extent of 3 cm replaces the
/// 6 cm first sent, in whichever order the two arrive.
///
/// A copy marked entered-in-error is no version of the record at all (the resource should not
/// have existed, as when an interface's resend is retracted): it never replaces a copy that
/// counts, whenever it was updated, and any copy that counts replaces it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    standing: bool,
    correction: bool,
    updated: Option<OffsetDateTime>,
}

/// FHIR's administrative-gender code system (a Patient's gender, when read).
pub const GENDER: &str = "http://hl7.org/fhir/administrative-gender";

/// The code system of the code a Patient's record carries: its resource type, `Patient` in
/// FHIR's resource-types system (a rule set that reads a birth date names that code).
pub const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// The resource types the guideline reads; any other is skipped unparsed (a Patient unless
/// `read_patients`).
const READ: &[&str] = &[
    "Patient",
    "CarePlan",
    "Observation",
    "Condition",
    "ServiceRequest",
    "DeviceRequest",
    "DiagnosticReport",
    "ImagingStudy",
];

/// Just enough of a resource to route it: its type and id. Everything else is skipped
/// without being built.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    entry: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

/// A Bundle's entries, each with its resource left as text: read in one pass when the Bundle
/// is well formed (see `Intake::add` for one that is not).
#[derive(serde::Deserialize)]
struct Bundle<'a> {
    #[serde(borrow, default)]
    entry: Option<Vec<Entry<'a>>>,
}

/// A JSON string's text; `None` for any other JSON value.
fn text(raw: Option<&RawValue>) -> Option<String> {
    serde_json::from_str::<String>(raw?.get()).ok()
}

/// `resourceType` when it is the object's first member, as FHIR JSON writes it, read from the
/// first bytes without scanning the rest; `None` otherwise (a type with an escape in it too).
/// The text is known to be JSON already, so the only whitespace here is JSON's.
fn leading_type(json: &str) -> Option<&str> {
    let rest = json
        .trim_start()
        .strip_prefix('{')?
        .trim_start()
        .strip_prefix("\"resourceType\"")?
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let end = rest.find(['"', '\\'])?;
    rest[end..].starts_with('"').then(|| &rest[..end])
}

/// A resource's `resourceType`: from its first bytes when it leads (the usual case), else by
/// reading the whole object for it.
fn kind_of(raw: &RawValue) -> Option<Cow<'_, str>> {
    if let Some(kind) = leading_type(raw.get()) {
        return Some(Cow::Borrowed(kind));
    }
    text(serde_json::from_str::<Head>(raw.get()).ok()?.kind).map(Cow::Owned)
}

/// A resource's `resourceType`, read without building the rest of it.
pub fn resource_type(raw: &RawValue) -> Option<String> {
    kind_of(raw).map(Cow::into_owned)
}

impl Intake {
    /// Without a named zone, "today" is read in the offset the EHR wrote its newest timestamp
    /// with: the clinic's own offset, as far as the request can tell (UTC without any).
    pub fn fallback_offset(&self) -> UtcOffset {
        self.instants
            .iter()
            .filter_map(|i| i.date)
            .max()
            .map_or(UtcOffset::UTC, |t| t.offset())
    }

    /// The clinic's date of an instant Stride itself holds (e.g. when a plan was approved).
    pub fn clinic_date(&self, zone: &ClinicZone, instant: OffsetDateTime) -> Date {
        zone.date_of(instant, self.fallback_offset())
    }

    /// Re-read every record's date on the clinic's calendar and return the clinic's today.
    /// Idempotent: call it again after more resources were added. Records must still be in
    /// the order they were added (taking `records` out and putting it back is fine).
    pub fn localise(&mut self, zone: &ClinicZone, now: OffsetDateTime) -> Date {
        self.link_members();
        let fallback = self.fallback_offset();
        // Every date on the clinic's calendar (onsets, abatements, exams, runs), not only
        // "today": without a named zone, in the clinic's offset as the records tell it.
        for (r, at) in self.records.iter_mut().zip(&self.instants) {
            if let Some(t) = at.date {
                r.date = Some(zone.date_of(t, fallback));
                // In UTC: one instant reads the same whatever offset each device wrote. Only
                // for what is measured or observed (D101): two orders authored minutes apart
                // are two orders.
                if r.kind == RecordKind::Observation {
                    r.at = Some(t.to_offset(UtcOffset::UTC));
                }
            }
            if let Some(t) = at.start {
                r.start = Some(zone.date_of(t, fallback));
            }
            if let Some(t) = at.end {
                r.end = Some(zone.date_of(t, fallback));
            }
        }
        zone.date_of(now, fallback)
    }

    /// Add a prefetch value or a fetched result: a Bundle (its entries) or a single resource.
    /// Read from the raw JSON text: each resource the guideline reads is deserialised straight
    /// into its fhir-sdk type, and no generic JSON tree is built for any of it.
    pub fn add(&mut self, raw: &RawValue) {
        match kind_of(raw).as_deref() {
            Some("Bundle") => {
                let entries = match serde_json::from_str::<Bundle>(raw.get()) {
                    Ok(b) => b.entry.unwrap_or_default(),
                    Err(_) => lenient_entries(raw),
                };
                for r in entries.into_iter().filter_map(|e| e.resource) {
                    self.add_resource(r);
                }
            }
            Some(kind) => self.read(raw, kind),
            None => self.problems.push(Problem {
                source: "prefetch".into(),
                message: "a value without resourceType is not a FHIR resource".into(),
            }),
        }
    }

    fn add_resource(&mut self, raw: &RawValue) {
        match kind_of(raw) {
            Some(kind) => self.read(raw, &kind),
            None => self.problems.push(Problem {
                source: "Bundle.entry".into(),
                message: "entry without resourceType".into(),
            }),
        }
    }

    /// The findings a resource carries inside it (`contained`): an external report's results,
    /// an app's check-in panel whose members are contained. Each is read as a record of its
    /// own, named after its container (`DiagnosticReport/dr1#te`), with the container's subject
    /// and date where it states none (FHIR: a contained resource takes its container's
    /// context). Only what a guideline reads from a record: findings, diagnoses, imaging.
    fn read_contained(&mut self, container: &str) {
        let Ok(serde_json::Value::Object(outer)) = serde_json::from_str(container) else {
            return;
        };
        let Some(serde_json::Value::Array(inner)) = outer.get("contained") else {
            return;
        };
        // What a container retracts or is about another patient, so is what it contains.
        if outer.get("status").and_then(|s| s.as_str()) == Some("entered-in-error") {
            return;
        }
        if let (Some(want), Some(about)) = (
            &self.patient,
            outer
                .get("subject")
                .and_then(|s| s.get("reference"))
                .and_then(|r| r.as_str())
                .and_then(patient_id),
        ) {
            if want != about {
                return;
            }
        }
        let context = |key: &str| outer.get(key).cloned();
        let effective_keys = [
            "effectiveDateTime",
            "effectivePeriod",
            "effectiveInstant",
            "issued",
        ];
        for (n, item) in inner.iter().enumerate() {
            let serde_json::Value::Object(mut r) = item.clone() else {
                continue;
            };
            let kind = match r.get("resourceType").and_then(|k| k.as_str()) {
                Some(k @ ("Observation" | "Condition" | "DiagnosticReport" | "ImagingStudy")) => {
                    k.to_owned()
                }
                _ => continue,
            };
            // Never nested further (FHIR forbids it; a crafted one is not followed).
            r.remove("contained");
            // Without an id of its own, its place among the contained names it.
            let id = r
                .get("id")
                .and_then(|i| i.as_str())
                .map_or_else(|| n.to_string(), str::to_owned);
            let outer_id = outer
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or("(no id)");
            let outer_kind = outer
                .get("resourceType")
                .and_then(|k| k.as_str())
                .unwrap_or("");
            r.insert(
                "id".into(),
                serde_json::Value::String(format!("{outer_kind}-{outer_id}#{id}")),
            );
            // No subject, or one that points inside the container (`#pt`): the container's.
            let local_subject = r
                .get("subject")
                .and_then(|s| s.get("reference"))
                .and_then(|x| x.as_str())
                .is_some_and(|x| x.starts_with('#'));
            if !r.contains_key("subject") || local_subject {
                match context("subject") {
                    Some(subject) => {
                        r.insert("subject".into(), subject);
                    }
                    None => {
                        r.remove("subject");
                    }
                }
            }
            if kind == "Observation" && !effective_keys.iter().any(|k| r.contains_key(*k)) {
                for k in effective_keys {
                    if let Some(v) = context(k) {
                        r.insert(k.into(), v);
                    }
                }
            }
            let Ok(raw) = serde_json::value::to_raw_value(&serde_json::Value::Object(r)) else {
                continue;
            };
            self.read(&raw, &kind);
        }
    }

    /// Deserialise one resource of type `kind` into its record, or report why it cannot be.
    /// Its id comes from the parsed resource; the text is read for it only when that fails.
    fn read(&mut self, raw: &RawValue, kind: &str) {
        if kind == "Patient" && self.identity.is_none() {
            if let Some(patient) = &self.patient {
                self.identity = crate::identity::identity(raw, patient);
            }
        }
        if !READ.contains(&kind) || (kind == "Patient" && !self.read_patients) {
            return;
        }
        let source = |id: Option<&str>| format!("{kind}/{}", id.unwrap_or("(no id)"));
        let json = raw.get();
        // A substring test first: the tree is built only for the rare resource that contains.
        if json.contains("\"contained\"") {
            self.read_contained(json);
        }
        if kind == "CarePlan" {
            match serde_json::from_str::<CarePlan>(json) {
                Ok(p)
                    if self.patient.as_ref().is_some_and(|want| {
                        subject_of(Some(&p.subject)).is_some_and(|about| &about != want)
                    }) =>
                {
                    self.problems.push(Problem {
                        source: source(p.id.as_deref()),
                        message: "about another patient: not used".into(),
                    });
                }
                Ok(p) => {
                    let (since_day, since) = p
                        .period
                        .as_ref()
                        .and_then(|pe| pe.start.as_ref())
                        .or(p.created.as_ref())
                        .map_or((None, None), when);
                    self.sources.push(source(p.id.as_deref()));
                    self.plans.push(PlanSeen {
                        source: source(p.id.as_deref()),
                        status: p.status.to_string(),
                        instantiates: p.instantiates_canonical.iter().flatten().cloned().collect(),
                        categories: p
                            .category
                            .iter()
                            .flatten()
                            .flat_map(|c| codes(Some(c)))
                            .collect(),
                        since,
                        since_day,
                    });
                }
                Err(e) => self.problems.push(Problem {
                    source: source(None),
                    message: format!("not a valid FHIR R4 CarePlan: {}", describe(&e)),
                }),
            }
            return;
        }
        let read = match kind {
            "Observation" => serde_json::from_str::<Observation>(json)
                .map(|o| observation(&o, source(o.id.as_deref()))),
            "Condition" => serde_json::from_str::<Condition>(json)
                .map(|c| condition(&c, source(c.id.as_deref()))),
            "ServiceRequest" => serde_json::from_str::<ServiceRequest>(json)
                .map(|s| service_request(&s, source(s.id.as_deref()))),
            "Patient" => serde_json::from_str::<Patient>(json).map(|p| {
                let mut read = patient(&p, source(p.id.as_deref()));
                if self.read_gender {
                    // The administrative gender's code alone (none recorded: no code).
                    read.record.value = Some(Value::Coded(
                        p.gender
                            .iter()
                            .map(|g| Code {
                                system: GENDER.into(),
                                code: g.to_string(),
                            })
                            .collect(),
                    ));
                }
                read
            }),
            "DiagnosticReport" => serde_json::from_str::<DiagnosticReport>(json)
                .map(|d| diagnostic_report(&d, source(d.id.as_deref()))),
            "ImagingStudy" => serde_json::from_str::<ImagingStudy>(json)
                .map(|i| imaging_study(&i, source(i.id.as_deref()))),
            _ => serde_json::from_str::<DeviceRequest>(json)
                .map(|d| device_request(&d, source(d.id.as_deref()))),
        };
        match read {
            Ok(read) => self.keep(read),
            Err(e) => {
                let id = serde_json::from_str::<Head>(json)
                    .ok()
                    .and_then(|h| text(h.id));
                self.problems.push(Problem {
                    source: source(id.as_deref()),
                    message: format!("not a valid FHIR R4 {kind}: {}", describe(&e)),
                })
            }
        }
    }
}

/// The entries of a Bundle that does not read in one pass: whatever in `entry` is an object
/// counts, junk beside it is skipped.
impl Intake {
    /// An intake for a call about `patient`: resources about anyone else are never used.
    pub fn for_patient(patient: &str) -> Intake {
        Intake {
            patient: Some(patient.to_owned()),
            ..Intake::default()
        }
    }

    /// Keep a record read, unless it is about another patient or was read already (the same
    /// identifier, or the same id and version, sent again): those are named, not used.
    fn keep(&mut self, read: Read) {
        let Read {
            record,
            at,
            subject,
            keys,
            version,
            members,
        } = read;
        if let (Some(want), Some(about)) = (&self.patient, &subject) {
            if want != about {
                self.problems.push(Problem {
                    source: record.source,
                    message: "about another patient: not used".into(),
                });
                return;
            }
        }
        for key in &keys {
            let Some((first, kept)) = self.seen.get(key).cloned() else {
                continue;
            };
            // By the records' own sources: `sources` also lists CarePlans, which are no
            // records, so its positions are not the records'.
            let index = self.records.iter().position(|r| r.source == first);
            // A later version of the same resource is its own retraction or correction,
            // entered in error included; a copy under another id is weighed by `Version`.
            let later = if first == record.source {
                match (version.updated, kept.updated) {
                    (Some(now), Some(before)) => now > before,
                    _ => version.correction && !kept.correction,
                }
            } else {
                version > kept
            };
            // Two copies of a finding with no version to order them that say different things
            // are not one record sent twice: both stand (a painful walk that carries another
            // record's identifier is still a painful walk), the safe reading of a clash (D91).
            // Not for panels and sessions: two copies of a run would count its distance twice.
            let differs = index.is_some_and(|i| {
                let r = &self.records[i];
                r.components.is_empty()
                    && record.components.is_empty()
                    && (&r.codes, &r.value, &r.date) != (&record.codes, &record.value, &record.date)
            });
            if !later && version == kept && differs {
                continue;
            }
            if let (true, Some(i)) = (later, index) {
                // A later version of a record already kept (a correction): it takes the
                // earlier one's place, and the earlier one is named as replaced.
                self.problems.push(Problem {
                    source: first.clone(),
                    message: "replaced by a later version of the same record (same identifier)"
                        .into(),
                });
                for key in keys {
                    self.seen.insert(key, (record.source.clone(), version));
                }
                if let Some(k) = self.sources.iter().position(|s| *s == first) {
                    self.sources[k] = record.source.clone();
                }
                if !members.is_empty() {
                    self.members.push((record.source.clone(), members));
                }
                self.records[i] = record;
                self.instants[i] = at;
                return;
            }
            let message = if first == record.source {
                "sent twice: counted once".to_owned()
            } else {
                // The other record is named in the trace and the audit, by this one's
                // source; the text a clinician reads names no ids.
                "the same record sent again under another id (same identifier): counted once"
                    .to_owned()
            };
            self.problems.push(Problem {
                source: record.source,
                message,
            });
            return;
        }
        for key in keys {
            self.seen.insert(key, (record.source.clone(), version));
        }
        if !members.is_empty() {
            self.members.push((record.source.clone(), members));
        }
        self.sources.push(record.source.clone());
        self.records.push(record);
        self.instants.push(at);
    }

    /// A panel whose members are Observations of their own (`hasMember`: an app's running
    /// session with its distance, pace, speed work and pain as separate results) reads as if
    /// they were its components, as a device that sends components writes it, so a session's
    /// pain counts once. Only a member that is a part of that panel is merged: one that counts
    /// (final, amended, corrected), of the panel's day, of its body site (or none), in a panel
    /// that counts. Any other member stays a record of its own, with its own date, side and
    /// status (a diary panel's seven days, a left-knee exam in a panel without a side). A
    /// member whose code the panel already carries merges only when it says the same;
    /// otherwise it stays apart, as evidence of its own. Members not received yet stay
    /// pending: a later page may bring them.
    fn link_members(&mut self) {
        let counts =
            |r: &Record| matches!(r.status.as_deref(), Some("final" | "amended" | "corrected"));
        for (panel, refs) in std::mem::take(&mut self.members) {
            let Some(p) = self.records.iter().position(|r| r.source == panel) else {
                self.members.push((panel, refs));
                continue;
            };
            let mut pending = Vec::new();
            let mut merged = Vec::new();
            for m in refs {
                let Some(i) = self.records.iter().position(|r| r.source == m) else {
                    pending.push(m);
                    continue;
                };
                let (r, host) = (&self.records[i], &self.records[p]);
                let part = i != p
                    && r.kind == RecordKind::Observation
                    && r.components.is_empty()
                    && counts(r)
                    && counts(host)
                    && r.date == host.date
                    && (r.sites.is_empty() || r.sites == host.sites);
                if !part {
                    continue;
                }
                match host.components.iter().find(|c| c.codes == r.codes) {
                    Some(c) if c.value == r.value => merged.push(i),
                    Some(_) => {}
                    None => {
                        let component = stride_guideline::facts::Component {
                            codes: r.codes.clone(),
                            value: r.value.clone(),
                        };
                        self.records[p].components.push(component);
                        merged.push(i);
                    }
                }
            }
            merged.sort_unstable();
            merged.dedup();
            for i in merged.into_iter().rev() {
                let member = self.records.remove(i);
                self.instants.remove(i);
                self.problems.push(Problem {
                    source: member.source,
                    message: "a part of the panel that names it: read as one of its components"
                        .into(),
                });
            }
            if !pending.is_empty() {
                self.members.push((panel, pending));
            }
        }
    }
}

/// The patient id a reference names (`Patient/p1`, `https://ehr/fhir/Patient/p1`,
/// `Patient/p1/_history/2`); `None` when it names none (a `urn:uuid:` or a contained one).
pub fn patient_id(reference: &str) -> Option<&str> {
    let path = reference.split(['?', '#']).next()?;
    let path = match path.find("/_history/") {
        Some(i) => &path[..i],
        None => path,
    };
    let (head, id) = path.rsplit_once('/')?;
    (head == "Patient" || head.ends_with("/Patient"))
        .then_some(id)
        .filter(|id| !id.is_empty())
}

fn subject_of(r: Option<&Reference>) -> Option<String> {
    r.and_then(|r| r.reference.as_deref())
        .and_then(patient_id)
        .map(str::to_owned)
}

/// What says two resources are one record: each business identifier (system and value), and
/// the id with its version.
/// An identifier system as a key: its scheme and host in lower case, as RFC 3986 compares
/// them (`HTTPS://EHR.Example.org/ids` and `https://ehr.example.org/ids` are one system, as
/// an interface that rewrites the case sends it); the path stays as written.
fn uri_key(system: &str) -> String {
    let Some((scheme, rest)) = system.split_once(':') else {
        return system.to_owned();
    };
    match rest.strip_prefix("//") {
        Some(rest) => {
            let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            format!(
                "{}://{}{path}",
                scheme.to_ascii_lowercase(),
                host.to_ascii_lowercase()
            )
        }
        None => format!("{}:{rest}", scheme.to_ascii_lowercase()),
    }
}

/// When a resource was last changed, as its server says (`meta.lastUpdated`).
fn last_updated(meta: Option<&Meta>) -> Option<OffsetDateTime> {
    meta.and_then(|m| m.last_updated.as_ref()).map(|i| i.0)
}

fn identity(
    kind: &str,
    id: Option<&str>,
    meta: Option<&Meta>,
    identifiers: &[Option<Identifier>],
) -> Vec<String> {
    let mut keys: Vec<String> = identifiers
        .iter()
        .flatten()
        .filter_map(|i| {
            Some(format!(
                "{kind}|{}|{}",
                uri_key(i.system.as_deref()?),
                i.value.as_deref()?
            ))
        })
        .collect();
    if let Some(id) = id {
        let version = meta.and_then(|m| m.version_id.as_deref()).unwrap_or("");
        keys.push(format!("{kind}/{id}/{version}"));
    }
    keys
}

fn lenient_entries(raw: &RawValue) -> Vec<Entry<'_>> {
    serde_json::from_str::<Head>(raw.get())
        .ok()
        .and_then(|h| h.entry)
        .and_then(|e| serde_json::from_str::<Vec<&RawValue>>(e.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Entry>(e.get()).ok())
        .collect()
}

/// What was wrong, without serde's message: it quotes the offending value, which may be PHI.
fn describe(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Data => {
            "a field is missing, has the wrong type or holds a code outside its value set"
        }
        _ => "the JSON cannot be read",
    }
}

/// The codings of a concept, each with its code system named canonically (an OID becomes the
/// system's URI) and its code in the system's canonical form.
/// What a CodeableConcept says in words: its text and its codings' displays, lowercased,
/// for an order that may name what it orders in words only.
fn words(cc: Option<&CodeableConcept>) -> Option<String> {
    let cc = cc?;
    let mut said: Vec<&str> = cc.text.as_deref().into_iter().collect();
    said.extend(
        cc.coding
            .iter()
            .flatten()
            .filter_map(|c| c.display.as_deref()),
    );
    let text = said.join(" · ").to_lowercase();
    (!text.trim().is_empty()).then_some(text)
}

/// A value typed as text: a whole number (`typed_number`), or a yes or a no in one of the
/// exact words forms and apps use ("Y", "yes", "N", "no", "nil", "none", "no pain"), read as
/// that answer. Anything else ("unknown", "mild", "worse at night") stays a form not read,
/// "not ruled out" (D52, D91).
fn typed_value(text: &str) -> Value {
    if let Some(n) = typed_number(text) {
        return n;
    }
    let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
    match t.as_str() {
        "y" | "yes" | "present" | "positive" => Value::Boolean(true),
        "n" | "no" | "nil" | "none" | "absent" | "negative" | "no pain" => Value::Boolean(false),
        _ => Value::Other("string".into()),
    }
}

/// A whole number typed as text, as flowsheets and patient apps send a score: "4", "3/10",
/// "2 out of 10". Only these exact shapes: anything else ("pain 2", "3-4", "7/20") stays a
/// form not read, which a fact takes as "not ruled out", never as a number guessed from it.
fn typed_number(text: &str) -> Option<Value> {
    let t = text.trim().to_ascii_lowercase();
    let n = match t.split_once('/') {
        Some((n, d)) if d.trim() == "10" => n.trim(),
        Some(_) => return None,
        None => t.strip_suffix("out of 10").map(str::trim_end).unwrap_or(&t),
    };
    let whole = !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit());
    whole.then(|| n.parse().ok().map(Value::Integer)).flatten()
}

/// A `valueRange`: each end a quantity in its own unit (a comparator on an end is not a range
/// FHIR allows); with neither end it says nothing.
fn range(r: &fhir_sdk::r4b::types::Range) -> Option<Value> {
    let end = |q: &Option<Quantity>| {
        let q = q.as_ref()?;
        Some((q.value?, unit_of(q)))
    };
    let (low, high) = (end(&r.low), end(&r.high));
    (low.is_some() || high.is_some()).then_some(Value::Range { low, high })
}

/// A ratio over 10 ("3:10" as `valueRatio`) is a 0–10 score; any other ratio is not read.
fn ratio_of_ten(r: &fhir_sdk::r4b::types::Ratio) -> Option<Value> {
    let num = r.numerator.as_ref()?.value?;
    let den = r.denominator.as_ref()?.value?;
    (den == 10.0 && num.fract() == 0.0 && (0.0..=10.0).contains(&num))
        .then(|| Value::Integer(num as i64))
}

fn codes(cc: Option<&CodeableConcept>) -> Vec<Code> {
    cc.map(|cc| {
        cc.coding
            .iter()
            .flatten()
            .filter_map(|c| Some(canonical(c.system.as_deref()?, c.code.as_deref()?)))
            .collect()
    })
    .unwrap_or_default()
}

/// The calendar day as the EHR recorded it (its own offset), and the instant when there is
/// one: `Intake::localise` reads that instant on the clinic's calendar.
fn when(dt: &DateTime) -> (Option<Date>, Option<OffsetDateTime>) {
    match dt {
        DateTime::Date(fhir_sdk::Date::Date(d)) => (Some(*d), None),
        DateTime::Date(_) => (None, None),
        DateTime::DateTime(i) => (Some(i.0.date()), Some(i.0)),
    }
}

fn instant(i: &fhir_sdk::Instant) -> (Option<Date>, Option<OffsetDateTime>) {
    (Some(i.0.date()), Some(i.0))
}

/// A quantity's unit: the UCUM code; the human-readable `unit` is only trusted without a
/// system.
fn unit_of(q: &Quantity) -> Option<String> {
    q.code
        .clone()
        .or_else(|| q.system.is_none().then(|| q.unit.clone()).flatten())
}

fn quantity(q: &Quantity) -> Option<Value> {
    let value = q.value?;
    let unit = unit_of(q);
    // `< 5 cm` is a bound, never the number 5.
    Some(match &q.comparator {
        Some(c) => Value::Bound {
            comparator: c.to_string(),
            unit,
            value,
        },
        None => Value::Quantity { value, unit },
    })
}

/// A period: its last day (as recent as its end) and its first; an open-ended one is dated
/// by its start.
fn period(p: &Period) -> (Option<Date>, Option<Date>, Instants) {
    let (start_day, start) = p.start.as_ref().map_or((None, None), when);
    match p.end.as_ref().map(when) {
        Some((Some(end_day), end)) => (
            Some(end_day),
            start_day,
            Instants {
                date: end,
                start,
                end: None,
            },
        ),
        _ => (
            start_day,
            None,
            Instants {
                date: start,
                start: None,
                end: None,
            },
        ),
    }
}

fn dated(d: Option<Date>, at: Option<OffsetDateTime>) -> (Option<Date>, Option<Date>, Instants) {
    (
        d,
        None,
        Instants {
            date: at,
            ..Instants::default()
        },
    )
}

fn observation(o: &Observation, source: String) -> Read {
    let (date, start, at) = match &o.effective {
        Some(ObservationEffective::DateTime(dt)) => {
            let (d, at) = when(dt);
            dated(d, at)
        }
        Some(ObservationEffective::Period(p)) => period(p),
        Some(ObservationEffective::Instant(i)) => {
            let (d, at) = instant(i);
            dated(d, at)
        }
        _ => {
            let (d, at) = o.issued.as_ref().map_or((None, None), instant);
            dated(d, at)
        }
    };
    let value = match &o.value {
        Some(ObservationValue::Quantity(q)) => quantity(q),
        Some(ObservationValue::Integer(i)) => Some(Value::Integer(i64::from(*i))),
        Some(ObservationValue::Boolean(b)) => Some(Value::Boolean(*b)),
        Some(ObservationValue::CodeableConcept(cc)) => Some(Value::Coded(codes(Some(cc)))),
        // Recorded, in a form not read: never "no value" (free text is not a "no").
        Some(ObservationValue::String(t)) => Some(typed_value(t)),
        Some(ObservationValue::Range(r)) => {
            Some(range(r).unwrap_or_else(|| Value::Other("a range".into())))
        }
        Some(ObservationValue::Ratio(r)) => {
            Some(ratio_of_ten(r).unwrap_or_else(|| Value::Other("a ratio".into())))
        }
        Some(ObservationValue::SampledData(_)) => Some(Value::Other("sampled data".into())),
        Some(ObservationValue::Time(_)) => Some(Value::Other("a time".into())),
        Some(ObservationValue::DateTime(_)) => Some(Value::Other("a date".into())),
        Some(ObservationValue::Period(_)) => Some(Value::Other("a period".into())),
        _ => None,
    };
    let components = o
        .component
        .iter()
        .flatten()
        .map(|c| Component {
            codes: codes(Some(&c.code)),
            value: match &c.value {
                Some(ObservationComponentValue::Quantity(q)) => quantity(q),
                Some(ObservationComponentValue::Integer(i)) => Some(Value::Integer(i64::from(*i))),
                Some(ObservationComponentValue::Boolean(b)) => Some(Value::Boolean(*b)),
                Some(ObservationComponentValue::CodeableConcept(cc)) => {
                    Some(Value::Coded(codes(Some(cc))))
                }
                Some(ObservationComponentValue::String(t)) => Some(typed_value(t)),
                // A component is read as its Observation's value would be: a range, a ratio
                // over 10, and any other form recorded but not read.
                Some(ObservationComponentValue::Range(r)) => {
                    Some(range(r).unwrap_or_else(|| Value::Other("a range".into())))
                }
                Some(ObservationComponentValue::Ratio(r)) => {
                    Some(ratio_of_ten(r).unwrap_or_else(|| Value::Other("a ratio".into())))
                }
                Some(_) => Some(Value::Other("another type".into())),
                None => None,
            },
        })
        .collect();
    let record = Record {
        at: None,
        text: None,
        end: None,
        sites: o
            .body_site
            .as_ref()
            .map(|b| codes(Some(b)))
            .unwrap_or_default(),
        start,
        source,
        kind: RecordKind::Observation,
        codes: codes(Some(&o.code)),
        status: Some(o.status.to_string()),
        date,
        value,
        components,
    };
    Read {
        keys: identity(
            "Observation",
            o.id.as_deref(),
            o.meta.as_ref(),
            &o.identifier,
        ),
        version: Version {
            standing: o.status.to_string() != "entered-in-error",
            correction: matches!(o.status.to_string().as_str(), "amended" | "corrected"),
            updated: last_updated(o.meta.as_ref()).or(o.issued.as_ref().map(|i| i.0)),
        },
        subject: subject_of(o.subject.as_ref()),
        record,
        at,
        members: o
            .has_member
            .iter()
            .flatten()
            .filter_map(|m| m.reference.as_deref())
            .filter_map(|r| member_source(r, o.id.as_deref()))
            .collect(),
    }
}

/// The source a panel's member reference names: `Observation/{id}` (relative, absolute or
/// versioned), or a contained member (`#id`) as the contained reading names it.
fn member_source(reference: &str, panel_id: Option<&str>) -> Option<String> {
    if let Some(local) = reference.strip_prefix('#') {
        return Some(format!(
            "Observation/Observation-{}#{local}",
            panel_id.unwrap_or("(no id)")
        ));
    }
    let path = reference.split('?').next()?;
    let path = path.find("/_history/").map_or(path, |i| &path[..i]);
    let at = path.rfind("Observation/")?;
    Some(path[at..].to_owned())
}

fn condition(c: &Condition, source: String) -> Read {
    let verification = codes(c.verification_status.as_ref());
    let clinical = codes(c.clinical_status.as_ref());
    // A refuted or mistaken diagnosis is no episode, whatever its clinical status says.
    let status = if verification
        .iter()
        .any(|v| v.code == "entered-in-error" || v.code == "refuted")
    {
        Some("entered-in-error".to_owned())
    } else {
        clinical.first().map(|c| c.code.clone())
    };
    let (date, at) = match &c.onset {
        Some(ConditionOnset::DateTime(dt)) => when(dt),
        // Day 0 is the day running stopped (INTERPRETATION 9): of an onset known only as a
        // period, its last day, the latest the pain can have begun. Read from the first, the
        // days of rest would count from before the patient stopped running.
        Some(ConditionOnset::Period(p)) => p
            .end
            .as_ref()
            .or(p.start.as_ref())
            .map_or((None, None), when),
        _ => (None, None),
    };
    let (end, end_at) = match &c.abatement {
        Some(ConditionAbatement::DateTime(dt)) => when(dt),
        Some(ConditionAbatement::Period(p)) => p
            .end
            .as_ref()
            .or(p.start.as_ref())
            .map_or((None, None), when),
        // Marked ended with no abatement: it ended no later than its last change.
        _ if matches!(
            status.as_deref(),
            Some("inactive" | "remission" | "resolved")
        ) =>
        {
            last_updated(c.meta.as_ref()).map_or((None, None), |t| (Some(t.date()), Some(t)))
        }
        _ => (None, None),
    };
    let record = Record {
        at: None,
        end,
        sites: c
            .body_site
            .iter()
            .flatten()
            .flat_map(|b| codes(Some(b)))
            .collect(),
        start: None,
        source,
        kind: RecordKind::Condition,
        codes: codes(c.code.as_ref()),
        // A diagnosis given in words only ("medial knee pain, right, while running"): its
        // words, for a rule set that names its trigger in words too. A coded one keeps its
        // clinician's text alone ("Night pain right knee" beside a code no fact reads), never
        // its codes' displays: a code left out on purpose is not let back in by its display.
        text: if c
            .code
            .as_ref()
            .is_some_and(|cc| cc.coding.iter().flatten().all(|c| c.code.is_none()))
        {
            words(c.code.as_ref())
        } else {
            c.code
                .as_ref()
                .and_then(|cc| cc.text.as_deref())
                .map(str::to_lowercase)
                .filter(|t| !t.trim().is_empty())
        },
        status,
        date,
        value: None,
        components: vec![],
    };
    Read {
        keys: identity("Condition", c.id.as_deref(), c.meta.as_ref(), &c.identifier),
        version: Version {
            standing: record.status.as_deref() != Some("entered-in-error"),
            correction: false,
            updated: last_updated(c.meta.as_ref()),
        },
        subject: subject_of(Some(&c.subject)),
        record,
        at: Instants {
            date: at,
            start: None,
            end: end_at,
        },
        members: Vec::new(),
    }
}

/// A Patient as the rule set reads it: its birth date, nothing else. A year or a month alone
/// is a range of days: from its first day (`start`) to its last (`date`), an age range.
fn patient(p: &Patient, source: String) -> Read {
    let (start, date) = match &p.birth_date {
        Some(fhir_sdk::Date::Date(d)) => (None, Some(*d)),
        Some(fhir_sdk::Date::YearMonth(y, m)) => (
            Date::from_calendar_date(*y, *m, 1).ok(),
            Date::from_calendar_date(*y, *m, m.length(*y)).ok(),
        ),
        Some(fhir_sdk::Date::Year(y)) => (
            Date::from_calendar_date(*y, time::Month::January, 1).ok(),
            Date::from_calendar_date(*y, time::Month::December, 31).ok(),
        ),
        None => (None, None),
    };
    let record = Record {
        at: None,
        text: None,
        end: None,
        sites: Vec::new(),
        start,
        source,
        kind: RecordKind::Patient,
        codes: vec![Code {
            system: RESOURCE_TYPES.into(),
            code: "Patient".into(),
        }],
        status: None,
        date,
        value: None,
        components: vec![],
    };
    Read {
        keys: identity("Patient", p.id.as_deref(), p.meta.as_ref(), &[]),
        version: Version::default(),
        subject: p.id.clone(),
        record,
        at: Instants::default(),
        members: Vec::new(),
    }
}

fn service_request(s: &ServiceRequest, source: String) -> Read {
    let (date, at) = s.authored_on.as_ref().map_or((None, None), when);
    let status = s.status.to_string();
    // An order carried out is a result: the imaging a red flag asked for was done.
    let kind = if status == "completed" {
        RecordKind::Report
    } else {
        RecordKind::Order
    };
    let record = Record {
        at: None,
        end: None,
        sites: s
            .body_site
            .iter()
            .flatten()
            .flat_map(|b| codes(Some(b)))
            .collect(),
        start: None,
        source,
        kind,
        // What is ordered may be refined in `orderDetail` (a running prescription with a
        // speed-work detail): its codes and words are the order's too.
        codes: std::iter::once(s.code.as_ref())
            .chain(s.order_detail.iter().flatten().map(Some))
            .flat_map(codes)
            .collect(),
        status: Some(status),
        date,
        text: {
            let said: Vec<String> = std::iter::once(s.code.as_ref())
                .chain(s.order_detail.iter().flatten().map(Some))
                .filter_map(words)
                .collect();
            (!said.is_empty()).then(|| said.join(" · "))
        },
        value: match &s.occurrence {
            Some(ServiceRequestOccurrence::Timing(t)) => session_interval(t),
            _ => None,
        },
        components: vec![],
    };
    Read {
        keys: identity(
            "ServiceRequest",
            s.id.as_deref(),
            s.meta.as_ref(),
            &s.identifier,
        ),
        version: Version::default(),
        subject: subject_of(Some(&s.subject)),
        record,
        at: Instants {
            date: at,
            ..Instants::default()
        },
        members: Vec::new(),
    }
}

/// An order's `occurrenceTiming` as the time between two sessions (period / frequency), in
/// the timing's own unit: "once every 2 days" is 2 d, "twice a week" 0.5 wk. With days of
/// the week as well, the days decide, in days: "on Saturday and Sunday" puts two sessions on
/// consecutive days whatever the weekly count says, and "daily, on Mon, Wed and Fri" is every
/// other day; only a period that puts more sessions on the days than there are days says
/// less than the days.
fn session_interval(t: &Timing) -> Option<Value> {
    let repeat = t.repeat.as_ref()?;
    // Days of the week (Mon, Wed, Fri): the shortest gap between two sessions, the week
    // wrapping round (Fri to Mon is 3 days); Mon and Tue are 1 day apart.
    let mut days: Vec<i64> = repeat
        .day_of_week
        .iter()
        .flatten()
        .filter_map(|d| {
            ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .iter()
                .position(|w| *w == d.to_string())
        })
        .map(|i| i as i64)
        .collect();
    days.sort_unstable();
    days.dedup();
    let by_day = days
        .iter()
        .zip(days.iter().cycle().skip(1))
        .map(|(a, b)| (b - a).rem_euclid(7))
        .map(|g| if g == 0 { 7 } else { g })
        .min();
    let frequency = f64::from(repeat.frequency.map_or(1, |f| f.get()));
    let by_period = repeat
        .period
        .filter(|p| *p > 0.0)
        .and_then(|period| Some((period, repeat.period_unit.clone()?)));
    match (by_day, by_period) {
        (Some(gap), Some((period, unit))) => {
            let days_per = match unit.to_string().as_str() {
                "s" => 1.0 / 86_400.0,
                "min" => 1.0 / 1_440.0,
                "h" => 1.0 / 24.0,
                "d" => 1.0,
                "wk" => 7.0,
                "mo" => 30.0,
                "a" => 365.0,
                _ => f64::INFINITY,
            };
            // The days say on which days sessions fall (FHIR: `dayOfWeek` restricts the
            // schedule). More than one a day, or more a week than days named ("4 a week, on
            // Mon and Wed"), puts two on one day: then the period's reading is the closer
            // one. A daily period is only narrowed by the days ("daily, on Mon, Wed and Fri").
            let period_days = period * days_per;
            let every_days = period_days / frequency;
            let weekly = period_days >= 7.0;
            let crowded = every_days < 1.0 || (weekly && 7.0 / every_days > days.len() as f64);
            Some(Value::Quantity {
                value: if crowded {
                    every_days.min(gap as f64)
                } else {
                    gap as f64
                },
                unit: Some("d".into()),
            })
        }
        (Some(gap), None) => Some(Value::Quantity {
            value: gap as f64,
            unit: Some("d".into()),
        }),
        (None, Some((period, unit))) => Some(Value::Quantity {
            value: period / frequency,
            unit: Some(unit.to_string()),
        }),
        (None, None) => None,
    }
}

fn device_request(d: &DeviceRequest, source: String) -> Read {
    let code = match &d.code {
        DeviceRequestCode::CodeableConcept(cc) => codes(Some(cc)),
        _ => vec![],
    };
    let (date, at) = d.authored_on.as_ref().map_or((None, None), when);
    let record = Record {
        at: None,
        end: None,
        sites: Vec::new(),
        start: None,
        source,
        kind: RecordKind::Order,
        text: match &d.code {
            DeviceRequestCode::CodeableConcept(cc) => words(Some(cc)),
            _ => None,
        },
        codes: code,
        status: d.status.as_ref().map(|s| s.to_string()),
        date,
        value: None,
        components: vec![],
    };
    Read {
        keys: identity(
            "DeviceRequest",
            d.id.as_deref(),
            d.meta.as_ref(),
            &d.identifier,
        ),
        version: Version::default(),
        subject: subject_of(Some(&d.subject)),
        record,
        at: Instants {
            date: at,
            ..Instants::default()
        },
        members: Vec::new(),
    }
}

/// A report of a study done (imaging): its code and day.
fn diagnostic_report(d: &DiagnosticReport, source: String) -> Read {
    let (date, start, at) = match &d.effective {
        Some(DiagnosticReportEffective::DateTime(dt)) => {
            let (day, at) = when(dt);
            dated(day, at)
        }
        Some(DiagnosticReportEffective::Period(p)) => period(p),
        _ => {
            let (day, at) = d.issued.as_ref().map_or((None, None), instant);
            dated(day, at)
        }
    };
    let record = Record {
        at: None,
        // What was imaged, in words ("MRI right ankle"): a code for any lower-limb joint
        // does not say which.
        text: words(Some(&d.code)),
        end: None,
        sites: Vec::new(),
        start,
        source,
        kind: RecordKind::Report,
        codes: codes(Some(&d.code)),
        status: Some(d.status.to_string()),
        date,
        value: None,
        components: vec![],
    };
    Read {
        keys: identity(
            "DiagnosticReport",
            d.id.as_deref(),
            d.meta.as_ref(),
            &d.identifier,
        ),
        version: Version::default(),
        subject: subject_of(d.subject.as_ref()),
        record,
        at,
        members: Vec::new(),
    }
}

/// An imaging study: its procedure codes and the day it started.
fn imaging_study(i: &ImagingStudy, source: String) -> Read {
    let (date, at) = i.started.as_ref().map_or((None, None), when);
    let said: Vec<String> = i
        .procedure_code
        .iter()
        .flatten()
        .filter_map(|c| words(Some(c)))
        .collect();
    let record = Record {
        at: None,
        text: (!said.is_empty()).then(|| said.join(" · ")),
        end: None,
        // The series' body sites: what was imaged, whatever the procedure code says.
        sites: i
            .series
            .iter()
            .flatten()
            .filter_map(|s| s.body_site.as_ref())
            .filter_map(|c| Some(canonical(c.system.as_deref()?, c.code.as_deref()?)))
            .collect(),
        start: None,
        source,
        kind: RecordKind::Report,
        codes: i
            .procedure_code
            .iter()
            .flatten()
            .flat_map(|c| codes(Some(c)))
            .collect(),
        status: Some(i.status.to_string()),
        date,
        value: None,
        components: vec![],
    };
    Read {
        keys: identity(
            "ImagingStudy",
            i.id.as_deref(),
            i.meta.as_ref(),
            &i.identifier,
        ),
        version: Version::default(),
        subject: subject_of(Some(&i.subject)),
        record,
        at: Instants {
            date: at,
            ..Instants::default()
        },
        members: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as Json};

    use super::*;

    fn add(intake: &mut Intake, value: Json) {
        intake.add(&serde_json::value::to_raw_value(&value).unwrap());
    }

    /// A final finding about `Patient/p1` in Stride's code system: `code` = `value` (a
    /// `value[x]` key and its JSON) at `when`.
    fn finding(id: &str, code: &str, when: &str, value: (&str, Json)) -> Json {
        let mut o = json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": LOCAL, "code": code}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when});
        o[value.0] = value.1;
        o
    }

    /// The intake read on an Auckland clinic's calendar at 09:00 on 2026-12-06.
    fn localise_in_auckland(intake: &mut Intake) {
        let zone = crate::clinic::ClinicZone::named("Pacific/Auckland").unwrap();
        let now = OffsetDateTime::parse(
            "2026-12-06T09:00:00+13:00",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        intake.localise(&zone, now);
    }

    const LOCAL: &str = "http://stride-cds.org/fhir/CodeSystem/running-knee";

    #[test]
    fn code_systems_named_by_oid_and_dotless_icd10_codes_read_canonically() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Condition", "id": "c1",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [
                    {"system": "urn:oid:2.16.840.1.113883.6.90", "code": "S83411D"},
                    {"system": "urn:oid:2.16.840.1.113883.6.96", "code": "444448004"}]},
                "subject": {"reference": "Patient/p"}, "onsetDateTime": "2026-11-20"}),
        );
        assert_eq!(
            intake.records[0].codes,
            vec![
                Code {
                    code: "S83.411D".into(),
                    system: "http://hl7.org/fhir/sid/icd-10-cm".into()
                },
                Code {
                    code: "444448004".into(),
                    system: "http://snomed.info/sct".into()
                },
            ]
        );
    }

    fn pain_at(id: &str, when: &str) -> Json {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
            "effectiveDateTime": when, "valueInteger": 3})
    }

    #[test]
    fn a_named_clinic_zone_reads_utc_timestamps_on_the_clinics_calendar() {
        let mut intake = Intake::default();
        // An EHR that writes UTC: 22:10Z on 1 December is 09:10 on 2 December in Sydney.
        add(&mut intake, pain_at("o1", "2026-12-01T22:10:00Z"));
        add(&mut intake, pain_at("o2", "2026-11-30"));
        let sydney = ClinicZone::named("Australia/Sydney").unwrap();
        let now = time::macros::datetime!(2026-12-01 22:15 UTC);
        let today = intake.localise(&sydney, now);
        assert_eq!(today, time::macros::date!(2026 - 12 - 02));
        assert_eq!(
            intake.records[0].date,
            Some(time::macros::date!(2026 - 12 - 02))
        );
        // A date without a time stays the date it says.
        assert_eq!(
            intake.records[1].date,
            Some(time::macros::date!(2026 - 11 - 30))
        );
        // Idempotent.
        assert_eq!(intake.localise(&sydney, now), today);
        assert_eq!(
            intake.records[0].date,
            Some(time::macros::date!(2026 - 12 - 02))
        );
    }

    #[test]
    fn without_a_zone_today_is_read_in_the_offset_the_ehr_writes() {
        let mut intake = Intake::default();
        // Minutes ago at a clinic ten hours east of UTC: Tuesday there, Monday in UTC.
        add(&mut intake, pain_at("o1", "2026-12-02T08:05:00+10:00"));
        let now = time::macros::datetime!(2026-12-01 22:10 UTC);
        let today = intake.localise(&ClinicZone::FromRecords, now);
        assert_eq!(today, time::macros::date!(2026 - 12 - 02));
        assert_eq!(intake.records[0].date, Some(today), "not in the future");
        // Nothing timed: UTC.
        let mut dated = Intake::default();
        add(&mut dated, pain_at("o2", "2026-12-01"));
        assert_eq!(
            dated.localise(&ClinicZone::FromRecords, now),
            time::macros::date!(2026 - 12 - 01)
        );
    }

    #[test]
    fn reads_observations_with_units_components_and_dates() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": {"resourceType": "Observation", "id": "t1", "status": "final",
                    "code": {"coding": [{"system": LOCAL, "code": "tenderness-extent"}]},
                    "effectiveDateTime": "2026-03-01T23:30:00-05:00",
                    "valueQuantity": {"value": 49, "unit": "millimeter", "system": "http://unitsofmeasure.org", "code": "mm"}}},
                {"resource": {"resourceType": "Observation", "id": "s1", "status": "final",
                    "code": {"coding": [{"system": LOCAL, "code": "running-session"}]},
                    "effectiveDateTime": "2026-03-02",
                    "component": [
                        {"code": {"coding": [{"system": LOCAL, "code": "run-distance"}]}, "valueQuantity": {"value": 2500, "system": "http://unitsofmeasure.org", "code": "m"}},
                        {"code": {"coding": [{"system": LOCAL, "code": "speed-work"}]}, "valueBoolean": false}
                    ]}},
                {"resource": {"resourceType": "Patient", "id": "p", "extension": [{"url": "x:y", "valueString": "ignored"}]}}
            ]}),
        );
        assert!(intake.problems.is_empty(), "{:?}", intake.problems);
        assert_eq!(intake.records.len(), 2);
        let t = &intake.records[0];
        assert_eq!(t.source, "Observation/t1");
        assert_eq!(
            t.date,
            Some(time::macros::date!(2026 - 03 - 01)),
            "the EHR's own calendar day"
        );
        assert_eq!(
            t.value,
            Some(Value::Quantity {
                value: 49.0,
                unit: Some("mm".into())
            })
        );
        let s = &intake.records[1];
        assert_eq!(s.components.len(), 2);
        assert_eq!(s.components[1].value, Some(Value::Boolean(false)));
    }

    #[test]
    fn a_malformed_resource_is_reported_without_its_content_and_the_rest_counts() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Bundle", "entry": [
                {"resource": {"resourceType": "Observation", "id": "bad", "status": "sort-of-final",
                    "code": {"text": "Jane Doe's pain"}}},
                {"resource": {"resourceType": "Condition", "id": "c1",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
                    "subject": {"reference": "Patient/1"},
                    "onsetDateTime": "2026-02-10"}}
            ]}),
        );
        assert_eq!(intake.records.len(), 1);
        assert_eq!(intake.records[0].status.as_deref(), Some("active"));
        assert_eq!(intake.problems.len(), 1);
        assert_eq!(intake.problems[0].source, "Observation/bad");
        assert!(
            !intake.problems[0].message.contains("sort-of-final"),
            "{}",
            intake.problems[0].message
        );
    }

    #[test]
    fn an_order_timing_becomes_the_interval_between_sessions() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "ServiceRequest", "id": "run", "status": "draft", "intent": "order",
            "code": {"coding": [{"system": LOCAL, "code": "running-prescription"}]},
            "subject": {"reference": "Patient/1"},
            "occurrenceTiming": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}}}),
        );
        assert_eq!(
            intake.records[0].value,
            Some(Value::Quantity {
                value: 0.5,
                unit: Some("wk".into())
            })
        );
    }

    #[test]
    fn a_patients_birth_date_is_read_only_when_asked_for_and_only_to_the_day() {
        let patient = |birth: &str| {
            json!({"resourceType": "Patient", "id": "p1", "birthDate": birth,
                   "name": [{"text": "Jane Doe"}], "gender": "female"})
        };
        let mut intake = Intake::default();
        add(&mut intake, patient("2014-05-02"));
        assert!(
            intake.records.is_empty(),
            "no birth date unless the rule set reads one"
        );
        intake.read_patients = true;
        add(&mut intake, patient("2014-05-02"));
        let r = &intake.records[0];
        assert_eq!(
            (r.kind, r.source.as_str(), r.date),
            (
                RecordKind::Patient,
                "Patient/p1",
                Some(time::macros::date!(2014 - 05 - 02))
            )
        );
        assert_eq!(r.codes[0].system, RESOURCE_TYPES);
        // Nothing but the day: no name, no gender.
        assert!(r.value.is_none() && r.components.is_empty());
        // A month or a year alone is a range of days: an age range, never a guessed day.
        let mut partial = Intake {
            read_patients: true,
            ..Intake::default()
        };
        add(&mut partial, patient("2014-05"));
        add(
            &mut partial,
            json!({"resourceType": "Patient", "id": "p2", "birthDate": "2011"}),
        );
        let days: Vec<_> = partial.records.iter().map(|r| (r.start, r.date)).collect();
        use time::macros::date;
        assert_eq!(
            days,
            vec![
                (Some(date!(2014 - 05 - 01)), Some(date!(2014 - 05 - 31))),
                (Some(date!(2011 - 01 - 01)), Some(date!(2011 - 12 - 31)))
            ]
        );
    }

    #[test]
    fn a_refuted_condition_is_no_episode() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Condition", "id": "c2",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
            "subject": {"reference": "Patient/1"}}),
        );
        assert_eq!(
            intake.records[0].status.as_deref(),
            Some("entered-in-error")
        );
    }

    #[test]
    fn bundles_are_read_leniently_and_each_resource_on_its_own() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Bundle", "entry": [
                7,
                {"fullUrl": "urn:uuid:1"},
                {"resource": {"resourceType": "Patient", "id": "p", "name": [{"text": "Jane Doe"}]}},
                {"resource": {"id": "anonymous"}},
                {"resource": {"resourceType": "Condition", "id": "c1",
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
                    "subject": {"reference": "Patient/1"}}}
            ]}),
        );
        assert_eq!(
            intake.sources,
            ["Condition/c1"],
            "the Patient is skipped unread"
        );
        assert_eq!(intake.problems.len(), 1, "{:?}", intake.problems);
        assert_eq!(intake.problems[0].message, "entry without resourceType");

        // Not an object, or an object without a type: reported, never a panic.
        let mut intake = Intake::default();
        add(&mut intake, json!([1, 2]));
        add(&mut intake, json!({"resourceType": 7}));
        assert_eq!(intake.problems.len(), 2);
        assert!(intake.records.is_empty());
    }

    #[test]
    fn a_leading_resource_type_is_read_from_the_first_bytes_only() {
        assert_eq!(
            leading_type(r#" { "resourceType" : "Observation", "id": "x"}"#),
            Some("Observation")
        );
        // Anything else is left to the full read.
        assert_eq!(
            leading_type(r#"{"id": "x", "resourceType": "Observation"}"#),
            None
        );
        assert_eq!(
            leading_type(r#"{"resourceType": "Observ\u0061tion"}"#),
            None
        );
        assert_eq!(leading_type(r#"{"resourceType": 7}"#), None);
        assert_eq!(leading_type(r#"["resourceType"]"#), None);
    }

    #[test]
    fn resources_read_the_same_whichever_member_comes_first() {
        let obs = |id: &str, first: bool| {
            let (head, tail) = (
                r#""resourceType": "Observation""#,
                format!(r#""id": "{id}""#),
            );
            let (a, b) = if first {
                (head.to_owned(), tail)
            } else {
                (tail, head.to_owned())
            };
            format!(
                r#"{{{a}, {b}, "status": "final",
                "code": {{"coding": [{{"system": "{LOCAL}", "code": "pain-score"}}]}},
                "effectiveDateTime": "2026-03-01", "valueInteger": 3}}"#
            )
        };
        let bundle = format!(
            r#"{{"resourceType": "Bundle", "entry": [
                {{"fullUrl": "urn:uuid:1", "resource": {}}},
                {{"resource": {}}},
                {{"resource": {{"resourceType": "Observ\u0061tion", "id": "escaped", "status": "final",
                    "code": {{"coding": [{{"system": "{LOCAL}", "code": "pain-score"}}]}}}}}},
                {{"resource": {{"resourceType": "Observation", "id": "bad", "status": "sort-of"}}}},
                {{"resource": null}}
            ]}}"#,
            obs("lead", true),
            obs("trail", false)
        );
        let mut intake = Intake::default();
        intake.add(&RawValue::from_string(bundle).unwrap());
        assert_eq!(
            intake.sources,
            [
                "Observation/lead",
                "Observation/trail",
                "Observation/escaped"
            ]
        );
        assert_eq!(intake.records[0].value, intake.records[1].value);
        assert_eq!(intake.records[0].value, Some(Value::Integer(3)));
        assert_eq!(intake.problems.len(), 1, "{:?}", intake.problems);
        assert_eq!(
            intake.problems[0].source, "Observation/bad",
            "its id, read from the text"
        );
    }

    #[test]
    fn a_resource_type_is_read_without_the_rest() {
        let raw = |v: Json| serde_json::value::to_raw_value(&v).unwrap();
        assert_eq!(
            resource_type(&raw(
                json!({"id": "x", "resourceType": "OperationOutcome", "issue": []})
            )),
            Some("OperationOutcome".to_owned())
        );
        assert_eq!(resource_type(&raw(json!({"resourceType": null}))), None);
        assert_eq!(resource_type(&raw(json!("Bundle"))), None);
    }

    #[test]
    fn a_score_typed_as_text_reads_only_in_its_exact_shapes() {
        for (text, want) in [
            ("4", Some(4)),
            (" 0/10 ", Some(0)),
            ("3 / 10", Some(3)),
            ("2 out of 10", Some(2)),
            ("10/10", Some(10)),
        ] {
            assert_eq!(typed_number(text), want.map(Value::Integer), "{text}");
        }
        for text in [
            "pain 2 out of 10",
            "3-4",
            "7/20",
            "3.5/10",
            "",
            "/10",
            "aching",
            "-1",
            "1000",
        ] {
            assert_eq!(typed_number(text), None, "{text}");
        }
    }

    #[test]
    fn a_ratio_over_ten_is_a_score_and_any_other_ratio_is_not_read() {
        let mut intake = Intake::default();
        for (id, den) in [("a", 10), ("b", 20)] {
            add(
                &mut intake,
                json!({"resourceType": "Observation", "id": id, "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-01",
                "valueRatio": {"numerator": {"value": 3}, "denominator": {"value": den}}}),
            );
        }
        let values: Vec<Option<Value>> = intake.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Some(Value::Integer(3)),
                Some(Value::Other("a ratio".into()))
            ]
        );
    }

    fn extent(id: &str, status: &str, cm: f64, updated: &str) -> Json {
        json!({"resourceType": "Observation", "id": id, "status": status,
            "identifier": [{"system": "https://ehr.example.org/obs", "value": "exam-1"}],
            "meta": {"lastUpdated": updated},
            "code": {"coding": [{"system": LOCAL, "code": "tenderness-extent"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-03",
            "valueQuantity": {"value": cm, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}})
    }

    #[test]
    fn a_later_version_replaces_its_own_record_when_a_care_plan_came_first() {
        // A CarePlan is listed among the sources read but is no record: the replaced record
        // is found by its own source, not by its place in that list.
        let mut intake = Intake::for_patient("p1");
        add(
            &mut intake,
            json!({"resourceType": "CarePlan", "id": "plan", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p1"}}),
        );
        add(
            &mut intake,
            extent("a", "final", 6.0, "2026-12-03T10:00:00Z"),
        );
        add(
            &mut intake,
            json!({"resourceType": "Observation", "id": "walk", "status": "final",
                "code": {"coding": [{"system": LOCAL, "code": "pain-walking"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-03",
                "valueInteger": 0}),
        );
        add(
            &mut intake,
            extent("b", "amended", 3.0, "2026-12-04T10:00:00Z"),
        );
        let sources: Vec<&str> = intake.records.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(sources, ["Observation/b", "Observation/walk"]);
    }

    #[test]
    fn a_panels_members_are_read_as_its_components_and_counted_once() {
        let member = |id: &str, code: &str, value: (&str, Json)| {
            finding(id, code, "2026-12-05T07:00:00+13:00", value)
        };
        let mut intake = Intake::for_patient("p1");
        // Members before and after the panel, one named by an absolute URL, one pending.
        add(
            &mut intake,
            member("pain", "pain-running", ("valueInteger", json!(0))),
        );
        add(
            &mut intake,
            json!({"resourceType": "Observation", "id": "run", "status": "final",
                "code": {"coding": [{"system": LOCAL, "code": "running-session"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-05T07:00:00+13:00",
                "hasMember": [{"reference": "Observation/pain"},
                    {"reference": "https://ehr.example.org/fhir/Observation/speed/_history/2"},
                    {"reference": "Observation/later"}]}),
        );
        add(
            &mut intake,
            member("speed", "speed-work", ("valueBoolean", json!(true))),
        );
        localise_in_auckland(&mut intake);
        assert_eq!(intake.records.len(), 1, "{:?}", intake.records);
        let codes: Vec<&str> = intake.records[0]
            .components
            .iter()
            .map(|c| c.codes[0].code.as_str())
            .collect();
        assert_eq!(codes, ["pain-running", "speed-work"]);
        // A member sent on a later page is linked when the intake is localised again.
        add(
            &mut intake,
            member(
                "later",
                "run-distance",
                (
                    "valueQuantity",
                    json!({"value": 3, "unit": "km", "system": "http://unitsofmeasure.org", "code": "km"}),
                ),
            ),
        );
        localise_in_auckland(&mut intake);
        assert_eq!(intake.records.len(), 1);
        assert_eq!(intake.records[0].components.len(), 3);
    }

    #[test]
    fn members_that_are_not_parts_of_their_panel_stay_records_of_their_own() {
        let score = |id: &str, day: &str, value: i64| {
            finding(id, "pain-walking", day, ("valueInteger", json!(value)))
        };
        let mut intake = Intake::for_patient("p1");
        // A week's diary: its days are not the panel's day, and a second score of the
        // panel's day that says otherwise is evidence of its own.
        add(
            &mut intake,
            json!({"resourceType": "Observation", "id": "week", "status": "final",
                "code": {"coding": [{"system": LOCAL, "code": "walking-diary"}]},
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-12-05",
                "component": [{"code": {"coding": [{"system": LOCAL, "code": "pain-walking"}]}, "valueInteger": 0}],
                "hasMember": [{"reference": "Observation/d1"}, {"reference": "Observation/d2"},
                    {"reference": "Observation/d3"}]}),
        );
        add(&mut intake, score("d1", "2026-12-03", 4));
        add(&mut intake, score("d2", "2026-12-05", 6));
        add(&mut intake, score("d3", "2026-12-05", 0));
        localise_in_auckland(&mut intake);
        let sources: Vec<&str> = intake.records.iter().map(|r| r.source.as_str()).collect();
        // d3 repeats the panel's own 0 of its day: merged. d1 (another day) and d2 (another
        // value) stay.
        assert_eq!(
            sources,
            ["Observation/week", "Observation/d1", "Observation/d2"]
        );
        assert_eq!(intake.records[0].components.len(), 1);
    }

    #[test]
    fn a_later_version_of_the_same_resource_entered_in_error_retracts_it() {
        let mut intake = Intake::for_patient("p1");
        add(
            &mut intake,
            extent("a", "final", 3.0, "2026-12-03T10:00:00Z"),
        );
        add(
            &mut intake,
            extent("a", "entered-in-error", 3.0, "2026-12-05T10:00:00Z"),
        );
        assert_eq!(intake.records.len(), 1);
        assert_eq!(
            intake.records[0].status.as_deref(),
            Some("entered-in-error")
        );
    }

    #[test]
    fn a_contained_finding_of_a_retracted_report_is_not_read() {
        let mut intake = Intake::for_patient("p1");
        add(
            &mut intake,
            json!({"resourceType": "DiagnosticReport", "id": "dr", "status": "entered-in-error",
                "code": {"text": "Physiotherapy assessment"}, "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2026-12-05",
                "contained": [{"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": LOCAL, "code": "pain-night"}]},
                    "valueBoolean": true}]}),
        );
        assert!(intake
            .records
            .iter()
            .all(|r| !r.codes.iter().any(|c| c.code == "pain-night")));
    }

    #[test]
    fn two_unordered_copies_of_a_finding_that_disagree_both_stand() {
        let mut intake = Intake::for_patient("p1");
        let walk = |id: &str, pain: i64| {
            let mut o = finding(
                id,
                "pain-walking",
                "2026-12-02",
                ("valueInteger", json!(pain)),
            );
            o["identifier"] = json!([{"system": "https://ehr.example.org/obs", "value": "walk-1"}]);
            o
        };
        add(&mut intake, walk("clinic", 0));
        add(&mut intake, walk("app", 3));
        add(&mut intake, walk("again", 3));
        let sources: Vec<&str> = intake.records.iter().map(|r| r.source.as_str()).collect();
        assert_eq!(sources, ["Observation/clinic", "Observation/app"]);
    }

    #[test]
    fn a_yes_or_a_no_typed_in_exact_words_is_that_answer() {
        for (text, want) in [
            ("Y", Value::Boolean(true)),
            (" yes ", Value::Boolean(true)),
            ("N", Value::Boolean(false)),
            ("nil", Value::Boolean(false)),
            ("No pain", Value::Boolean(false)),
            ("3/10", Value::Integer(3)),
            ("unknown", Value::Other("string".into())),
            (
                "no pain at rest but wakes at night",
                Value::Other("string".into()),
            ),
        ] {
            assert_eq!(typed_value(text), want, "{text}");
        }
    }

    #[test]
    fn a_copy_entered_in_error_never_replaces_the_record_it_copies() {
        for order in [false, true] {
            let kept = extent("a", "final", 3.0, "2026-12-03T10:00:00Z");
            let retracted = extent("b", "entered-in-error", 3.0, "2026-12-05T10:00:00Z");
            let mut intake = Intake::for_patient("p1");
            let (one, two) = if order {
                (retracted, kept)
            } else {
                (kept, retracted)
            };
            add(&mut intake, one);
            add(&mut intake, two);
            assert_eq!(intake.records.len(), 1);
            assert_eq!(intake.records[0].source, "Observation/a", "order {order}");
        }
    }

    #[test]
    fn the_later_version_of_a_record_is_used_in_whichever_order_the_two_arrive() {
        let first = extent("a", "final", 6.0, "2026-12-03T10:00:00Z");
        let amended = extent("b", "amended", 3.0, "2026-12-04T10:00:00Z");
        for order in [[&first, &amended], [&amended, &first]] {
            let mut intake = Intake::default();
            for r in order {
                add(&mut intake, r.clone());
            }
            let values: Vec<_> = intake.records.iter().map(|r| r.value.clone()).collect();
            assert_eq!(
                values,
                vec![Some(Value::Quantity {
                    value: 3.0,
                    unit: Some("cm".into())
                })]
            );
            assert_eq!(intake.sources, vec!["Observation/b".to_owned()]);
            assert!(intake.problems.iter().any(|p| p.source == "Observation/a"));
        }
        // The same version sent twice is counted once, the first kept.
        let mut intake = Intake::default();
        add(&mut intake, first.clone());
        add(
            &mut intake,
            extent("c", "final", 6.0, "2026-12-03T10:00:00Z"),
        );
        assert_eq!(intake.sources, vec!["Observation/a".to_owned()]);
    }

    #[test]
    fn an_identifier_system_differing_only_in_the_case_of_its_host_is_one_system() {
        assert_eq!(
            uri_key("HTTPS://EHR.Example.org/Identifier/obs"),
            "https://ehr.example.org/Identifier/obs"
        );
        assert_eq!(uri_key("URN:oid:1.2.3"), "urn:oid:1.2.3");
        assert_eq!(uri_key("no-scheme"), "no-scheme");
        let mut intake = Intake::default();
        let mut other = extent("b", "final", 6.0, "2026-12-03T10:00:00Z");
        other["identifier"][0]["system"] = json!("HTTPS://EHR.EXAMPLE.ORG/obs");
        add(
            &mut intake,
            extent("a", "final", 6.0, "2026-12-03T10:00:00Z"),
        );
        add(&mut intake, other);
        assert_eq!(intake.records.len(), 1);
    }

    #[test]
    fn sessions_on_days_of_the_week_are_as_far_apart_as_the_closest_two() {
        let gap = |days: &[&str]| {
            let t: Timing = serde_json::from_value(json!({"repeat": {"dayOfWeek": days}})).unwrap();
            session_interval(&t)
        };
        let d = |v: f64| {
            Some(Value::Quantity {
                value: v,
                unit: Some("d".into()),
            })
        };
        assert_eq!(gap(&["mon", "wed", "fri"]), d(2.0));
        assert_eq!(gap(&["fri", "mon"]), d(3.0));
        assert_eq!(gap(&["sun", "mon"]), d(1.0));
        assert_eq!(gap(&["tue"]), d(7.0));
        // A weekly count beside the days: the closer reading.
        let both = |repeat: Json| {
            let t: Timing = serde_json::from_value(json!({ "repeat": repeat })).unwrap();
            session_interval(&t)
        };
        assert_eq!(
            both(
                json!({"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["sat", "sun"]})
            ),
            d(1.0)
        );
        assert_eq!(
            both(
                json!({"frequency": 3, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "wed", "fri"]})
            ),
            d(2.0)
        );
        assert_eq!(
            both(
                json!({"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "wed", "fri"]})
            ),
            d(2.0)
        );
        assert_eq!(
            both(
                json!({"frequency": 4, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "wed"]})
            ),
            d(1.75)
        );
        assert_eq!(
            both(
                json!({"frequency": 2, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "thu"]})
            ),
            d(0.5)
        );
    }

    #[test]
    fn a_contained_finding_is_read_with_its_containers_subject_and_date() {
        let report = |patient: &str| {
            json!({"resourceType": "DiagnosticReport", "id": "dr", "status": "final",
                "code": {"text": "Physiotherapy assessment"},
                "subject": {"reference": format!("Patient/{patient}")},
                "effectiveDateTime": "2026-12-05T11:00:00+13:00",
                "result": [{"reference": "#te"}],
                "contained": [{"resourceType": "Observation", "id": "te", "status": "final",
                    "code": {"coding": [{"system": LOCAL, "code": "tenderness-extent"}]},
                    "valueQuantity": {"value": 2.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}]})
        };
        let mut intake = Intake::for_patient("p1");
        add(&mut intake, report("p1"));
        let extent: Vec<&Record> = intake
            .records
            .iter()
            .filter(|r| r.codes.iter().any(|c| c.code == "tenderness-extent"))
            .collect();
        assert_eq!(extent.len(), 1, "{:?}", intake.records);
        assert_eq!(extent[0].source, "Observation/DiagnosticReport-dr#te");
        assert_eq!(extent[0].date, Some(time::macros::date!(2026 - 12 - 05)));
        // The container is about another patient: so is what it contains.
        let mut other = Intake::for_patient("p1");
        add(&mut other, report("p2"));
        assert!(other
            .records
            .iter()
            .all(|r| !r.codes.iter().any(|c| c.code == "tenderness-extent")));
    }

    #[test]
    fn an_imaging_study_keeps_its_series_body_sites_and_its_words() {
        let mut intake = Intake::for_patient("p1");
        add(
            &mut intake,
            json!({"resourceType": "ImagingStudy", "id": "img", "status": "available",
                "subject": {"reference": "Patient/p1"}, "started": "2026-12-01T13:30:00+13:00",
                "procedureCode": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "73721"}],
                    "text": "MRI right ankle"}],
                "series": [{"uid": "1.2", "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "MR"},
                    "bodySite": {"system": "http://snomed.info/sct", "code": "6685009"}}]}),
        );
        let r = &intake.records[0];
        assert_eq!(r.sites[0].code, "6685009");
        assert!(r.text.as_deref().unwrap().contains("mri right ankle"));
    }

    #[test]
    fn an_onset_known_as_a_period_is_its_last_day() {
        let mut intake = Intake::default();
        add(
            &mut intake,
            json!({"resourceType": "Condition", "id": "c",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M25.561"}]},
            "subject": {"reference": "Patient/p1"},
            "onsetPeriod": {"start": "2026-11-08", "end": "2026-11-24"}}),
        );
        assert_eq!(
            intake.records[0].date,
            Some(time::macros::date!(2026 - 11 - 24))
        );
    }
}
