-- Forges: the webhook deliveries of every forge (GitHub, GitLab) share one
-- durable inbox, each delivery stored before it is acknowledged and
-- processed in order per forge. A delivery id, and a body, is unique per
-- forge: the same bytes delivered by two forges are two deliveries.
ALTER TABLE github_deliveries RENAME TO forge_deliveries;
ALTER SEQUENCE github_deliveries_id_seq RENAME TO forge_deliveries_id_seq;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_pkey TO forge_deliveries_pkey;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_delivery_id_check TO forge_deliveries_delivery_id_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_event_check TO forge_deliveries_event_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_payload_check TO forge_deliveries_payload_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_state_check TO forge_deliveries_state_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT github_deliveries_body_sha256_check TO forge_deliveries_body_sha256_check;
ALTER TABLE forge_deliveries ADD COLUMN forge text NOT NULL DEFAULT 'github'
    CONSTRAINT forge_deliveries_forge_check CHECK (forge ~ '^[a-z][a-z0-9-]{0,31}$');
ALTER TABLE forge_deliveries ALTER COLUMN forge DROP DEFAULT;
ALTER TABLE forge_deliveries DROP CONSTRAINT github_deliveries_delivery_id_key;
ALTER TABLE forge_deliveries ADD CONSTRAINT forge_deliveries_delivery_id_key UNIQUE (forge, delivery_id);
ALTER TABLE forge_deliveries DROP CONSTRAINT github_deliveries_body_sha256_key;
ALTER TABLE forge_deliveries ADD CONSTRAINT forge_deliveries_body_sha256_key UNIQUE (forge, body_sha256);
DROP INDEX github_deliveries_queue_idx;
CREATE INDEX forge_deliveries_queue_idx ON forge_deliveries (forge, not_before, id) WHERE state = 'queued';

-- GitLab merge request notes and descriptions are a channel for signed
-- statements, like GitHub's reviews.
ALTER TABLE approvals DROP CONSTRAINT approvals_source_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_source_check CHECK (source IN ('api', 'cli', 'github', 'gitlab', 'import', 'console'));

---- create above / drop below ----

ALTER TABLE approvals DROP CONSTRAINT approvals_source_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_source_check CHECK (source IN ('api', 'cli', 'github', 'import', 'console'));

DROP INDEX forge_deliveries_queue_idx;
CREATE INDEX github_deliveries_queue_idx ON forge_deliveries (not_before, id) WHERE state = 'queued';
ALTER TABLE forge_deliveries DROP CONSTRAINT forge_deliveries_body_sha256_key;
ALTER TABLE forge_deliveries ADD CONSTRAINT github_deliveries_body_sha256_key UNIQUE (body_sha256);
ALTER TABLE forge_deliveries DROP CONSTRAINT forge_deliveries_delivery_id_key;
ALTER TABLE forge_deliveries ADD CONSTRAINT github_deliveries_delivery_id_key UNIQUE (delivery_id);
ALTER TABLE forge_deliveries DROP COLUMN forge;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_body_sha256_check TO github_deliveries_body_sha256_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_state_check TO github_deliveries_state_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_payload_check TO github_deliveries_payload_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_event_check TO github_deliveries_event_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_delivery_id_check TO github_deliveries_delivery_id_check;
ALTER TABLE forge_deliveries RENAME CONSTRAINT forge_deliveries_pkey TO github_deliveries_pkey;
ALTER SEQUENCE forge_deliveries_id_seq RENAME TO github_deliveries_id_seq;
ALTER TABLE forge_deliveries RENAME TO github_deliveries;
