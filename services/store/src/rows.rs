//! One mapping from a stored row to its record, for both backends. The backends' row mappers
//! were written twice, about 250 lines that had to change together (issue 32); what differs is
//! only how a column is kept: SQLite keeps ids and JSON as text, PostgreSQL as UUID and JSONB,
//! and the audit log's time column has another name. `Columns` says that per backend; each
//! record is read once, here.

use serde_json::Value as Json;
use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::audit::Action;
use crate::{
    Activation, AuditEntry, AuditFacts, CardOutcome, CarePlanRecord, FeedbackRecord, FeedbackRow,
    HookAnswer, ImpactReport, NewAuditEntry, Overridden, SignOff, StaffSession, StoreError,
};

/// A row of either backend, read column by column.
pub(crate) trait Columns {
    /// The audit log's microseconds column.
    const RECORDED_US: &'static str;
    fn text(&self, c: &str) -> Result<String, StoreError>;
    fn opt_text(&self, c: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, c: &str) -> Result<i64, StoreError>;
    fn int32(&self, c: &str) -> Result<i32, StoreError>;
    fn flag(&self, c: &str) -> Result<bool, StoreError>;
    fn time(&self, c: &str) -> Result<OffsetDateTime, StoreError>;
    fn uuid(&self, c: &str) -> Result<Uuid, StoreError>;
    fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>, StoreError>;
    fn opt_json(&self, c: &str) -> Result<Option<Json>, StoreError>;
    /// A text SQLite may keep compressed (`sqlite::packed`): an audit entry's facts, a hook
    /// answer. An error when the stored value cannot be read as text.
    fn opt_unpacked(&self, c: &str) -> Result<Option<String>, StoreError>;

    fn json(&self, c: &str) -> Result<Json, StoreError> {
        self.opt_json(c)?
            .ok_or_else(|| StoreError::Corrupt(format!("{c} is empty")))
    }
}

fn corrupt(e: impl ToString) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The columns both backends read alike.
macro_rules! same_columns {
    () => {
        fn text(&self, c: &str) -> Result<String, StoreError> {
            Ok(self.try_get(c)?)
        }
        fn opt_text(&self, c: &str) -> Result<Option<String>, StoreError> {
            Ok(self.try_get(c)?)
        }
        fn int(&self, c: &str) -> Result<i64, StoreError> {
            Ok(self.try_get(c)?)
        }
        fn int32(&self, c: &str) -> Result<i32, StoreError> {
            Ok(self.try_get(c)?)
        }
        fn flag(&self, c: &str) -> Result<bool, StoreError> {
            Ok(self.try_get(c)?)
        }
        fn time(&self, c: &str) -> Result<OffsetDateTime, StoreError> {
            Ok(self.try_get(c)?)
        }
    };
}

/// The columns SQLite keeps as text (ids and JSON), read alike by both of its drivers.
macro_rules! text_kept_columns {
    () => {
        fn uuid(&self, c: &str) -> Result<Uuid, StoreError> {
            Uuid::parse_str(&self.text(c)?).map_err(corrupt)
        }
        fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>, StoreError> {
            self.opt_text(c)?
                .map(|t| Uuid::parse_str(&t).map_err(corrupt))
                .transpose()
        }
        fn opt_json(&self, c: &str) -> Result<Option<Json>, StoreError> {
            self.opt_text(c)?
                .map(|t| serde_json::from_str(&t).map_err(corrupt))
                .transpose()
        }
    };
}

impl Columns for sqlx::sqlite::SqliteRow {
    const RECORDED_US: &'static str = "recorded_at";
    same_columns!();
    text_kept_columns!();
    fn opt_unpacked(&self, c: &str) -> Result<Option<String>, StoreError> {
        use sqlx::{Decode, TypeInfo, ValueRef};
        let raw = self.try_get_raw(c)?;
        if raw.is_null() {
            return Ok(None);
        }
        let blob = raw.type_info().name() == "BLOB";
        let bytes = <Vec<u8> as Decode<sqlx::Sqlite>>::decode(raw).map_err(corrupt)?;
        let value = if blob {
            rusqlite::types::ValueRef::Blob(&bytes)
        } else {
            rusqlite::types::ValueRef::Text(&bytes)
        };
        crate::sqlite::packed::unpack(value)
            .map(Some)
            .ok_or_else(|| corrupt(format!("{c} cannot be read")))
    }
}

