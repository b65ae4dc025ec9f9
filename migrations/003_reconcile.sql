-- The reconciler's state: where it is in the branch's history, which
-- policies and approvers it trusts, which playbooks are in force, what it is
-- holding on, and every intended operation (apply, revert) from the moment
-- it is intended until it is done.

-- An execution now exists from the moment an operation is intended:
-- waiting (for policy or approvals) -> pending -> executing -> completed |
-- failed; or denied, rejected, cancelled.
ALTER TABLE executions DROP CONSTRAINT executions_state_check;
ALTER TABLE executions ADD CONSTRAINT executions_state_check
    CHECK (state IN ('waiting', 'pending', 'executing', 'completed', 'failed', 'denied', 'rejected', 'cancelled'));
ALTER TABLE executions
    ADD COLUMN path          text NOT NULL DEFAULT '',
    ADD COLUMN action        text NOT NULL DEFAULT '',
    ADD COLUMN environment   text NOT NULL DEFAULT '',
    ADD COLUMN targets       text[] NOT NULL DEFAULT '{}',
    ADD COLUMN trigger       text NOT NULL DEFAULT 'merge' CHECK (trigger IN ('merge', 'update', 'delete', 'expiry', 'manual')),
    ADD COLUMN change_type   text NOT NULL DEFAULT 'create' CHECK (change_type IN ('create', 'update', 'delete')),
    ADD COLUMN decision      jsonb,
    ADD COLUMN policy_digest text NOT NULL DEFAULT '',
    ADD COLUMN plan_digest   text NOT NULL DEFAULT '',
    ADD COLUMN plan          jsonb,
    ADD COLUMN verdict       jsonb,
    ADD COLUMN reason        text NOT NULL DEFAULT '',
    ADD COLUMN manual        boolean NOT NULL DEFAULT false;
DROP INDEX executions_state_idx;
CREATE INDEX executions_runnable_idx ON executions (not_before, id) WHERE state IN ('pending', 'executing');
CREATE INDEX executions_waiting_idx ON executions (id) WHERE state = 'waiting';
CREATE INDEX executions_name_idx ON executions (name, id DESC);
CREATE INDEX executions_waiting_digest_idx ON executions (digest) WHERE state = 'waiting';
-- Which approvals changed lately: the reconciler re-judges only those.
CREATE INDEX approvals_withdrawn_idx ON approvals (withdrawn_at) WHERE withdrawn_at IS NOT NULL;

-- One row: the reconciler's position.
CREATE TABLE repo_state (
    id            integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    branch        text NOT NULL,
    -- the last commit whose changes were processed
    processed_sha text NOT NULL,
    -- the commit whose policies/ and .writ/ are in force
    adopted_sha   text NOT NULL,
    observed_head text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The playbooks present on the branch at processed_sha, by path.
CREATE TABLE active_playbooks (
    path         text PRIMARY KEY CHECK (path <> '' AND path !~ '(^/|(^|/)\.\.(/|$))'),
    name         text NOT NULL UNIQUE,
    version_id   bigint NOT NULL REFERENCES playbook_versions (id),
    since_commit text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Why the reconciler is not moving: rewritten history, or a change to
-- policies/ or .writ/ without the admin quorum.
CREATE TABLE holds (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('history_rewritten', 'meta_change')),
    commit_sha    text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   text NOT NULL DEFAULT '',
    resolution    text NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX holds_open_idx ON holds (kind, commit_sha) WHERE resolved_at IS NULL;

CREATE TABLE processed_commits (
    sha          text PRIMARY KEY,
    parent       text NOT NULL DEFAULT '',
    subject      text NOT NULL DEFAULT '',
    summary      jsonb NOT NULL DEFAULT '{}',
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX processed_commits_at_idx ON processed_commits (processed_at DESC);

---- create above / drop below ----

DROP TABLE processed_commits;
DROP TABLE holds;
DROP TABLE active_playbooks;
DROP TABLE repo_state;
DROP INDEX approvals_withdrawn_idx;
DROP INDEX executions_waiting_digest_idx;
DROP INDEX executions_name_idx;
DROP INDEX executions_waiting_idx;
DROP INDEX executions_runnable_idx;
ALTER TABLE executions
    DROP COLUMN path, DROP COLUMN action, DROP COLUMN environment, DROP COLUMN targets,
    DROP COLUMN trigger, DROP COLUMN change_type, DROP COLUMN decision, DROP COLUMN policy_digest,
    DROP COLUMN plan_digest, DROP COLUMN plan, DROP COLUMN verdict, DROP COLUMN reason, DROP COLUMN manual;
ALTER TABLE executions DROP CONSTRAINT executions_state_check;
ALTER TABLE executions ADD CONSTRAINT executions_state_check CHECK (state IN ('pending', 'executing', 'completed', 'failed'));
CREATE INDEX executions_state_idx ON executions (state, not_before) WHERE state IN ('pending', 'executing');
