use futures_util::stream::BoxStream;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use uuid::Uuid;

use crate::audit::{entry_hash, Action, GENESIS};
use crate::model::Review;
use crate::stream::{async_stream, paged, After};
use crate::{
    Activation, AuditEntry, AuditQuery, Backend, CardOutcome, CardOutcomeQuery, CarePlanQuery,
    CarePlanRecord, CarePlanStatus, FeedbackRecord, FeedbackRow, HookAnswer, HookRecord,
    ImpactReport, JtiClaim, NewAuditEntry, NewCarePlan, NewFeedback, PendingLogin, PoolOptions,
    SignOff, StaffSession, Store, StoreError,
};

mod group;

/// The migrations this build carries, compiled in.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    /// The way into the group writer of hook records (see `group`).
    records: tokio::sync::mpsc::Sender<group::Job>,
    jti_purge: crate::JtiPurge,
    sealer: Option<std::sync::Arc<crate::seal::Sealer>>,
}

impl PgStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let timeout_ms = options.statement_timeout.as_millis().max(1);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::query(&format!("SET statement_timeout = {timeout_ms}"))
                        .execute(conn)
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(PgStore {
            records: group::spawn(pool.clone(), options.sealer.clone()),
            pool,
            jti_purge: Default::default(),
            sealer: options.sealer.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| {
            // 42501 insufficient_privilege: a service role started with migrations on.
            let forbidden = match &e {
                sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(d))
                | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(d), _) => {
                    d.code().as_deref() == Some("42501")
                }
                _ => false,
            };
            if forbidden {
                StoreError::MigrationForbidden
            } else {
                StoreError::Migration(e)
            }
        })?;
        self.ensure_partitions(time::OffsetDateTime::now_utc().date(), 3)
            .await;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn check_schema(&self) -> Result<(), StoreError> {
        let applied: Option<i64> = sqlx::query_scalar(crate::APPLIED_MIGRATION)
            .fetch_one(&self.pool)
            .await
            .unwrap_or(None);
        crate::schema_current(&MIGRATOR, applied)
    }

    async fn maintain(&self) -> Vec<String> {
        self.ensure_partitions(time::OffsetDateTime::now_utc().date(), 3)
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn describe(&self) -> Result<serde_json::Value, StoreError> {
        let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&self.pool)
            .await?;
        let ssl: Option<bool> =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_optional(&self.pool)
                .await?;
        Ok(serde_json::json!({"statement_timeout": timeout, "tls": ssl.unwrap_or(false)}))
    }

    #[tracing::instrument(skip_all)]
    async fn drop_audit_before(&self, cutoff: time::Date) -> Result<Vec<String>, StoreError> {
        // 1. The whole monthly partitions that end on or before the cutoff (never a DELETE).
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'audit_entries' AND c.relname ~ '^audit_entries_y[0-9]{4}m[0-9]{2}$'",
        )
        .fetch_all(&self.pool)
        .await?;
        let doomed: Vec<String> = parts
            .into_iter()
            .filter(|name| {
                let (Ok(y), Ok(m)) = (name[15..19].parse::<i32>(), name[20..22].parse::<u8>())
                else {
                    return false;
                };
                let Ok(month) = time::Month::try_from(m) else {
                    return false;
                };
                let end = if month == time::Month::December {
                    time::Date::from_calendar_date(y + 1, time::Month::January, 1)
                } else {
                    time::Date::from_calendar_date(y, month.next(), 1)
                };
                end.is_ok_and(|e| e <= cutoff)
            })
            .collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        // 2. Per tenant, a checkpoint naming the last entry that goes, appended to its chain, so
        //    that verify can still check every link that remains.
        let lasts: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT DISTINCT ON (tenant) tenant, seq, hash FROM audit_entries
             WHERE tableoid::regclass::text = ANY($1) ORDER BY tenant, seq DESC",
        )
        .bind(&doomed)
        .fetch_all(&self.pool)
        .await?;
        for (tenant, seq, hash) in lasts {
            let entry = NewAuditEntry {
                id: crate::new_row_id(),
                recorded_us: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64,
                action: Action::RetentionCheckpoint,
                outcome: "success".into(),
                details: serde_json::json!({"before": cutoff.to_string(), "lastSeq": seq, "lastHash": hash}),
                ..NewAuditEntry::of(crate::TenantId::stored(tenant))
            };
            self.append_audit(&entry).await?;
        }
        let mut dropped = Vec::new();
        for name in doomed {
            sqlx::query(&format!("DROP TABLE {name}"))
                .execute(&self.pool)
                .await?;
            dropped.push(name);
        }
        Ok(dropped)
    }

    fn pool_state(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    async fn reachable(&self) -> Result<(), StoreError> {
        use sqlx::Connection;
        let options = self.pool.connect_options();
        let conn = sqlx::PgConnection::connect_with(&options).await?;
        let _ = conn.close().await;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn insert_careplan(&self, p: &NewCarePlan) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_careplans(&mut tx, &[p]).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(cards = record.cards.len()))]
    async fn record_hook(&self, record: HookRecord) -> Result<(), StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let stopped = || StoreError::CommitFailed("the record writer has stopped".into());
        self.records
            .send(group::Job { record, done })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    #[tracing::instrument(skip_all, fields(entries = entries.len()))]
    async fn insert_feedback(
        &self,
        entries: &[NewFeedback],
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for f in entries {
            sqlx::query(
                "INSERT INTO feedback (id, service_id, card_uuid, known_card, outcome, details, outcome_timestamp, received_at, tenant, patient_ref, decision_id)
                 VALUES ($1, $2, $3, EXISTS (SELECT 1 FROM cards WHERE uuid::text = $3 AND tenant = $8), $4, $5, $6, $7, $8,
                         (SELECT patient_ref FROM cards WHERE uuid::text = $3 AND tenant = $8),
                         (SELECT decision_id FROM cards WHERE uuid::text = $3 AND tenant = $8))",
            )
            .bind(f.id)
            .bind(&f.service_id)
            .bind(&f.card_uuid)
            .bind(&f.outcome)
            .bind(&f.details)
            .bind(f.outcome_timestamp)
            .bind(f.received_at)
            .bind(f.tenant.as_str())
            .execute(&mut *tx)
            .await?;
        }
        append(&mut tx, audit, self.sealer.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn hook_answers(&self, hook_instance: &str) -> Result<Vec<HookAnswer>, StoreError> {
        let rows = sqlx::query(
            "SELECT hook_instance, tenant, caller_issuer, fingerprint, response, created_at
             FROM hook_answers WHERE hook_instance = $1 LIMIT 64",
        )
        .bind(hook_instance)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::hook_answer).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn record_impact_report(&self, r: &ImpactReport) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO impact_reports (impact_hash, guideline_id, version, content_hash, in_force_version,
                                         tenant, decisions, changed, computed_at, report)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (impact_hash, guideline_id, version, content_hash, in_force_version, tenant)
             DO UPDATE SET report = COALESCE(impact_reports.report, excluded.report)",
        )
        .bind(&r.impact_hash)
        .bind(&r.guideline_id)
        .bind(&r.version)
        .bind(&r.content_hash)
        .bind(&r.in_force_version)
        .bind(r.tenant.as_str())
        .bind(r.decisions)
        .bind(r.changed)
        .bind(r.computed_at)
        .bind(&r.report)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn latest_impact_report(
        &self,
        guideline_id: &str,
        version: &str,
        content_hash: &str,
        in_force_version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Option<ImpactReport>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM impact_reports WHERE guideline_id = $1 AND version = $2 AND content_hash = $3
               AND in_force_version = $4 AND tenant = $5 AND report IS NOT NULL
             ORDER BY computed_at DESC LIMIT 1",
        )
        .bind(guideline_id)
        .bind(version)
        .bind(content_hash)
        .bind(in_force_version)
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::impact_report).transpose()
    }

    async fn impact_report(
        &self,
        impact_hash: &str,
        guideline_id: &str,
        version: &str,
        tenant: &crate::TenantId,
    ) -> Result<Vec<ImpactReport>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM impact_reports WHERE impact_hash = $1 AND guideline_id = $2 AND version = $3 AND tenant = $4",
        )
        .bind(impact_hash)
        .bind(guideline_id)
        .bind(version)
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::impact_report).collect()
    }

    async fn record_sign_off(&self, s: &SignOff, audit: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
                    "INSERT INTO guideline_sign_offs (id, guideline_id, version, content_hash, tenant, signer,
                                                      decision, reason, impact_hash, in_force_version, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(s.id.to_string())
        .bind(&s.guideline_id)
        .bind(&s.version)
        .bind(&s.content_hash)
        .bind(s.tenant.as_str())
        .bind(&s.signer)
        .bind(&s.decision)
        .bind(&s.reason)
        .bind(&s.impact_hash)
        .bind(&s.in_force_version)
        .bind(s.created_at)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit, self.sealer.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sign_offs(&self, guideline_id: &str) -> Result<Vec<SignOff>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM guideline_sign_offs WHERE guideline_id = $1 ORDER BY id")
                .bind(guideline_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(crate::rows::sign_off).collect()
    }

    async fn record_activation(
        &self,
        a: &Activation,
        audit: &NewAuditEntry,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO guideline_activations (id, guideline_id, version, content_hash, tenant,
                                                        activated_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(a.id.to_string())
        .bind(&a.guideline_id)
        .bind(&a.version)
        .bind(&a.content_hash)
        .bind(a.tenant.as_str())
        .bind(&a.activated_by)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit, self.sealer.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn activations(&self) -> Result<Vec<Activation>, StoreError> {
        let rows = sqlx::query("SELECT * FROM guideline_activations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(crate::rows::activation).collect()
    }

    async fn card_outcomes(&self, q: &CardOutcomeQuery) -> Result<Vec<CardOutcome>, StoreError> {
        let Some((from, to)) = q.whole_days() else {
            return self.card_outcomes_recounted(q).await;
        };
        // A clinic's year is a few thousand rows here (a day per card and version), where
        // counting it from the cards read 500 000 of them (docs/benchmarks.md).
        let bind = |sql| {
            sqlx::query(sql)
                .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
                .bind(from)
                .bind(to)
                .bind(&q.rule_set_id)
                .bind(&q.rule_set_version)
        };
        const FILTER: &str =
            "($1::text IS NULL OR c.tenant = $1) AND ($2::date IS NULL OR c.day >= $2)
            AND ($3::date IS NULL OR c.day < $3) AND ($4::text IS NULL OR c.rule_set_id = $4)
            AND ($5::text IS NULL OR c.rule_set_version = $5)";
        let counts_sql = format!(
            "SELECT rule_set_id, rule_set_version, decision_id, tenant, to_char(day, 'YYYY-MM') AS period,
                    SUM(shown)::bigint AS shown, SUM(accepted)::bigint AS accepted,
                    SUM(overridden)::bigint AS overridden, SUM(shown - with_feedback)::bigint AS without_feedback
               FROM card_days c WHERE {FILTER}
              GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        );
        let counts = bind(&counts_sql).fetch_all(&self.pool).await?;
        let reasons_sql = format!(
            "SELECT rule_set_id, rule_set_version, decision_id, tenant, to_char(day, 'YYYY-MM') AS period,
                    reason, SUM(cards)::bigint AS n
               FROM card_day_reasons c WHERE {FILTER}
              GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 7 DESC, 6"
        );
        let reasons = bind(&reasons_sql).fetch_all(&self.pool).await?;
        crate::rows::card_outcomes(&counts, &reasons)
    }

    async fn card_outcomes_recounted(
        &self,
        q: &CardOutcomeQuery,
    ) -> Result<Vec<CardOutcome>, StoreError> {
        // One row per card with whether any feedback accepted or overrode it, then counted
        // per version, card, tenant and month; the override reasons in a second pass.
        let counts_sql = format!(
            "WITH fb AS (SELECT card_uuid, tenant,
                                bool_or(outcome = 'accepted')::int AS accepted,
                                bool_or(outcome = 'overridden')::int AS overridden
                           FROM feedback WHERE known_card GROUP BY card_uuid, tenant)
             SELECT c.rule_set_id, c.rule_set_version, c.decision_id, c.tenant,
                    to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period, COUNT(*) AS shown,
                    COALESCE(SUM(fb.accepted), 0)::bigint AS accepted,
                    COALESCE(SUM(fb.overridden), 0)::bigint AS overridden,
                    COUNT(*) FILTER (WHERE fb.card_uuid IS NULL) AS without_feedback
               FROM cards c LEFT JOIN fb ON fb.card_uuid = c.uuid::text AND fb.tenant = c.tenant
              WHERE {CARD_FILTER}
              GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5"
        );
        let counts = bind_card_filter(sqlx::query(&counts_sql), q)
            .fetch_all(&self.pool)
            .await?;
        let reasons_sql = format!(
            "SELECT c.rule_set_id, c.rule_set_version, c.decision_id, c.tenant,
                    to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period,
                    COALESCE(f.details #>> '{{overrideReason,reason,code}}', 'unspecified') AS reason,
                    COUNT(DISTINCT c.uuid) AS n
               FROM cards c JOIN feedback f ON f.card_uuid = c.uuid::text AND f.tenant = c.tenant
                                          AND f.known_card AND f.outcome = 'overridden'
              WHERE {CARD_FILTER}
              GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 7 DESC, 6"
        );
        let reasons = bind_card_filter(sqlx::query(&reasons_sql), q)
            .fetch_all(&self.pool)
            .await?;
        crate::rows::card_outcomes(&counts, &reasons)
    }

    fn feedback_stream<'a>(
        &'a self,
        q: &'a CardOutcomeQuery,
    ) -> BoxStream<'a, Result<FeedbackRow, StoreError>> {
        // In pages, as the decision log (`stream::paged`): the export goes out at the client's
        // pace, and one statement held open that long is cancelled by the statement timeout.
        let select = format!(
            "SELECT f.id AS feedback_id, f.card_uuid, c.decision_id, c.rule_set_id, c.rule_set_version, f.tenant,
                    f.service_id, f.outcome, f.details, f.outcome_timestamp,
                    c.user_ref AS \"user\", c.encounter AS encounter
               FROM feedback f JOIN cards c ON c.uuid::text = f.card_uuid AND c.tenant = f.tenant
              WHERE {CARD_FILTER}"
        );
        let first = format!("{select} ORDER BY f.outcome_timestamp, f.id LIMIT $6");
        let next = format!(
            "{select} AND (f.outcome_timestamp, f.id) > ($7::timestamptz, $8::uuid) ORDER BY f.outcome_timestamp, f.id LIMIT $6"
        );
        let pool = self.pool.clone();
        let q = q.clone();
        Box::pin(async_stream(move |tx| async move {
            let page = |after: Option<(time::OffsetDateTime, uuid::Uuid)>, n: i64| {
                let sql = if after.is_some() { &next } else { &first }.clone();
                let (pool, q) = (pool.clone(), q.clone());
                async move {
                    let mut query = bind_card_filter(sqlx::query(&sql), &q).bind(n);
                    if let Some((t, id)) = after {
                        query = query.bind(t).bind(id);
                    }
                    let rows = query.fetch_all(&pool).await?;
                    rows.iter()
                        .map(|r| {
                            Ok((
                                (
                                    r.try_get::<time::OffsetDateTime, _>("outcome_timestamp")?,
                                    r.try_get::<uuid::Uuid, _>("feedback_id")?,
                                ),
                                crate::rows::feedback(r),
                            ))
                        })
                        .collect::<Result<Vec<_>, StoreError>>()
                }
            };
            paged(&tx, i64::MAX, page).await;
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn overridden(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
    ) -> Result<Vec<crate::Overridden>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision_id, details, outcome_timestamp FROM feedback
              WHERE tenant = $1 AND patient_ref = $2 AND outcome = 'overridden'
                AND decision_id IS NOT NULL
              ORDER BY outcome_timestamp",
        )
        .bind(tenant.as_str())
        .bind(patient_ref)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend(crate::rows::overridden(r)?);
        }
        Ok(out)
    }

    async fn feedback_for_card(&self, card_uuid: &str) -> Result<Vec<FeedbackRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT card_uuid, known_card, outcome, details, outcome_timestamp FROM feedback
             WHERE card_uuid = $1 ORDER BY outcome_timestamp, id",
        )
        .bind(card_uuid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::feedback_record).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn claim_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<JtiClaim, StoreError> {
        if self.jti_purge.due(now) {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let purged = sqlx::query("DELETE FROM seen_jti WHERE expires_at < $1")
                    .bind(now)
                    .execute(&pool)
                    .await;
                let purged = match purged {
                    Ok(_) => {
                        sqlx::query("DELETE FROM hook_answers WHERE created_at < $1")
                            .bind(crate::answers_kept_since(now))
                            .execute(&pool)
                            .await
                    }
                    e => e,
                };
                if let Err(e) = purged {
                    tracing::warn!(error = %e, "expired token ids not forgotten (tried again later)");
                }
            });
        }
        // One statement, committed on its own: decided and durable in one round trip, and a
        // concurrent use by another replica conflicts on the primary key.
        let inserted = sqlx::query(
            "INSERT INTO seen_jti (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(JtiClaim::committed(inserted == 1))
    }

    #[tracing::instrument(skip_all)]
    async fn begin_login(&self, l: &PendingLogin, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM staff_logins WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO staff_logins (state_hash, verifier, nonce, next_path, expires_at, smart_iss) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&l.state_hash)
            .bind(&l.verifier)
            .bind(&l.nonce)
            .bind(&l.next_path)
            .bind(l.expires_at)
            .bind(&l.smart_iss)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_login(
        &self,
        state_hash: &str,
        now: i64,
    ) -> Result<Option<PendingLogin>, StoreError> {
        let row = sqlx::query("DELETE FROM staff_logins WHERE state_hash = $1 RETURNING *")
            .bind(state_hash)
            .fetch_optional(&self.pool)
            .await?;
        let login = row.as_ref().map(crate::rows::pending_login).transpose()?;
        Ok(login.filter(|l| l.expires_at >= now))
    }

    async fn create_session(&self, s: &StaffSession, now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM staff_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO staff_sessions (id_hash, issuer, subject, tenant, all_tenants, scopes, csrf, created_at, expires_at, patient, fhir_user)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
            .bind(&s.id_hash)
            .bind(&s.issuer)
            .bind(&s.subject)
            .bind(s.tenant.as_str())
            .bind(s.all_tenants)
            .bind(s.scopes.join(" "))
            .bind(&s.csrf)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(&s.patient)
            .bind(&s.fhir_user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str, now: i64) -> Result<Option<StaffSession>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM staff_sessions WHERE id_hash = $1 AND expires_at >= $2")
                .bind(id_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(crate::rows::staff_session).transpose()
    }

    async fn end_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM staff_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn search_careplans(&self, q: &CarePlanQuery) -> Result<Vec<CarePlanRecord>, StoreError> {
        let (from, to) = q.created_bounds();
        let rows = sqlx::query(
            "SELECT * FROM careplans WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR patient_ref = $2)
               AND ($3::text IS NULL OR status = $3) AND ($5::timestamptz IS NULL OR created_at >= $5)
               AND ($6::timestamptz IS NULL OR created_at < $6)
               ORDER BY red_flag DESC, created_at DESC, id LIMIT $4",
        )
        .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
        .bind(&q.patient_ref)
        .bind(q.status.map(CarePlanStatus::as_str))
        .bind(q.limit)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::careplan).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn review_careplan(
        &self,
        r: &Review,
        audit: &NewAuditEntry,
    ) -> Result<CarePlanRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE careplans SET status = $1, version = version + 1, resource = $2, updated_at = $3
             WHERE id = $4 AND version = $5",
        )
        .bind(r.action.status().as_str())
        .bind(&r.resource)
        .bind(r.at)
        .bind(r.careplan_id)
        .bind(r.expected_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let now: Option<i32> =
                sqlx::query_scalar("SELECT version FROM careplans WHERE id = $1")
                    .bind(r.careplan_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(now.map_or(StoreError::NotFound, StoreError::Conflict));
        }
        sqlx::query(
            "INSERT INTO careplan_versions (careplan_id, version, action, reviewer, reason, resource, reviewed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.careplan_id)
        .bind(r.expected_version + 1)
        .bind(r.action.as_str())
        .bind(&r.reviewer)
        .bind(&r.reason)
        .bind(&r.resource)
        .bind(r.at)
        .execute(&mut *tx)
        .await?;
        append(&mut tx, audit, self.sealer.as_deref()).await?;
        tx.commit().await?;
        self.careplan_row(r.careplan_id).await
    }

    #[tracing::instrument(skip_all)]
    async fn drafting_entry(&self, careplan_id: Uuid) -> Result<AuditEntry, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM audit_entries WHERE careplan_id = $1 AND action = $2 LIMIT 1",
        )
        .bind(careplan_id)
        .bind(crate::audit::Action::HookCall.as_str())
        .fetch_one(&self.pool)
        .await?;
        crate::rows::audit_entry(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        append(&mut tx, entry, self.sealer.as_deref()).await?;
        tx.commit().await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn chain_heads(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (tenant) * FROM audit_entries ORDER BY tenant, seq DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::rows::audit_entry).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn audit_entry(&self, id: Uuid) -> Result<AuditEntry, StoreError> {
        let row = sqlx::query("SELECT * FROM audit_entries WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        crate::rows::audit_entry(&row)
    }

    fn audit_stream<'a>(
        &'a self,
        q: &'a AuditQuery,
        chain_order: bool,
    ) -> BoxStream<'a, Result<AuditEntry, StoreError>> {
        // Each page starts after the last row of the one before, in the same order, with a
        // condition an index can seek on (the first page has none: "IS NULL OR" would make
        // every page scan from the start).
        let (order, after) = if chain_order {
            (
                "tenant, seq, id",
                "(tenant, seq, id) > ($10::text, $11::bigint, $12::uuid)",
            )
        } else {
            (
                "recorded_us DESC, tenant, seq DESC, id DESC",
                "recorded_us <= $12::bigint AND (recorded_us < $12 OR (recorded_us = $12 AND (tenant > $10::text OR (tenant = $10 AND (seq < $11::bigint OR (seq = $11 AND id < $13::uuid))))))",
            )
        };
        let filter = "SELECT * FROM audit_entries WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR patient_ref = $2)
               AND ($3::text IS NULL OR caller_subject = $3) AND ($4::text IS NULL OR rule_set_version = $4)
               AND ($5::bigint IS NULL OR recorded_us >= $5) AND ($6::bigint IS NULL OR recorded_us < $6)
               AND ($8::text IS NULL OR decision_ids ? $8)
               AND ($9::text IS NULL OR action = $9)";
        let first = format!("{filter} ORDER BY {order} LIMIT $7");
        let next = format!("{filter} AND {after} ORDER BY {order} LIMIT $7");
        let pool = self.pool.clone();
        let q = q.clone();
        Box::pin(async_stream(move |tx| async move {
            let page = |after: Option<After>, n: i64| {
                let sql = if after.is_some() { &next } else { &first }.clone();
                let (pool, q) = (pool.clone(), q.clone());
                async move {
                    let mut query = sqlx::query(&sql)
                        .bind(q.tenant.as_ref().map(crate::TenantId::as_str))
                        .bind(&q.patient_ref)
                        .bind(&q.caller_subject)
                        .bind(&q.rule_set_version)
                        .bind(q.since_us)
                        .bind(q.until_us)
                        .bind(n)
                        .bind(&q.decision_id)
                        .bind(q.action.as_ref().map(Action::as_str));
                    // Numbered as the two orders' conditions name them.
                    if let Some(a) = after {
                        query = query.bind(a.tenant.as_str().to_owned()).bind(a.seq);
                        if !chain_order {
                            query = query.bind(a.recorded_us);
                        }
                        query = query.bind(a.id);
                    }
                    let rows = query.fetch_all(&pool).await?;
                    crate::rows::keyed_audit_entries(&rows)
                }
            };
            // No limit, or a negative one (SQLite's "no limit"), reads everything.
            let limit = q.limit.filter(|l| *l >= 0).unwrap_or(i64::MAX);
            paged(&tx, limit, page).await;
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn careplan(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        self.careplan_row(id).await
    }

    #[tracing::instrument(skip_all)]
    async fn patient_plans(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        rule_set_id: &str,
    ) -> Result<crate::PatientPlans, StoreError> {
        let rows = sqlx::query(
            "(SELECT id, status, phase, updated_at, decision_key, NULL::text AS resource
                FROM careplans WHERE tenant = $1 AND patient_ref = $2
                AND rule_set_id = $3 AND status = 'active' ORDER BY updated_at DESC LIMIT 1)
             UNION ALL
             (SELECT id, status, phase, updated_at, decision_key, resource::text
                FROM careplans WHERE tenant = $1 AND patient_ref = $2
                AND rule_set_id = $3 AND status = 'draft' AND decision_key IS NOT NULL)",
        )
        .bind(tenant.as_str())
        .bind(patient_ref)
        .bind(rule_set_id)
        .fetch_all(&self.pool)
        .await?;
        crate::rows::patient_plans(&rows)
    }

    #[tracing::instrument(skip_all)]
    async fn pending_draft(
        &self,
        tenant: &crate::TenantId,
        patient_ref: &crate::PatientRef,
        decision_key: &str,
    ) -> Result<Option<CarePlanRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM careplans WHERE tenant = $1 AND patient_ref = $2 AND status = 'draft'
             AND decision_key = $3",
        )
        .bind(tenant.as_str())
        .bind(patient_ref)
        .bind(decision_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::rows::careplan).transpose()
    }
}

/// New CarePlans, in one statement.
async fn insert_careplans(
    tx: &mut sqlx::PgConnection,
    plans: &[&NewCarePlan],
) -> Result<(), StoreError> {
    insert_records(tx, plans, &[], &[]).await
}

impl PgStore {
    /// Monthly audit partitions for this month and the next `ahead - 1`, created before any
    /// row needs them (a row without its month lands in the default partition).
    /// Create the audit partitions of this month and the `ahead - 1` after it, where they are
    /// missing. Existing ones are looked up first (a service role, which may not create them,
    /// finds them made by `stride migrate`), and creating takes an advisory lock, so replicas
    /// starting together do not race into "already exists". Returns the partitions the next
    /// writes need (this month and the next) that are still missing; the default partition
    /// takes their entries meanwhile.
    pub async fn ensure_partitions(&self, today: time::Date, ahead: u8) -> Vec<String> {
        let mut months = Vec::new();
        let mut first = today.replace_day(1).expect("day 1 exists");
        for _ in 0..ahead {
            let next = if first.month() == time::Month::December {
                time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
            } else {
                time::Date::from_calendar_date(first.year(), first.month().next(), 1)
            }
            .expect("a valid first of month");
            let name = format!("audit_entries_y{}m{:02}", first.year(), first.month() as u8);
            months.push((name, first, next));
            first = next;
        }
        let missing = self.missing_partitions(&months).await;
        if missing.is_empty() {
            return Vec::new();
        }
        let created: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PARTITION_LOCK)
                .execute(&mut *tx)
                .await?;
            for (name, from, to) in &missing {
                sqlx::query(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF audit_entries FOR VALUES FROM ('{from}') TO ('{to}')"
                ))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        let still = self
            .missing_partitions(&months[..months.len().min(2)])
            .await;
        let still: Vec<String> = still.into_iter().map(|(n, ..)| n).collect();
        match created {
            Err(e) if !still.is_empty() => tracing::warn!(
                partitions = ?still,
                error = %e,
                "audit partitions the next writes need are missing (their entries go to the default partition); run `stride migrate` as the schema owner"
            ),
            Err(e) => {
                tracing::debug!(error = %e, "later audit partitions not created (not needed yet)")
            }
            Ok(()) => {}
        }
        still
    }

    async fn missing_partitions(
        &self,
        months: &[(String, time::Date, time::Date)],
    ) -> Vec<(String, time::Date, time::Date)> {
        let names: Vec<&str> = months.iter().map(|(n, ..)| n.as_str()).collect();
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname = ANY($1)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default();
        months
            .iter()
            .filter(|(n, ..)| !present.contains(n))
            .cloned()
            .collect()
    }

    async fn careplan_row(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM careplans WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        crate::rows::careplan(&row)
    }
}

