-- writ core schema: playbook versions and their status history, executions
-- with per-target results, approvals, users, API tokens and sessions.
-- The audit log has tables of its own (a later migration).

CREATE TABLE playbook_versions (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL CHECK (name ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    path           text NOT NULL CHECK (path <> '' AND path !~ '(^/|(^|/)\.\.(/|$))'),
    digest         text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    content        bytea NOT NULL CHECK (octet_length(content) <= 1048576),
    action         text NOT NULL,
    environment    text NOT NULL,
    severity       text NOT NULL,
    commit_sha     text,
    status         text NOT NULL DEFAULT 'proposed' CHECK (status IN (
                       'proposed', 'planned', 'awaiting_approval', 'approved', 'denied',
                       'rejected', 'executing', 'completed', 'failed', 'reverted', 'expired')),
    status_reason  text NOT NULL DEFAULT '',
    decision       jsonb,
    policy_digest  text,
    plan_digest    text,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    archived_at    timestamptz,
    UNIQUE (name, digest)
);
CREATE INDEX playbook_versions_name_idx ON playbook_versions (name, created_at DESC);
CREATE INDEX playbook_versions_status_idx ON playbook_versions (status, updated_at DESC) WHERE archived_at IS NULL;
CREATE INDEX playbook_versions_digest_idx ON playbook_versions (digest);
CREATE INDEX playbook_versions_expires_idx ON playbook_versions (expires_at) WHERE expires_at IS NOT NULL AND archived_at IS NULL;

CREATE TABLE playbook_status_history (
    id          bigserial PRIMARY KEY,
    version_id  bigint NOT NULL REFERENCES playbook_versions (id) ON DELETE CASCADE,
    from_status text,
    to_status   text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    commit_sha  text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX playbook_status_history_version_idx ON playbook_status_history (version_id, id);

CREATE TABLE executions (
    id           bigserial PRIMARY KEY,
    version_id   bigint NOT NULL REFERENCES playbook_versions (id),
    name         text NOT NULL,
    digest       text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    operation    text NOT NULL CHECK (operation IN ('apply', 'revert')),
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'executing', 'completed', 'failed')),
    attempts     integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error   text NOT NULL DEFAULT '',
    commit_sha   text,
    not_before   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- A playbook version is applied, and reverted, at most once.
    UNIQUE (name, digest, operation)
);
CREATE INDEX executions_state_idx ON executions (state, not_before) WHERE state IN ('pending', 'executing');
CREATE INDEX executions_version_idx ON executions (version_id);
CREATE INDEX executions_created_idx ON executions (created_at DESC);

CREATE TABLE execution_targets (
    execution_id bigint NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    target       text NOT NULL,
    planned      text NOT NULL DEFAULT '',
    result       text NOT NULL DEFAULT 'pending',
    detail       text NOT NULL DEFAULT '',
    attempts     integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, target)
);

CREATE TABLE approvals (
    id               bigserial PRIMARY KEY,
    envelope         bytea NOT NULL CHECK (octet_length(envelope) <= 262144),
    envelope_sha256  text NOT NULL UNIQUE CHECK (envelope_sha256 ~ '^[0-9a-f]{64}$'),
    decision         text NOT NULL CHECK (decision IN ('propose', 'approve', 'reject')),
    approver         text NOT NULL,
    repository       text NOT NULL DEFAULT '',
    pull_request     integer,
    head_commit      text NOT NULL DEFAULT '',
    policy_digest    text NOT NULL DEFAULT '',
    plan_digest      text NOT NULL DEFAULT '',
    reason           text NOT NULL DEFAULT '',
    issued_at        timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    source           text NOT NULL CHECK (source IN ('api', 'cli', 'github', 'import')),
    source_ref       text NOT NULL DEFAULT '',
    source_login     text NOT NULL DEFAULT '',
    received_at      timestamptz NOT NULL DEFAULT now(),
    withdrawn_at     timestamptz
);
CREATE INDEX approvals_pr_idx ON approvals (repository, pull_request) WHERE pull_request IS NOT NULL;
CREATE INDEX approvals_received_idx ON approvals (received_at DESC);
CREATE INDEX approvals_source_ref_idx ON approvals (source, source_ref) WHERE source_ref <> '';

CREATE TABLE approval_subjects (
    approval_id bigint NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
    digest      text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    name        text NOT NULL,
    PRIMARY KEY (approval_id, digest, name)
);
CREATE INDEX approval_subjects_digest_idx ON approval_subjects (digest);

CREATE TABLE users (
    id                   bigserial PRIMARY KEY,
    username             text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$'),
    display_name         text NOT NULL DEFAULT '',
    roles                text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['viewer', 'analyst', 'approver', 'executor', 'admin']),
    password_hash        text,
    must_change_password boolean NOT NULL DEFAULT false,
    disabled             boolean NOT NULL DEFAULT false,
    failed_logins        integer NOT NULL DEFAULT 0,
    locked_until         timestamptz,
    password_changed_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    roles        text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['viewer', 'analyst', 'approver', 'executor', 'admin']),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

CREATE TABLE sessions (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at) WHERE revoked_at IS NULL;

---- create above / drop below ----

DROP TABLE sessions;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE approval_subjects;
DROP TABLE approvals;
DROP TABLE execution_targets;
DROP TABLE executions;
DROP TABLE playbook_status_history;
DROP TABLE playbook_versions;