/// A row read in place (`sqlite::inplace`), from the same tables sqlx wrote: times as sqlx
/// writes them (RFC 3339 text; the time columns are declared TEXT, where sqlx reads nothing
/// else either), booleans as integers, ids and JSON as text.
impl Columns for rusqlite::Row<'_> {
    const RECORDED_US: &'static str = "recorded_at";
    fn text(&self, c: &str) -> Result<String, StoreError> {
        self.get(c).map_err(crate::sqlite::read_error)
    }
    fn opt_text(&self, c: &str) -> Result<Option<String>, StoreError> {
        self.get(c).map_err(crate::sqlite::read_error)
    }
    fn int(&self, c: &str) -> Result<i64, StoreError> {
        self.get(c).map_err(crate::sqlite::read_error)
    }
    fn int32(&self, c: &str) -> Result<i32, StoreError> {
        self.get(c).map_err(crate::sqlite::read_error)
    }
    fn flag(&self, c: &str) -> Result<bool, StoreError> {
        self.get(c).map_err(crate::sqlite::read_error)
    }
    fn time(&self, c: &str) -> Result<OffsetDateTime, StoreError> {
        use rusqlite::types::ValueRef;
        let unreadable = || corrupt(format!("{c} is not a time"));
        match self.get_ref(c).map_err(crate::sqlite::read_error)? {
            ValueRef::Text(t) => {
                let t = std::str::from_utf8(t).map_err(|_| unreadable())?;
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| unreadable())
            }
            _ => Err(unreadable()),
        }
    }
    fn opt_unpacked(&self, c: &str) -> Result<Option<String>, StoreError> {
        match self.get_ref(c).map_err(crate::sqlite::read_error)? {
            rusqlite::types::ValueRef::Null => Ok(None),
            value => crate::sqlite::packed::unpack(value)
                .map(Some)
                .ok_or_else(|| corrupt(format!("{c} cannot be read"))),
        }
    }
    text_kept_columns!();
}

impl Columns for sqlx::postgres::PgRow {
    const RECORDED_US: &'static str = "recorded_us";
    same_columns!();
    fn opt_unpacked(&self, c: &str) -> Result<Option<String>, StoreError> {
        self.opt_text(c)
    }
    fn uuid(&self, c: &str) -> Result<Uuid, StoreError> {
        Ok(self.try_get(c)?)
    }
    fn opt_uuid(&self, c: &str) -> Result<Option<Uuid>, StoreError> {
        Ok(self.try_get(c)?)
    }
    fn opt_json(&self, c: &str) -> Result<Option<Json>, StoreError> {
        Ok(self.try_get(c)?)
    }
}

/// A row's `tenant`, as it was written.
fn tenant<R: Columns>(r: &R) -> Result<crate::TenantId, StoreError> {
    Ok(crate::TenantId::stored(r.text("tenant")?))
}

/// A `careplans` row.
pub(crate) fn careplan<R: Columns>(r: &R) -> Result<CarePlanRecord, StoreError> {
    Ok(CarePlanRecord {
        id: r.uuid("id")?,
        tenant: tenant(r)?,
        patient_ref: crate::PatientRef::stored(r.text("patient_ref")?),
        status: careplan_status(r)?,
        version: r.int32("version")?,
        rule_set_id: r.text("rule_set_id")?,
        rule_set_version: r.text("rule_set_version")?,
        phase: r.text("phase")?,
        red_flag: r.flag("red_flag")?,
        resource: r.json("resource")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        patient: r.opt_json("patient")?,
    })
}

