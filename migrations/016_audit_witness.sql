-- Witness cosignatures of audit checkpoints. writ sends each checkpoint
-- it records to the witnesses of audit.witnesses (C2SP tlog-witness); a
-- witness that verified the checkpoint's signature and its consistency
-- with what it cosigned before answers with cosignature lines (C2SP
-- tlog-cosignature) over the checkpoint's body: origin, size and root.
-- Each row is one such line, checked with the witness's configured key
-- before it is stored, with the tree it cosigns, so verifiers can put the
-- checkpoint note back together and check the line offline. A witness never
-- cosigns two trees that do not extend one another: a cosigned checkpoint
-- is evidence that holds against whoever runs the database. Append-only
-- like the other audit tables.
CREATE TABLE audit_witness_cosignatures (
    id          bigserial PRIMARY KEY,
    witness     text NOT NULL CHECK (length(witness) BETWEEN 1 AND 256), -- the configured name
    witness_key text NOT NULL CHECK (length(witness_key) BETWEEN 1 AND 4096), -- its verifier key, as configured
    size        bigint NOT NULL CHECK (size >= 0),
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    signature   text NOT NULL CHECK (length(signature) BETWEEN 1 AND 8192), -- the signature line, "— <name> <base64>\n"
    cosigned_at timestamptz NOT NULL, -- the time the cosignature carries
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (signature)
);
CREATE INDEX audit_witness_cosignatures_key_idx ON audit_witness_cosignatures (witness_key, size DESC, id DESC);
CREATE INDEX audit_witness_cosignatures_tree_idx ON audit_witness_cosignatures (size, root);

CREATE TRIGGER audit_witness_cosignatures_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_witness_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

---- create above / drop below ----

DROP TABLE audit_witness_cosignatures;
