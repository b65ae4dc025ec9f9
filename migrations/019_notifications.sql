-- Notifications go to named channels (notifications.channels in
-- writ.yaml), each with its own position in the audit log, so that a
-- failing mail server delays its own channel and no other. Channels seen
-- for the first time start where the furthest existing channel stands or,
-- before any, where the single notifier of earlier versions stood
-- (notification_cursor): an upgrade neither resends nor skips, and a
-- channel added later starts from then instead of replaying the log.
-- Bookkeeping, not evidence: rows are updated in place; a row of a
-- channel no longer configured is left alone.
CREATE TABLE notification_channel_cursors (
    channel    text PRIMARY KEY CHECK (channel ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    next_seq   bigint NOT NULL DEFAULT 0 CHECK (next_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Playbook files on the branch that are not valid playbooks, with their
-- located problems: shown by the API until a later commit fixes or
-- deletes the file. One row per path, replaced by each commit that
-- touches it.
CREATE TABLE invalid_playbooks (
    path       text PRIMARY KEY CHECK (octet_length(path) BETWEEN 1 AND 1024),
    commit_sha text NOT NULL CHECK (commit_sha ~ '^[0-9a-f]{40}([0-9a-f]{24})?$'),
    problems   jsonb NOT NULL CHECK (jsonb_typeof(problems) = 'array'),
    since      timestamptz NOT NULL DEFAULT now()
);

---- create above / drop below ----

DROP TABLE invalid_playbooks;
DROP TABLE notification_channel_cursors;