/// A careplans row's `status`; any other word is a corrupt row.
fn careplan_status<R: Columns>(r: &R) -> Result<crate::CarePlanStatus, StoreError> {
    r.text("status")?
        .parse()
        .map_err(|e: crate::NotOneOf| corrupt(format!("careplans.status {e}")))
}

/// The rows of `Store::patient_plans`: an approved plan and pending drafts, told by status.
pub(crate) fn patient_plans<R: Columns>(rows: &[R]) -> Result<crate::PatientPlans, StoreError> {
    let mut plans = crate::PatientPlans::default();
    for r in rows {
        patient_plan(&mut plans, r)?;
    }
    Ok(plans)
}

/// One row of `Store::patient_plans`, added to `plans`: its `id`, `status`, `phase`,
/// `updated_at` and `decision_key`, and a draft's `resource` as text.
pub(crate) fn patient_plan<R: Columns>(
    plans: &mut crate::PatientPlans,
    r: &R,
) -> Result<(), StoreError> {
    match (careplan_status(r)?, r.opt_text("decision_key")?) {
        (crate::CarePlanStatus::Active, _) => {
            plans.approved = Some(crate::ApprovedPlan {
                id: r.uuid("id")?,
                phase: r.text("phase")?,
                updated_at: r.time("updated_at")?,
            })
        }
        (crate::CarePlanStatus::Draft, Some(decision_key)) => {
            plans.drafts.push(crate::PendingDraft {
                decision_key,
                id: r.uuid("id")?,
                resource: r.text("resource")?,
            })
        }
        (status, key) => {
            return Err(corrupt(format!(
                "careplans row read as the approved plan or a keyed draft is neither \
                 (status {}, {})",
                status.as_str(),
                if key.is_some() { "a key" } else { "no key" }
            )))
        }
    }
    Ok(())
}

/// An `audit_entries` row, with its chain and seal.
/// A row whose facts cannot be read is named (`StoreError::UnreadableEntry`), so that a chain
/// check reports it as the broken link it is, not as a failure of the check.
pub(crate) fn audit_entry<R: Columns>(r: &R) -> Result<AuditEntry, StoreError> {
    let list = |c: &str| -> Result<Vec<String>, StoreError> {
        serde_json::from_value(r.json(c)?).map_err(corrupt)
    };
    let (id, tenant, seq) = (r.uuid("id")?, tenant(r)?, r.int("seq")?);
    // What was edited is not quoted: a row changed in the database may hold anything.
    let unreadable = |why: &str| {
        StoreError::UnreadableEntry(crate::Broken {
            tenant: tenant.clone(),
            seq,
            id: id.to_string(),
            reason: why.to_owned(),
        })
    };
    Ok(AuditEntry {
        entry: NewAuditEntry {
            id,
            tenant: tenant.clone(),
            recorded_us: r.int(R::RECORDED_US)?,
            action: Action::read(r.text("action")?),
            outcome: r.text("outcome")?,
            caller_issuer: r.opt_text("caller_issuer")?,
            caller_subject: r.opt_text("caller_subject")?,
            hook: r.opt_text("hook")?,
            hook_instance: r.opt_text("hook_instance")?,
            service_id: r.opt_text("service_id")?,
            patient_ref: r.opt_text("patient_ref")?.map(crate::PatientRef::stored),
            as_of: r.opt_text("as_of")?,
            facts: r
                .opt_unpacked("facts")
                .map_err(|_| unreadable("its facts cannot be read (edited)"))?
                .map(|t| {
                    AuditFacts::from_stored(&t)
                        .map_err(|_| unreadable("its facts are not JSON (edited)"))
                })
                .transpose()?,
            rule_set_id: r.opt_text("rule_set_id")?,
            rule_set_version: r.opt_text("rule_set_version")?,
            rule_set_hash: r.opt_text("rule_set_hash")?,
            decision_ids: list("decision_ids")?,
            card_uuids: list("card_uuids")?,
            careplan_id: r.opt_uuid("careplan_id")?,
            trace_id: r.opt_text("trace_id")?,
            details: r.opt_json("details")?.unwrap_or(Json::Null),
        },
        seq,
        input_digest: r.opt_text("input_digest")?,
        prev_hash: r.text("prev_hash")?,
        hash: r.text("hash")?,
        seal: match (r.opt_text("seal_kid")?, r.opt_text("seal")?) {
            (Some(kid), Some(sig)) => Some(crate::seal::Seal { kid, sig }),
            _ => None,
        },
    })
}

