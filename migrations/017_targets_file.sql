-- A block_ip playbook may take its targets from a file of the repository
-- (spec.targetsFile, under indicators/). A version keeps that file's path
-- and its bytes as they were at its commit, beside the playbook's: its
-- content digest covers both, it is judged, executed and reverted from
-- what is stored, never from a later tree, and a commit that changes only
-- the file is found to change the playbooks in force that name it.
ALTER TABLE playbook_versions
    ADD COLUMN targets_path text CHECK (targets_path ~ '^indicators(/[A-Za-z0-9_][A-Za-z0-9._-]*)+$' AND octet_length(targets_path) <= 512),
    ADD COLUMN targets_file bytea CHECK (octet_length(targets_file) <= 8388608),
    ADD CONSTRAINT playbook_versions_targets_pair_check CHECK ((targets_path IS NULL) = (targets_file IS NULL));
CREATE INDEX playbook_versions_targets_path_idx ON playbook_versions (targets_path) WHERE targets_path IS NOT NULL;

---- create above / drop below ----

DROP INDEX playbook_versions_targets_path_idx;
ALTER TABLE playbook_versions DROP CONSTRAINT playbook_versions_targets_pair_check,
    DROP COLUMN targets_file, DROP COLUMN targets_path;
