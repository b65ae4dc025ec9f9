-- Idempotency keys of `writ audit append --idempotency-key K`: the first
-- append with a key records the seq of its entry in the same transaction,
-- so a retry (after a timeout, a lost answer) finds it and answers with
-- that entry instead of appending a duplicate. The key is not part of the
-- signed entry: it is a client's retry token, not evidence, and the entry
-- bytes keep their format. Append-only like the other audit tables.
CREATE TABLE audit_idempotency (
    key        text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 256),
    seq        bigint NOT NULL UNIQUE, -- no foreign key: it would keep TRUNCATE audit_entries (a tamper test) from running
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER audit_idempotency_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_idempotency
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

---- create above / drop below ----

DROP TABLE audit_idempotency;
