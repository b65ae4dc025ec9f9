-- A hold on the audit log: the running server found the log in the
-- database shorter than, or different from, a checkpoint it knows of
-- (rolled back, truncated or forked). It is acknowledged only with the
-- admins' signed statements (docs/audit.md, "Rollback hold").
ALTER TABLE holds DROP CONSTRAINT holds_kind_check;
ALTER TABLE holds ADD CONSTRAINT holds_kind_check CHECK (kind IN ('history_rewritten', 'meta_change', 'audit_rollback'));

---- create above / drop below ----

DELETE FROM holds WHERE kind = 'audit_rollback';
ALTER TABLE holds DROP CONSTRAINT holds_kind_check;
ALTER TABLE holds ADD CONSTRAINT holds_kind_check CHECK (kind IN ('history_rewritten', 'meta_change'));