/// A feedback export row.
pub(crate) fn feedback<R: Columns>(r: &R) -> Result<FeedbackRow, StoreError> {
    Ok(FeedbackRow {
        card_uuid: r.text("card_uuid")?,
        decision_id: r.opt_text("decision_id")?,
        rule_set_id: r.opt_text("rule_set_id")?,
        rule_set_version: r.opt_text("rule_set_version")?,
        tenant: tenant(r)?,
        service_id: r.text("service_id")?,
        outcome: r.text("outcome")?,
        details: r.json("details")?,
        outcome_timestamp: r.time("outcome_timestamp")?,
        user: r.opt_text("user")?,
        encounter: r.opt_text("encounter")?,
    })
}

/// One feedback on a card, as recorded.
pub(crate) fn feedback_record<R: Columns>(r: &R) -> Result<FeedbackRecord, StoreError> {
    Ok(FeedbackRecord {
        card_uuid: r.text("card_uuid")?,
        known_card: r.flag("known_card")?,
        outcome: r.text("outcome")?,
        details: r.json("details")?,
        outcome_timestamp: r.time("outcome_timestamp")?,
    })
}

/// An override of a card about a patient, when it gave a reason (a clinician's decision on
/// the red flag it raised).
pub(crate) fn overridden<R: Columns>(r: &R) -> Result<Option<Overridden>, StoreError> {
    if !crate::overridden_with_reason(&r.json("details")?) {
        return Ok(None);
    }
    Ok(Some(Overridden {
        decision_id: r.text("decision_id")?,
        at: r.time("outcome_timestamp")?,
    }))
}

/// A page of `audit_entries` rows, each with where it ends the page so far (for the next
/// page's start). A row that cannot be read is passed on as its error; one whose keys cannot
/// be read ends the read.
pub(crate) fn keyed_audit_entries<R: Columns>(
    rows: &[R],
) -> Result<Vec<(crate::stream::After, Result<AuditEntry, StoreError>)>, StoreError> {
    rows.iter()
        .map(|r| {
            let after = crate::stream::After {
                recorded_us: r.int(R::RECORDED_US)?,
                tenant: tenant(r)?,
                seq: r.int("seq")?,
                id: r.uuid("id")?,
            };
            Ok((after, audit_entry(r)))
        })
        .collect()
}

/// Card outcomes from both backends' two queries, rolled up or recounted alike: `counts`, one
/// row per rule set, version, decision id, tenant and period (`shown`, `accepted`,
/// `overridden`, `without_feedback`), and `reasons`, the overridden cards of each row by
/// `reason` (`n`).
pub(crate) fn card_outcomes<R: Columns>(
    counts: &[R],
    reasons: &[R],
) -> Result<Vec<CardOutcome>, StoreError> {
    let key = |r: &R| -> Result<[String; 5], StoreError> {
        Ok([
            r.opt_text("rule_set_id")?.unwrap_or_default(),
            r.opt_text("rule_set_version")?.unwrap_or_default(),
            r.text("decision_id")?,
            r.text("tenant")?,
            r.text("period")?,
        ])
    };
    let mut out = Vec::with_capacity(counts.len());
    for r in counts {
        let [rule_set_id, rule_set_version, decision_id, tenant, period] = key(r)?;
        out.push(CardOutcome {
            rule_set_id,
            rule_set_version,
            decision_id,
            tenant: crate::TenantId::stored(tenant),
            period,
            shown: r.int("shown")?,
            accepted: r.int("accepted")?,
            overridden: r.int("overridden")?,
            without_feedback: r.int("without_feedback")?,
            reasons: Vec::new(),
        });
    }
    for r in reasons {
        let k = key(r)?;
        let row = out.iter_mut().find(|o| {
            [
                o.rule_set_id.as_str(),
                &o.rule_set_version,
                &o.decision_id,
                o.tenant.as_str(),
                &o.period,
            ] == [&k[0], &k[1], &k[2], &k[3], &k[4]]
        });
        if let Some(o) = row {
            o.reasons.push((r.text("reason")?, r.int("n")?));
        }
    }
    Ok(out)
}

