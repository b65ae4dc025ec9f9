-- Drift: live state compared with what the active playbooks put in force
-- (internal/reconcile/drift.go).
--
-- drift_groups keeps, per environment, action and backend, what the last
-- check found (the API's latest report, the metric after a restart) and a
-- fingerprint of it, so that drift.detected is audited when drift appears
-- or changes, and drift.resolved when it is gone, never at every check.
--
-- drift_incidents are the missing targets of one playbook version, from
-- the check that first found them until a check finds them contained
-- again (or finds another set missing, which is another incident). A heal
-- is an operation of its own, (name, digest, 'heal', incident): each
-- incident is healed at most once, and statements about a heal name its
-- incident, so that the approvals of one heal never authorise another.
CREATE TABLE drift_groups (
    environment text NOT NULL,
    action      text NOT NULL,
    backend     text NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('report', 'heal')),
    fingerprint text NOT NULL DEFAULT '',
    findings    jsonb NOT NULL DEFAULT '[]',
    error       text NOT NULL DEFAULT '',
    since       timestamptz,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, action, backend)
);

CREATE TABLE drift_reports (
    id         bigserial PRIMARY KEY,
    checked_at timestamptz NOT NULL DEFAULT now(),
    report     jsonb NOT NULL
);

CREATE TABLE drift_incidents (
    id          bigserial PRIMARY KEY,
    version_id  bigint NOT NULL REFERENCES playbook_versions (id),
    name        text NOT NULL,
    digest      text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    action      text NOT NULL,
    environment text NOT NULL,
    backend     text NOT NULL,
    targets     text[] NOT NULL,
    fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    opened_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE UNIQUE INDEX drift_incidents_open_idx ON drift_incidents (version_id) WHERE resolved_at IS NULL;

ALTER TABLE executions ADD COLUMN incident bigint NOT NULL DEFAULT 0 CHECK (incident >= 0);
ALTER TABLE executions DROP CONSTRAINT executions_operation_check;
ALTER TABLE executions ADD CONSTRAINT executions_operation_check
    CHECK (operation IN ('apply', 'revert', 'heal') AND (operation = 'heal') = (incident > 0));
ALTER TABLE executions DROP CONSTRAINT executions_trigger_check;
ALTER TABLE executions ADD CONSTRAINT executions_trigger_check
    CHECK (trigger IN ('merge', 'update', 'delete', 'expiry', 'manual', 'breakglass', 'drift'));
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete', 'expiry', 'breakglass', 'drift'));
-- At most once: an apply and a revert per version (incident 0), a heal per
-- incident.
ALTER TABLE executions DROP CONSTRAINT executions_name_digest_operation_key;
ALTER TABLE executions ADD CONSTRAINT executions_once_key UNIQUE (name, digest, operation, incident);

---- create above / drop below ----

DELETE FROM execution_targets WHERE execution_id IN (SELECT id FROM executions WHERE operation = 'heal');
DELETE FROM executions WHERE operation = 'heal';
ALTER TABLE executions DROP CONSTRAINT executions_once_key;
ALTER TABLE executions ADD CONSTRAINT executions_name_digest_operation_key UNIQUE (name, digest, operation);
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete', 'expiry', 'breakglass'));
ALTER TABLE executions DROP CONSTRAINT executions_trigger_check;
ALTER TABLE executions ADD CONSTRAINT executions_trigger_check
    CHECK (trigger IN ('merge', 'update', 'delete', 'expiry', 'manual', 'breakglass'));
ALTER TABLE executions DROP CONSTRAINT executions_operation_check;
ALTER TABLE executions ADD CONSTRAINT executions_operation_check CHECK (operation IN ('apply', 'revert'));
ALTER TABLE executions DROP COLUMN incident;
DROP TABLE drift_incidents;
DROP TABLE drift_reports;
DROP TABLE drift_groups;
