-- The tamper-evident audit log (docs/audit.md says why it is built this
-- way). Every table here is append-only: triggers refuse UPDATE,
-- DELETE and TRUNCATE, and the service role should hold only INSERT and
-- SELECT on them. Retention never deletes audit entries.
--
-- Appenders serialize on a transaction-scoped advisory lock and read the
-- newest row of audit_heads; the primary key on seq and the unique
-- prev_hash are the backstop that refuses two entries chained to one
-- predecessor even if a writer skipped the lock.

-- One row: the log's identity, used as the origin line of its checkpoints.
CREATE TABLE audit_log (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    origin     text NOT NULL CHECK (origin ~ '^[A-Za-z0-9][A-Za-z0-9._/:-]{0,254}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_log (origin) VALUES ('writ-audit/' || gen_random_uuid());

-- The entries. entry holds the canonical bytes; every hash and signature is
-- over these bytes. at, actor_id and event repeat fields of the bytes for
-- filtering; verification checks that they agree.
CREATE TABLE audit_entries (
    seq       bigint PRIMARY KEY CHECK (seq >= 0),
    at        timestamptz NOT NULL,
    actor_id  text NOT NULL,
    event     text NOT NULL,
    entry     bytea NOT NULL CHECK (octet_length(entry) BETWEEN 2 AND 1048576),
    prev_hash bytea NOT NULL UNIQUE CHECK (octet_length(prev_hash) = 32),
    hash      bytea NOT NULL CHECK (octet_length(hash) = 32),
    key_id    text NOT NULL CHECK (octet_length(key_id) = 64),
    signature bytea NOT NULL CHECK (octet_length(signature) BETWEEN 1 AND 1024)
);
-- Entry times never decrease with seq, so a BRIN index serves --since/--until.
CREATE INDEX audit_entries_at_idx ON audit_entries USING brin (at);
CREATE INDEX audit_entries_actor_idx ON audit_entries (actor_id, seq);
CREATE INDEX audit_entries_event_idx ON audit_entries (event, seq);

-- One row per append transaction: the log's head after it. The newest row
-- (largest size) is the current head: the number of entries, the hash of
-- the last one, its time, and the RFC 6962 compact range of the Merkle tree
-- (the concatenated 32-byte roots of its perfect subtrees, left to right).
CREATE TABLE audit_heads (
    size       bigint PRIMARY KEY CHECK (size >= 0),
    last_hash  bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    last_at    timestamptz,
    compact    bytea NOT NULL CHECK (octet_length(compact) % 32 = 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_heads (size, last_hash, last_at, compact)
VALUES (0, decode(repeat('00', 32), 'hex'), NULL, ''::bytea);

-- Merkle tree nodes at levels 8, 16, 24, ... (each the root of a perfect
-- subtree of 256, 65536, ... leaves), so a proof needs at most 256 reads
-- per node instead of a pass over the log.
CREATE TABLE audit_tree_nodes (
    level smallint NOT NULL CHECK (level > 0 AND level % 8 = 0),
    idx   bigint NOT NULL CHECK (idx >= 0),
    hash  bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Public keys that have signed entries or checkpoints. Verifiers never trust
-- this table: they trust keys given to them and keys introduced by a trusted
-- rotation entry. It lets an export carry the keys it needs.
CREATE TABLE audit_keys (
    id         text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{64}$'),
    algorithm  text NOT NULL,
    public_key text NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now()
);

-- Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note), also
-- published outside the database.
CREATE TABLE audit_checkpoints (
    id         bigserial PRIMARY KEY,
    size       bigint NOT NULL CHECK (size >= 0),
    root       bytea NOT NULL CHECK (octet_length(root) = 32),
    note       text NOT NULL,
    key_id     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_checkpoints_size_idx ON audit_checkpoints (size DESC, id DESC);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit entries are never changed or deleted (docs/audit.md)';
END
$$;

-- Statement-level, so even an UPDATE or DELETE matching no row is refused,
-- and TRUNCATE (which has only statement-level triggers) is covered.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_heads_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_keys_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_keys
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

---- create above / drop below ----

-- Migrating down never destroys evidence: it refuses while entries exist.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_entries) THEN
        RAISE EXCEPTION 'refusing to drop a non-empty audit log; export it and drop the tables by hand';
    END IF;
END
$$;
DROP TABLE audit_checkpoints;
DROP TABLE audit_keys;
DROP TABLE audit_tree_nodes;
DROP TABLE audit_heads;
DROP TABLE audit_entries;
DROP TABLE audit_log;
DROP FUNCTION audit_refuse_change();