/// The advisory lock of partition upkeep: a constant (the tenant chain locks are 64-bit hashes
/// of tenant names; a collision would only make one wait for the other).
const PARTITION_LOCK: i64 = 0x5354_5249_4445_5054; // "STRIDEPT"

/// Append `e` to its tenant's chain inside `tx`.
async fn append(
    tx: &mut sqlx::PgConnection,
    e: &NewAuditEntry,
    sealer: Option<&crate::seal::Sealer>,
) -> Result<(), StoreError> {
    append_all(tx, &[e], sealer).await
}

/// Append `entries`, in their order, to their tenants' chains inside `tx`: `chain`, then
/// `insert_audit`.
async fn append_all(
    tx: &mut sqlx::PgConnection,
    entries: &[&NewAuditEntry],
    sealer: Option<&crate::seal::Sealer>,
) -> Result<(), StoreError> {
    let chained = chain(tx, entries, sealer).await?;
    insert_audit(tx, &chained).await
}

/// An audit entry with its place in its tenant's chain, ready to insert.
struct Chained<'a> {
    entry: &'a NewAuditEntry,
    seq: i64,
    recorded_at: time::OffsetDateTime,
    input_digest: Option<String>,
    prev_hash: String,
    hash: String,
    seal: Option<crate::seal::Seal>,
}

