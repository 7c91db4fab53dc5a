//! Decision → CDS Hooks cards. One phase card (patient-view, when the guideline applies), one
//! card per red flag, warning and pitfall; suggestions, override reasons and links as the
//! specification describes them. No field is ever null or empty (but `cards` itself).

use serde_json::{json, Value as Json};
use stride_fhir::careplan::ImagingSuggestion;
use stride_fhir::orders::DraftOrder;
use stride_guideline::decision::{
    Basis, Decision, Finding, Preliminary, Unassessed, HOLD_FOR_EVALUATION, INSUFFICIENT_DATA,
};
use stride_guideline::model::{CardText, Severity};
use stride_guideline::RuleSet;
use uuid::Uuid;

pub const OVERRIDE_SYSTEM: &str = "http://stride-cds.org/fhir/CodeSystem/override-reason";

const OVERRIDE_REASONS: &[(&str, &str)] = &[
    (
        "clinical-judgement",
        "Clinical judgement differs from the guideline",
    ),
    ("already-addressed", "Already addressed"),
    ("patient-declined", "Patient declined"),
    ("data-incorrect", "The data shown is incorrect or outdated"),
];

/// The words of an override reason Stride offers, by its code.
pub fn override_reason(code: &str) -> Option<&'static str> {
    OVERRIDE_REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| *d)
}

/// A card and the decision id it carries (stored so feedback can be tied to it).
pub struct Card {
    pub uuid: Uuid,
    pub decision_id: String,
    pub json: Json,
}

/// Where the card sends staff to review the draft CarePlan.
pub enum ReviewLink {
    /// The review page itself (staff sign in to Stride).
    Page(String),
    /// A SMART launch of Stride from the EHR (CDS Hooks 2.0 link type `smart`): the EHR hands
    /// `appContext`, naming the plan, back to Stride in its token response.
    Smart {
        launch_url: String,
        careplan: String,
    },
}

impl ReviewLink {
    fn link(&self) -> Json {
        const LABEL: &str = "Review the draft CarePlan";
        match self {
            ReviewLink::Page(url) => json!({"label": LABEL, "url": url, "type": "absolute"}),
            ReviewLink::Smart {
                launch_url,
                careplan,
            } => json!({
                "label": LABEL,
                "url": launch_url,
                "type": "smart",
                "appContext": json!({"careplan": careplan}).to_string(),
            }),
        }
    }
}

pub struct CardInputs<'a> {
    pub rs: &'a RuleSet,
    pub decision: &'a Decision,
    /// Where the guideline version is published (absolute).
    pub guideline_url: String,
    /// The draft CarePlan this call drafted (patient-view), offered to the EHR to create; `None`
    /// when no plan was drafted or the patient's draft already waits for review.
    pub careplan: Option<&'a Json>,
    /// Where staff read the draft (new or waiting).
    pub review: Option<ReviewLink>,
    /// The imaging orders the red flags suggest (coded where the rule set codes them).
    pub imaging: &'a [ImagingSuggestion],
    /// The orders being drafted (order-select, order-sign): an imaging order among them
    /// answers a red flag's call for imaging.
    pub drafted: &'a [DraftOrder],
    /// Resources Stride could not read: (source, why).
    pub unread: &'a [(String, String)],
    pub phase_card: bool,
}

/// Whether a drafted order is the imaging a red flag asks for: a study of the region the
/// rule set names (LOINC, SNOMED CT or CPT), or, where the rule set names none or the order
/// carries no code, an order whose category says imaging. A coded study of another region
/// (a chest radiograph) does not answer a knee or thigh red flag.
pub fn answers_imaging(rs: &RuleSet, o: &DraftOrder) -> bool {
    // A study whose body site or words are of another region (an ankle MRI coded for any
    // lower-limb joint) answers no knee or thigh red flag, however it is coded (D84).
    let label = o.label.as_deref().map(str::to_lowercase);
    if rs.imaging_elsewhere(&o.sites, label.as_deref()) {
        return false;
    }
    let region = rs.imaging_codes();
    if region.is_empty() || o.codes.is_empty() {
        return o.imaging;
    }
    o.codes.iter().any(|c| region.contains(&c))
}