/// A `hook_answers` row.
pub(crate) fn hook_answer<R: Columns>(r: &R) -> Result<HookAnswer, StoreError> {
    Ok(HookAnswer {
        hook_instance: r.text("hook_instance")?,
        tenant: tenant(r)?,
        caller_issuer: r.text("caller_issuer")?,
        fingerprint: r.text("fingerprint")?,
        response: r
            .opt_unpacked("response")?
            .ok_or_else(|| corrupt("response is empty"))?,
        created_at: r.time("created_at")?,
    })
}

/// A `staff_logins` row.
pub(crate) fn pending_login<R: Columns>(r: &R) -> Result<crate::PendingLogin, StoreError> {
    Ok(crate::PendingLogin {
        state_hash: r.text("state_hash")?,
        verifier: r.text("verifier")?,
        nonce: r.text("nonce")?,
        next_path: r.text("next_path")?,
        expires_at: r.int("expires_at")?,
        smart_iss: r.opt_text("smart_iss")?,
    })
}

/// A `staff_sessions` row (scopes are stored space-separated).
pub(crate) fn staff_session<R: Columns>(r: &R) -> Result<StaffSession, StoreError> {
    Ok(StaffSession {
        id_hash: r.text("id_hash")?,
        issuer: r.text("issuer")?,
        subject: r.text("subject")?,
        tenant: tenant(r)?,
        all_tenants: r.flag("all_tenants")?,
        scopes: r
            .text("scopes")?
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        csrf: r.text("csrf")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        patient: r.opt_text("patient")?,
        fhir_user: r.opt_text("fhir_user")?,
    })
}

/// The governance tables keep their ids as text on both backends.
fn text_id<R: Columns>(r: &R) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&r.text("id")?).map_err(corrupt)
}

/// An `impact_reports` row.
pub(crate) fn impact_report<R: Columns>(r: &R) -> Result<ImpactReport, StoreError> {
    Ok(ImpactReport {
        impact_hash: r.text("impact_hash")?,
        guideline_id: r.text("guideline_id")?,
        version: r.text("version")?,
        content_hash: r.text("content_hash")?,
        in_force_version: r.text("in_force_version")?,
        tenant: tenant(r)?,
        decisions: r.int("decisions")?,
        changed: r.int("changed")?,
        computed_at: r.time("computed_at")?,
        report: r.opt_text("report")?,
    })
}

/// A `guideline_sign_offs` row.
pub(crate) fn sign_off<R: Columns>(r: &R) -> Result<SignOff, StoreError> {
    Ok(SignOff {
        id: text_id(r)?,
        guideline_id: r.text("guideline_id")?,
        version: r.text("version")?,
        content_hash: r.text("content_hash")?,
        tenant: tenant(r)?,
        signer: r.text("signer")?,
        decision: r.text("decision")?,
        reason: r.opt_text("reason")?,
        impact_hash: r.text("impact_hash")?,
        in_force_version: r.text("in_force_version")?,
        created_at: r.time("created_at")?,
    })
}

/// A `guideline_activations` row.
pub(crate) fn activation<R: Columns>(r: &R) -> Result<Activation, StoreError> {
    Ok(Activation {
        id: text_id(r)?,
        guideline_id: r.text("guideline_id")?,
        version: r.text("version")?,
        content_hash: r.text("content_hash")?,
        tenant: tenant(r)?,
        activated_by: r.text("activated_by")?,
        created_at: r.time("created_at")?,
    })
}
