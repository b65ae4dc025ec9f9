-- A statement is withdrawn, not one of its envelopes (docs/design.md,
-- rule 2). The same signed statement may arrive in other bytes: other JSON
-- spacing, another base64 alphabet or key id hint, even another valid
-- signature (anyone can derive a second ECDSA signature from the first
-- without the key). So:
--
-- approvals.statement_sha256 is the sha256 of the statement itself (the
-- envelope's decoded payload), whatever envelope carried it. A statement
-- any of whose envelopes is withdrawn counts through none of them, and is
-- refused when it comes again.
--
-- approval_submissions records every channel reference a statement came
-- through (a GitHub review, a GitLab note, an API call), the first
-- envelope and every later one alike, so that dismissing a review
-- withdraws its statements even when the same bytes had come first
-- through another channel.
ALTER TABLE approvals ADD COLUMN statement_sha256 text;
UPDATE approvals SET statement_sha256 = encode(sha256(decode(
    translate(convert_from(envelope, 'UTF8')::jsonb ->> 'payload', '-_', '+/'), 'base64')), 'hex');
ALTER TABLE approvals ALTER COLUMN statement_sha256 SET NOT NULL;
ALTER TABLE approvals ADD CONSTRAINT approvals_statement_sha256_check CHECK (statement_sha256 ~ '^[0-9a-f]{64}$');
CREATE INDEX approvals_statement_idx ON approvals (statement_sha256);

CREATE TABLE approval_submissions (
    source           text NOT NULL,
    source_ref       text NOT NULL,
    statement_sha256 text NOT NULL CHECK (statement_sha256 ~ '^[0-9a-f]{64}$'),
    first_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_ref, statement_sha256)
);
INSERT INTO approval_submissions (source, source_ref, statement_sha256, first_at)
    SELECT source, source_ref, statement_sha256, min(received_at) FROM approvals GROUP BY 1, 2, 3;

---- create above / drop below ----

DROP TABLE approval_submissions;
DROP INDEX approvals_statement_idx;
ALTER TABLE approvals DROP COLUMN statement_sha256;
