-- Approvals signed with a passkey in the web console arrive through the
-- console: their source says so (the signature, not the channel, is the
-- authority, as for every source).
ALTER TABLE approvals DROP CONSTRAINT approvals_source_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_source_check CHECK (source IN ('api', 'cli', 'github', 'import', 'console'));

---- create above / drop below ----

ALTER TABLE approvals DROP CONSTRAINT approvals_source_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_source_check CHECK (source IN ('api', 'cli', 'github', 'import'));
