-- The pending queue (GET /api/v1/pending) lists the operations waiting
-- for statements, and the intake refuses a statement about content whose
-- operation is already done: both look operations up by state and reason,
-- and by digest in any state.
CREATE INDEX executions_signatures_idx ON executions (id) WHERE state = 'waiting' AND reason_code IN ('awaiting_approval', 'plan_changed');
CREATE INDEX executions_digest_idx ON executions (digest);

---- create above / drop below ----

DROP INDEX executions_digest_idx;
DROP INDEX executions_signatures_idx;