/// Places `entries`, in their order, in their tenants' chains inside `tx`. An advisory lock per
/// tenant serialises appenders across replicas, so two entries never claim the same place in a
/// chain; tenants are locked in sorted order, so two groups never wait on each other. Each
/// tenant's head is read in a statement after its lock's (under READ COMMITTED a statement sees
/// what was committed before it began), so it is the head the last appender committed.
async fn chain<'a>(
    tx: &mut sqlx::PgConnection,
    entries: &[&'a NewAuditEntry],
    sealer: Option<&crate::seal::Sealer>,
) -> Result<Vec<Chained<'a>>, StoreError> {
    let mut tenants: Vec<&str> = entries.iter().map(|e| e.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut heads = std::collections::HashMap::with_capacity(tenants.len());
    for tenant in tenants {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, hash FROM audit_entries WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
        heads.insert(tenant, last.unwrap_or((0, GENESIS.to_owned())));
    }
    let mut chained = Vec::with_capacity(entries.len());
    for &entry in entries {
        let head = heads
            .get_mut(entry.tenant.as_str())
            .expect("every tenant's head was read");
        let seq = head.0 + 1;
        let input_digest = entry.facts.as_ref().map(|f| f.digest());
        let hash = entry_hash(entry, seq, input_digest.as_deref(), &head.1);
        let prev_hash = std::mem::replace(head, (seq, hash.clone())).1;
        let recorded_at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(entry.recorded_us) * 1000)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let seal = sealer.map(|s| s.seal(hash.as_bytes()));
        chained.push(Chained {
            entry,
            seq,
            recorded_at,
            input_digest,
            prev_hash,
            hash,
            seal,
        });
    }
    Ok(chained)
}

