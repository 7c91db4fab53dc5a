use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Row;
use uuid::Uuid;

use crate::{Backend, CarePlanRecord, NewCarePlan, PoolOptions, Store, StoreError};

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Ok(PgStore { pool })
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    #[tracing::instrument(skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    #[tracing::instrument(skip_all)]
    async fn insert_careplan(&self, p: &NewCarePlan) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO careplans (id, tenant, patient_ref, status, version, rule_set_id, rule_set_version,
                                    phase, red_flag, resource, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(p.id)
        .bind(&p.tenant)
        .bind(&p.patient_ref)
        .bind(&p.status)
        .bind(&p.rule_set_id)
        .bind(&p.rule_set_version)
        .bind(&p.phase)
        .bind(p.red_flag)
        .bind(&p.resource)
        .bind(p.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn careplan(&self, id: Uuid) -> Result<CarePlanRecord, StoreError> {
        let row = sqlx::query("SELECT * FROM careplans WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(CarePlanRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            patient_ref: row.try_get("patient_ref")?,
            status: row.try_get("status")?,
            version: row.try_get("version")?,
            rule_set_id: row.try_get("rule_set_id")?,
            rule_set_version: row.try_get("rule_set_version")?,
            phase: row.try_get("phase")?,
            red_flag: row.try_get("red_flag")?,
            resource: row.try_get("resource")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}