pub fn cards(inp: &CardInputs<'_>) -> Vec<Card> {
    let d = inp.decision;
    let mut out = Vec::new();
    if inp.phase_card && d.applies {
        if let Some(c) = phase_card(inp) {
            out.push(c);
        }
    }
    // On an order hook the cards concern the orders: the findings patient-view showed are
    // repeated when a service request is being drafted (imaging, running, a referral), not on
    // a call that drafts only medications (which are not read as orders here). Pitfalls about
    // the drafted orders always show.
    let concerned = inp.phase_card || !inp.drafted.is_empty();
    // One imaging order for however many flags fired, and none when the clinician is already
    // drafting one: a second order is noise, and the draft answers the red flag.
    let mut imaging_offered = inp.drafted.iter().any(|o| answers_imaging(inp.rs, o));
    for f in d.red_flags.iter().filter(|_| concerned) {
        let offer = f.suggest_imaging && !imaging_offered;
        imaging_offered |= offer;
        out.push(finding_card(inp, f, offer));
    }
    for f in d.warnings.iter().filter(|_| concerned).chain(&d.pitfalls) {
        out.push(finding_card(inp, f, false));
    }
    // On an order hook there is no phase card to name the phase notes (running during rest):
    // each is a card of its own, topic its id.
    if !inp.phase_card {
        for f in &d.phase_notes {
            out.push(finding_card(inp, f, false));
        }
    }
    // A red flag that can be neither confirmed nor ruled out, or that only a preliminary
    // record shows, is a warning of its own on every call, never a line inside another card.
    // They come after what fired, whose cards keep their places.
    if d.applies && concerned {
        for u in &d.unassessed_red_flags {
            out.push(unassessed_card(inp, u));
        }
    }
    for p in d.preliminary_red_flags.iter().filter(|_| concerned) {
        out.push(preliminary_card(inp, p));
    }
    out
}

/// A rule's clinical name and citations, for a card about it that is not its own.
fn named(inp: &CardInputs<'_>, id: &str) -> (String, Vec<u32>) {
    inp.rs.flag_or_pitfall(id).map_or_else(
        || (id.to_owned(), Vec::new()),
        |r| (r.finding_name().to_owned(), r.card.cite.clone()),
    )
}

fn unassessed_card(inp: &CardInputs<'_>, u: &Unassessed) -> Card {
    let (_, cite) = named(inp, &u.id);
    let name = u.name(inp.rs);
    let text = CardText {
        summary: format!("Not ruled out: {name} — record the findings below"),
        detail: String::new(),
        cite,
    };
    let mut detail = String::from(
        "This red flag can be neither confirmed nor ruled out with the records Stride has. \
         The patient does not progress until it is assessed. Record:\n",
    );
    for n in &u.needs {
        detail.push_str(&format!("\n- {} — {}", n.text, n.reason));
    }
    let (uuid, card) = base_card(inp, &u.id, &name, "warning", &text, detail);
    Card {
        uuid,
        decision_id: u.id.clone(),
        json: card,
    }
}

fn preliminary_card(inp: &CardInputs<'_>, p: &Preliminary) -> Card {
    let (name, cite) = named(inp, &p.id);
    let text = CardText {
        summary: format!("Recorded as preliminary — confirm: {name}"),
        detail: String::new(),
        cite,
    };
    // The records in words (finding, value, day); their ids stay in the audit entry.
    let said: Vec<String> = if p.basis.is_empty() {
        p.sources.clone()
    } else {
        p.basis.iter().map(Basis::describe).collect()
    };
    let detail = format!(
        "A preliminary record would raise this red flag. Preliminary results do not count \
         until they are final: confirm or correct them.\n\nPreliminary: {}.",
        said.join("; ")
    );
    let (uuid, card) = base_card(inp, &p.id, &name, "warning", &text, detail);
    Card {
        uuid,
        decision_id: p.id.clone(),
        json: card,
    }
}