/// A write's plans, cards and answers, in one statement of one text whatever the number of
/// rows: each table's rows go as one array per column, unnested, written by data-modifying
/// `WITH` clauses (foreign keys are checked at the statement's end, so a card may name the
/// plan inserted with it). Before, the group writer sent an INSERT per table, each a round
/// trip in series while every call of the group waited, and each differently sized group was
/// a statement text of its own for PostgreSQL to parse and plan (docs/benchmarks.md,
/// "PostgreSQL: a group's rows in two statements"). Sent before the chain's lock is taken, as
/// every other writer does (feedback updates a card's daily row and then appends): a group
/// that took the lock first and then a card's daily row could deadlock with it.
async fn insert_records(
    tx: &mut sqlx::PgConnection,
    plans: &[&NewCarePlan],
    cards: &[&crate::NewCard],
    answers: &[&HookAnswer],
) -> Result<(), StoreError> {
    if plans.is_empty() && cards.is_empty() && answers.is_empty() {
        return Ok(());
    }
    sqlx::query(INSERT_RECORDS)
        // careplans
        .bind(col(plans, |p| p.id))
        .bind(col(plans, |p| p.tenant.as_str()))
        .bind(col(plans, |p| p.patient_ref.as_str()))
        .bind(col(plans, |p| p.status.as_str()))
        .bind(col(plans, |p| p.rule_set_id.as_str()))
        .bind(col(plans, |p| p.rule_set_version.as_str()))
        .bind(col(plans, |p| p.phase.as_str()))
        .bind(col(plans, |p| p.red_flag))
        .bind(col(plans, |p| &p.resource))
        .bind(col(plans, |p| p.created_at))
        .bind(col(plans, |p| p.decision_key.as_deref()))
        .bind(col(plans, |p| p.patient.as_ref()))
        // cards
        .bind(col(cards, |c| c.uuid))
        .bind(col(cards, |c| c.tenant.as_str()))
        .bind(col(cards, |c| c.service_id.as_str()))
        .bind(col(cards, |c| c.hook_instance.as_str()))
        .bind(col(cards, |c| c.decision_id.as_str()))
        .bind(col(cards, |c| c.careplan_id))
        .bind(col(cards, |c| c.created_at))
        .bind(col(cards, |c| c.rule_set_id.as_deref()))
        .bind(col(cards, |c| c.rule_set_version.as_deref()))
        .bind(col(cards, |c| c.user_ref.as_deref()))
        .bind(col(cards, |c| c.encounter.as_deref()))
        .bind(col(cards, |c| {
            c.patient_ref.as_ref().map(crate::PatientRef::as_str)
        }))
        // hook_answers: a plain insert, so a hookInstance answered already fails the statement
        // (the group writer then tries each record alone, and the others are stored).
        .bind(col(answers, |a| a.hook_instance.as_str()))
        .bind(col(answers, |a| a.tenant.as_str()))
        .bind(col(answers, |a| a.caller_issuer.as_str()))
        .bind(col(answers, |a| a.fingerprint.as_str()))
        .bind(col(answers, |a| a.response.as_str()))
        .bind(col(answers, |a| a.created_at))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Chained audit entries, in one statement of one text whatever their number (as
/// `insert_records`).
async fn insert_audit(
    tx: &mut sqlx::PgConnection,
    entries: &[Chained<'_>],
) -> Result<(), StoreError> {
    sqlx::query(INSERT_AUDIT)
        .bind(col(entries, |c| c.entry.id))
        .bind(col(entries, |c| c.entry.tenant.as_str()))
        .bind(col(entries, |c| c.seq))
        .bind(col(entries, |c| c.recorded_at))
        .bind(col(entries, |c| c.entry.recorded_us))
        .bind(col(entries, |c| c.entry.action.as_str()))
        .bind(col(entries, |c| c.entry.outcome.as_str()))
        .bind(col(entries, |c| c.entry.caller_issuer.as_deref()))
        .bind(col(entries, |c| c.entry.caller_subject.as_deref()))
        .bind(col(entries, |c| c.entry.hook.as_deref()))
        .bind(col(entries, |c| c.entry.hook_instance.as_deref()))
        .bind(col(entries, |c| c.entry.service_id.as_deref()))
        .bind(col(entries, |c| {
            c.entry.patient_ref.as_ref().map(crate::PatientRef::as_str)
        }))
        .bind(col(entries, |c| c.entry.as_of.as_deref()))
        .bind(col(entries, |c| c.input_digest.as_deref()))
        // As text: JSONB would rewrite numbers (1e16, -0.0) and break the digest on read-back.
        .bind(col(entries, |c| c.entry.facts.as_ref().map(|f| f.text())))
        .bind(col(entries, |c| c.entry.rule_set_id.as_deref()))
        .bind(col(entries, |c| c.entry.rule_set_version.as_deref()))
        .bind(col(entries, |c| c.entry.rule_set_hash.as_deref()))
        .bind(col(entries, |c| serde_json::json!(c.entry.decision_ids)))
        .bind(col(entries, |c| serde_json::json!(c.entry.card_uuids)))
        .bind(col(entries, |c| c.entry.careplan_id))
        .bind(col(entries, |c| c.entry.trace_id.as_deref()))
        .bind(col(entries, |c| &c.entry.details))
        .bind(col(entries, |c| c.prev_hash.as_str()))
        .bind(col(entries, |c| c.hash.as_str()))
        .bind(col(entries, |c| c.seal.as_ref().map(|s| s.kid.as_str())))
        .bind(col(entries, |c| c.seal.as_ref().map(|s| s.sig.as_str())))
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// One column of `rows`, for binding as an array.
fn col<'a, T: 'a, U>(rows: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(f).collect()
}

/// `insert_records`' statement: its parameters are the columns, table by table, in order.
const INSERT_RECORDS: &str = "WITH plans AS (
    INSERT INTO careplans (id, tenant, patient_ref, status, version, rule_set_id, rule_set_version,
                           phase, red_flag, resource, created_at, updated_at, decision_key, patient)
    SELECT id, tenant, patient_ref, status, 1, rule_set_id, rule_set_version, phase, red_flag,
           resource, created_at, created_at, decision_key, patient
      FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                  $7::text[], $8::bool[], $9::jsonb[], $10::timestamptz[], $11::text[], $12::jsonb[])
        AS p (id, tenant, patient_ref, status, rule_set_id, rule_set_version, phase, red_flag,
              resource, created_at, decision_key, patient)
), cards AS (
    INSERT INTO cards (uuid, tenant, service_id, hook_instance, decision_id, careplan_id, created_at,
                       rule_set_id, rule_set_version, user_ref, encounter, patient_ref)
    SELECT * FROM UNNEST($13::uuid[], $14::text[], $15::text[], $16::text[], $17::text[],
                         $18::uuid[], $19::timestamptz[], $20::text[], $21::text[], $22::text[],
                         $23::text[], $24::text[])
)
INSERT INTO hook_answers (hook_instance, tenant, caller_issuer, fingerprint, response, created_at)
SELECT * FROM UNNEST($25::text[], $26::text[], $27::text[], $28::text[], $29::text[],
                     $30::timestamptz[])";

/// `insert_audit`'s statement: its parameters are the columns, in order.
const INSERT_AUDIT: &str = "INSERT INTO audit_entries (id, tenant, seq, recorded_at, recorded_us,
    action, outcome, caller_issuer, caller_subject, hook, hook_instance, service_id, patient_ref,
    as_of, input_digest, facts, rule_set_id, rule_set_version, rule_set_hash, decision_ids,
    card_uuids, careplan_id, trace_id, details, prev_hash, hash, seal_kid, seal)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[], $5::int8[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                     $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                     $18::text[], $19::text[], $20::jsonb[], $21::jsonb[], $22::uuid[], $23::text[],
                     $24::jsonb[], $25::text[], $26::text[], $27::text[], $28::text[])";

/// The cards a `CardOutcomeQuery` selects (alias `c`), its parameters bound by
/// `bind_card_filter` in this order.
const CARD_FILTER: &str = "($1::text IS NULL OR c.tenant = $1)
    AND ($2::timestamptz IS NULL OR c.created_at >= $2) AND ($3::timestamptz IS NULL OR c.created_at < $3)
    AND ($4::text IS NULL OR c.rule_set_id = $4) AND ($5::text IS NULL OR c.rule_set_version = $5)";

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn bind_card_filter<'q>(q: PgQuery<'q>, f: &'q CardOutcomeQuery) -> PgQuery<'q> {
    q.bind(f.tenant.as_ref().map(crate::TenantId::as_str))
        .bind(f.from)
        .bind(f.to)
        .bind(&f.rule_set_id)
        .bind(&f.rule_set_version)
}
