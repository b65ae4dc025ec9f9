-- A webhook's signature covers its body only: X-GitHub-Delivery is not
-- signed, so a captured delivery re-sent under a new delivery id passed a
-- dedupe on the id alone and was processed again. The sha256 of the signed
-- body is unique too: a body already stored is never queued again,
-- whatever its delivery id. Deliveries, and so their digests, are never
-- deleted (retention leaves them).
ALTER TABLE github_deliveries ADD COLUMN body_sha256 text CHECK (body_sha256 ~ '^[0-9a-f]{64}$');

-- Deliveries stored before this migration: the digest of their payload,
-- which is the body for application/json (a form-encoded body is not kept,
-- so its replay is caught by the id alone). When one payload was stored
-- more than once (replays that got in), the first keeps the digest and the
-- others stay NULL; every delivery stored from now on has one.
UPDATE github_deliveries d SET body_sha256 = first.digest
FROM (
    SELECT DISTINCT ON (digest) id, digest
    FROM (SELECT id, encode(sha256(payload), 'hex') AS digest FROM github_deliveries) x
    ORDER BY digest, id
) first
WHERE d.id = first.id;

ALTER TABLE github_deliveries ADD CONSTRAINT github_deliveries_body_sha256_key UNIQUE (body_sha256);

---- create above / drop below ----

ALTER TABLE github_deliveries DROP COLUMN body_sha256;
