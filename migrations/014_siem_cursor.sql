-- The SIEM forwarder's position per destination (audit.siem in writ.yaml):
-- the next audit seq to send and the hash of the entry before it, which
-- the forwarder compares with the log to notice a log rewritten under its
-- cursor. Bookkeeping, not evidence: rows are updated in place (never
-- append-only like the audit tables), and a row of a destination no
-- longer configured is left alone.
CREATE TABLE siem_cursors (
    destination text PRIMARY KEY CHECK (destination ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    next_seq    bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    last_hash   bytea CHECK (last_hash IS NULL OR length(last_hash) = 32),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((next_seq = 0) = (last_hash IS NULL))
);

---- create above / drop below ----

DROP TABLE siem_cursors;
