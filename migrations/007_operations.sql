-- Operations are judged on their own and checked at the moment of use:
-- every execution carries a typed reason code beside its text (status is
-- never read out of the text), an expiry revert has its own change type,
-- and a hold on a change to policies/ or .writ/ remembers which content it
-- is about and how it ended (an admin may dismiss such a change, never
-- adopt it: adoption needs the signed quorum).
ALTER TABLE executions ADD COLUMN reason_code text NOT NULL DEFAULT ''
    CHECK (reason_code ~ '^[a-z_]{0,40}$');
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete', 'expiry'));

ALTER TABLE holds
    ADD COLUMN meta_key    text NOT NULL DEFAULT '',
    ADD COLUMN resolved_as text NOT NULL DEFAULT ''
        CHECK (resolved_as IN ('', 'acknowledged', 'dismissed', 'adopted', 'released'));
CREATE INDEX holds_dismissed_idx ON holds (meta_key) WHERE resolved_as = 'dismissed';

---- create above / drop below ----

DROP INDEX holds_dismissed_idx;
ALTER TABLE holds DROP COLUMN resolved_as, DROP COLUMN meta_key;
ALTER TABLE executions DROP CONSTRAINT executions_change_type_check;
UPDATE executions SET change_type = 'delete' WHERE change_type = 'expiry';
ALTER TABLE executions ADD CONSTRAINT executions_change_type_check
    CHECK (change_type IN ('create', 'update', 'delete'));
ALTER TABLE executions DROP COLUMN reason_code;