fn indicator(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// "Based on: Pain at night: yes, recorded 3 Dec 2026." — the findings a card rests on, with
/// their values and days; resource ids stay in the audit entry.
fn based_on(basis: &[Basis]) -> Option<String> {
    (!basis.is_empty()).then(|| {
        let said: Vec<String> = basis.iter().map(Basis::describe).collect();
        format!("Based on: {}.", said.join("; "))
    })
}

/// Renumbers the citations of a card's texts in the order a reader meets them ([1] first),
/// then the card's other cited sources; returns the rule set's source numbers in that order.
/// A number that names no source of the rule set is dropped, so every number on a card
/// resolves to a listed source.
fn cite_in_order(rs: &RuleSet, texts: [&mut String; 2], cite: &[u32]) -> Vec<u32> {
    let known = |n: u32| rs.doc.sources.iter().any(|s| s.n == n);
    let mut order: Vec<u32> = Vec::new();
    let shown = |n: u32, order: &mut Vec<u32>| -> usize {
        match order.iter().position(|&m| m == n) {
            Some(i) => i + 1,
            None => {
                order.push(n);
                order.len()
            }
        }
    };
    for text in texts {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find(']');
            let inner = close.map(|c| &after[..c]);
            match inner.filter(|i| {
                !i.trim().is_empty()
                    && i.chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ')
            }) {
                Some(i) => {
                    let numbers: Vec<String> = i
                        .split(',')
                        .filter_map(|n| n.trim().parse::<u32>().ok())
                        .filter(|&n| known(n))
                        .map(|n| shown(n, &mut order).to_string())
                        .collect();
                    if numbers.is_empty() {
                        // Nothing left to cite: drop the bracket and the space before it.
                        while out.ends_with(' ') {
                            out.pop();
                        }
                    } else {
                        out.push_str(&format!("[{}]", numbers.join(", ")));
                    }
                    rest = &after[i.len() + 1..];
                }
                None => {
                    out.push('[');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        *text = out;
    }
    for &n in cite.iter().filter(|&&n| known(n)) {
        shown(n, &mut order);
    }
    order
}

/// The cited sources as a bullet list labelled `[n]` in the card's own numbering: an ordered
/// Markdown list would be renumbered 1, 2, 3 … by the EHR's renderer anyway, and a bullet
/// list keeps the label the text cites.
fn sources_md(rs: &RuleSet, order: &[u32]) -> String {
    let lines: Vec<String> = order
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let s = rs.doc.sources.iter().find(|s| s.n == *n)?;
            Some(format!(
                "- [{}] {} — *{}*, {}",
                i + 1,
                s.title,
                s.publisher,
                s.year
            ))
        })
        .collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("\n\n**Sources**\n\n{}", lines.join("\n"))
    }
}

fn base_card(
    inp: &CardInputs<'_>,
    id: &str,
    display: &str,
    indicator: &str,
    text: &CardText,
    detail: String,
) -> (Uuid, Json) {
    let uuid = stride_store::new_row_id();
    let mut summary = if text.summary.is_empty() {
        display.to_owned()
    } else {
        text.summary.clone()
    };
    let mut detail = detail;
    let order = cite_in_order(inp.rs, [&mut summary, &mut detail], &text.cite);
    // The specification's limit (under 140 characters), after renumbering.
    let summary: String = summary.chars().take(139).collect();
    let card = json!({
        "uuid": uuid.to_string(),
        "summary": summary,
        "detail": format!("{detail}{}", sources_md(inp.rs, &order)),
        "indicator": indicator,
        "source": {
            "label": format!("Stride — {} {}", inp.rs.doc.title, inp.rs.doc.version),
            "url": inp.guideline_url,
            "topic": {"system": inp.rs.doc.decision_system, "code": id, "display": display},
        },
        "overrideReasons": OVERRIDE_REASONS.iter().map(|(c, d)| json!({"system": OVERRIDE_SYSTEM, "code": c, "display": d})).collect::<Vec<_>>(),
        "links": [
            {"label": format!("Guideline {} {}", inp.rs.doc.id, inp.rs.doc.version), "url": inp.guideline_url, "type": "absolute"},
            // The DSI source attributes, in words (developer, funding, dates, inputs).
            {"label": "About this guidance (source attributes)", "url": format!("{}/about", inp.guideline_url), "type": "absolute"},
        ],
    });
    (uuid, card)
}

/// A suggestion to create `resource`. The resource is cloned in, not put through `json!`,
/// which would serialise the whole tree into a new one.
fn create(label: &str, description: String, resource: &Json) -> Json {
    let mut action = json!({"type": "create", "description": description});
    action["resource"] = resource.clone();
    let mut suggestion = json!({
        "label": label,
        "uuid": Uuid::new_v4().to_string(),
        "isRecommended": true,
    });
    suggestion["actions"] = Json::Array(vec![action]);
    suggestion
}

fn with_suggestions(mut card: Json, suggestions: Vec<Json>) -> Json {
    if !suggestions.is_empty() {
        card["suggestions"] = Json::Array(suggestions);
        card["selectionBehavior"] = json!("at-most-one");
    }
    card
}

