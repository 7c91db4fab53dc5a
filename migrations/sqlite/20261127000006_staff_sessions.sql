-- Staff sign-in with OpenID Connect. A login in progress (state, PKCE verifier, nonce) lives
-- here for a few minutes, keyed by the SHA-256 of its state; a signed-in session is keyed by
-- the SHA-256 of its cookie, so a copy of the database does not hand out working cookies.
-- Both live in the database so that every replica behind a load balancer knows them.
CREATE TABLE staff_logins (
    state_hash  TEXT PRIMARY KEY,
    verifier    TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    next_path   TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE TABLE staff_sessions (
    id_hash     TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    all_tenants BOOLEAN NOT NULL,
    scopes      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX staff_sessions_expiry ON staff_sessions (expires_at);
CREATE INDEX staff_logins_expiry ON staff_logins (expires_at);
