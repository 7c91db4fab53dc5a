-- JWT ids already used by CDS clients: a replayed token is refused while it is still valid,
-- across restarts and across replicas sharing the database.
CREATE TABLE seen_jti (
    issuer     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX seen_jti_expiry ON seen_jti (expires_at);
