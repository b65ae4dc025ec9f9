-- Break-glass containment (docs/design.md, Break-glass containment): an
-- emergency apply that ran on one signed break-glass statement must gather
-- its normal quorum by its deadline, or its revert (trigger breakglass,
-- change type breakglass) is recorded. One row per such apply, written in
-- the transaction that records the invocation, before its backend is
-- called.
ALTER TABLE executions DROP CONSTRAINT executions_trigger_check;
ALTER TABLE executions ADD CONSTRAINT executions_trigger_check
    CHECK (trigger IN ('merge', 'update', 'delete', 'expiry', 'manual', 'breakglass'));
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete', 'expiry', 'breakglass'));

CREATE TABLE breakglass (
    execution_id bigint PRIMARY KEY REFERENCES executions (id),
    name         text NOT NULL,
    digest       text NOT NULL,
    environment  text NOT NULL,
    -- The person whose break-glass statement let it run.
    signer       text NOT NULL CHECK (octet_length(signer) BETWEEN 1 AND 128),
    invoked_at   timestamptz NOT NULL,
    deadline     timestamptz NOT NULL CHECK (deadline > invoked_at),
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'confirmed', 'lapsed')),
    -- confirmed: who approved it in time; lapsed: why (no quorum, rejected).
    resolution   text NOT NULL DEFAULT '' CHECK (octet_length(resolution) <= 4096),
    resolved_at  timestamptz,
    revert_id    bigint REFERENCES executions (id),
    CHECK ((state = 'open') = (resolved_at IS NULL))
);
CREATE INDEX breakglass_open_idx ON breakglass (deadline) WHERE state = 'open';

---- create above / drop below ----

DROP TABLE breakglass;
DELETE FROM executions WHERE trigger = 'breakglass';
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete', 'expiry'));
ALTER TABLE executions DROP CONSTRAINT executions_trigger_check;
ALTER TABLE executions ADD CONSTRAINT executions_trigger_check
    CHECK (trigger IN ('merge', 'update', 'delete', 'expiry', 'manual'));