fn phase_card(inp: &CardInputs<'_>) -> Option<Card> {
    let d = inp.decision;
    let doc = &inp.rs.doc;
    let phase_id = d.phase.as_deref()?;
    let phase = doc.phases.iter().find(|p| p.id == phase_id);
    let (mut text, title, mut level) = match (phase, phase_id) {
        (Some(p), _) => (p.card.clone(), p.title.clone(), Severity::Info),
        (None, HOLD_FOR_EVALUATION) => (
            doc.hold.clone().unwrap_or_else(|| CardText {
                summary: "Progression on hold: a red flag needs evaluation first".into(),
                detail: "A red flag is present; do not progress until it has been evaluated."
                    .into(),
                cite: vec![],
            }),
            "Hold for evaluation".to_owned(),
            Severity::Warning,
        ),
        (None, INSUFFICIENT_DATA) => (
            doc.insufficient_data.clone(),
            "Insufficient data".to_owned(),
            Severity::Warning,
        ),
        _ => return None,
    };
    let mut detail = text.detail.clone();
    if let Some(r) = &d.regression {
        detail.push_str(&format!("\n\n**{}** — {}", r.summary, r.detail));
    }
    // Pitfalls without a decision id of their own are told here, and weigh on the card.
    for n in &d.phase_notes {
        detail.push_str(&format!("\n\n**{}** — {}", n.summary, n.detail));
        if let Some(b) = based_on(&n.basis) {
            detail.push_str(&format!(" {b}"));
        }
        for c in &n.cite {
            if !text.cite.contains(c) {
                text.cite.push(*c);
            }
        }
        level = level.max(n.severity);
    }
    if !d.activities.is_empty() || !d.rehab.is_empty() {
        detail.push_str("\n\n**Plan**\n");
        for a in d.activities.iter().chain(&d.rehab) {
            detail.push_str(&format!("\n- {}", a.text));
        }
    }
    if !d.missing.is_empty() {
        detail.push_str("\n\n**Missing or unusable data** (record it to place the phase):\n");
        for m in &d.missing {
            detail.push_str(&format!("\n- {} — {}", m.text, m.reason));
        }
    }
    if !d.unassessed_pitfalls.is_empty() {
        detail.push_str("\n\n**Pitfalls that could not be checked** (record to check them):\n");
        for u in &d.unassessed_pitfalls {
            let name = u.name(inp.rs);
            let needs: Vec<String> = u
                .needs
                .iter()
                .map(|n| format!("{} ({})", n.text, n.reason))
                .collect();
            detail.push_str(&format!("\n- {name}: {}", needs.join("; ")));
        }
    }
    if let Some(note) = &d.stale_episode {
        detail.push_str(&format!("\n\n**Stale episode?** {note}"));
    }
    if !d.episodes.is_empty() {
        detail.push_str(
            "\n\n**Open episodes** (running stops while any is in rest; the phase follows the newest):\n",
        );
        for e in &d.episodes {
            detail.push_str(&format!("\n- {e}"));
        }
    }
    if !d.ignored.is_empty() || !inp.unread.is_empty() {
        detail.push_str("\n\n**Not used**:\n");
        for i in &d.ignored {
            detail.push_str(&format!(
                "\n- {} — {}",
                record_words(&i.source, i.date),
                i.reason
            ));
        }
        for (source, why) in inp.unread {
            detail.push_str(&format!("\n- {} — {why}", record_words(source, None)));
        }
    }
    let (uuid, mut card) = base_card(inp, phase_id, &title, indicator(level), &text, detail);
    if let Some(review) = &inp.review {
        card["links"]
            .as_array_mut()
            .expect("links")
            .push(review.link());
    }
    let suggestions = inp
        .careplan
        .map(|plan| {
            vec![create(
                "Create the draft CarePlan for clinic review",
                format!("Draft CarePlan: {title}"),
                plan,
            )]
        })
        .unwrap_or_default();
    Some(Card {
        uuid,
        decision_id: phase_id.to_owned(),
        json: with_suggestions(card, suggestions),
    })
}

fn finding_card(inp: &CardInputs<'_>, f: &Finding, offer_imaging: bool) -> Card {
    let text = CardText {
        summary: f.summary.clone(),
        detail: f.detail.clone(),
        cite: f.cite.clone(),
    };
    let mut detail = f.detail.clone();
    if !f.conflicts.is_empty() {
        detail.push_str("\n\n**Conflicting records** (safety first: the record that raises the red flag counts):\n");
        for c in &f.conflicts {
            detail.push_str(&format!("\n- {c}"));
        }
    }
    if let Some(since) = f.since {
        let day = stride_guideline::display::day(since);
        detail.push_str(&format!(
            "\n\n**Not evaluated:** recorded on {day}. A later record alone does not clear a \
             red flag that calls for imaging: record the imaging of the region, or review the plan."
        ));
    }
    if let Some(b) = based_on(&f.basis) {
        detail.push_str(&format!("\n\n{b}"));
    }
    if f.suggest_imaging {
        let imaging: Vec<String> = inp
            .drafted
            .iter()
            .filter(|o| answers_imaging(inp.rs, o))
            .map(order_words)
            .collect();
        if !imaging.is_empty() {
            detail.push_str(&format!(
                "\n\n**Imaging already drafted:** {} answers this red flag's call for imaging; \
                 no second order is suggested. Check that it covers the painful region.",
                imaging.join(", ")
            ));
        }
    }
    // A draft order the finding advises against is named by what it orders (its id is in the
    // suggestion that removes it, below, not in the text).
    let against: Vec<String> = inp
        .drafted
        .iter()
        .filter(|o| f.evidence.contains(&o.reference))
        .map(order_words)
        .collect();
    if !against.is_empty() {
        detail.push_str(&format!(
            "\n\n**About the draft order{}:** {}",
            if against.len() == 1 { "" } else { "s" },
            against.join(", ")
        ));
    }
    let (uuid, card) = base_card(inp, &f.id, &f.summary, indicator(f.severity), &text, detail);
    let mut suggestions = Vec::new();
    if offer_imaging {
        // Every order the flags that fired suggest, on the first one's card: the clinician
        // picks one (selectionBehavior at-most-one); the first named is the one recommended.
        for (i, s) in inp.imaging.iter().enumerate() {
            let mut suggestion = create(
                &s.label,
                format!("Imaging for a red flag: {}", inp.rs.doc.title),
                &s.resource,
            );
            suggestion["isRecommended"] = json!(i == 0);
            suggestions.push(suggestion);
        }
    }
    // Draft orders the finding rests on can be removed from the order list (LIPUS).
    for order in f
        .evidence
        .iter()
        .filter(|e| e.starts_with("ServiceRequest/") || e.starts_with("DeviceRequest/"))
    {
        suggestions.push(json!({
            "label": format!("Remove the draft order {order}"),
            "uuid": Uuid::new_v4().to_string(),
            "isRecommended": true,
            "actions": [{"type": "delete", "description": format!("Delete {order}: not recommended by the guideline"), "resourceId": order}],
        }));
    }
    Card {
        uuid,
        decision_id: f.id.clone(),
        json: with_suggestions(card, suggestions),
    }
}

/// A record as a clinician is told of it: what kind of record and its day, never its id (ids
/// stay in the folded trace and the audit).
pub fn record_words(source: &str, date: Option<time::Date>) -> String {
    let kind = match source.split('/').next().unwrap_or("") {
        "Observation" => "An observation",
        "Condition" => "A condition",
        "ServiceRequest" => "An order",
        "MedicationRequest" => "A medication order",
        "DiagnosticReport" => "A report",
        "ImagingStudy" => "An imaging study",
        "CarePlan" => "A care plan",
        "Patient" => "A patient record",
        "Encounter" => "An encounter",
        _ => "A record",
    };
    match date {
        Some(d) => format!("{kind} of {}", stride_guideline::display::day(d)),
        None => kind.to_owned(),
    }
}

/// A draft order as a clinician is told of it: what it orders, as the EHR wrote it.
fn order_words(o: &stride_fhir::orders::DraftOrder) -> String {
    if let Some(l) = &o.label {
        return format!("the draft order \"{l}\"");
    }
    // No text: its code, which a clinician can look up (an id they cannot).
    match o.codes.first() {
        Some(c) => {
            let system = match c.system.as_str() {
                "http://www.ama-assn.org/go/cpt" => "CPT ",
                "http://loinc.org" => "LOINC ",
                "http://snomed.info/sct" => "SNOMED CT ",
                _ => "",
            };
            format!("the draft order coded {system}{}", c.code)
        }
        None => "a draft order that does not say what it orders".to_owned(),
    }
}
