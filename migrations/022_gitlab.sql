-- GitLab, writ's second forge: the merge requests writ follows, the
-- commit statuses and the report note it writes on them, and where signed
-- statements were read from (a merge request's notes and description).
-- Deliveries share forge_deliveries (021).
CREATE TABLE gitlab_merge_requests (
    project        text NOT NULL CHECK (project <> ''),
    iid            bigint NOT NULL CHECK (iid > 0),
    state          text NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
    target_branch  text NOT NULL,
    head_sha       text NOT NULL DEFAULT '',
    author         text NOT NULL DEFAULT '',
    -- the note writ edits in place with the full report (0: none yet)
    report_note_id bigint NOT NULL DEFAULT 0,
    -- what the note holds: an unchanged report is not written again
    report_digest  text NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, iid)
);
CREATE INDEX gitlab_merge_requests_open_idx ON gitlab_merge_requests (project, updated_at) WHERE state = 'open';

-- The last commit status writ set on a head commit: an unchanged one is not
-- set again.
CREATE TABLE gitlab_commit_statuses (
    project       text NOT NULL,
    head_sha      text NOT NULL CHECK (head_sha ~ '^[0-9a-f]{40,64}$'),
    name          text NOT NULL,
    merge_request bigint NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'running', 'success', 'failed', 'canceled')),
    digest        text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, head_sha, name)
);

-- Where signed statements were read from on GitLab: a note on a merge
-- request or its description, and what came of it. A note GitLab no
-- longer lists was deleted (GitLab sends no webhook for that): its
-- statements are withdrawn and it is recorded as withdrawn.
CREATE TABLE gitlab_statements (
    project       text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('note', 'description')),
    ref_id        bigint NOT NULL,
    merge_request bigint NOT NULL,
    login         text NOT NULL,
    body_sha256   text NOT NULL,
    envelopes     integer NOT NULL DEFAULT 0,
    outcome       text NOT NULL CHECK (outcome IN ('accepted', 'refused', 'no_envelope', 'withdrawn', 'ignored')),
    message       text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project, kind, ref_id)
);
CREATE INDEX gitlab_statements_mr_idx ON gitlab_statements (project, merge_request);

---- create above / drop below ----

DROP TABLE gitlab_statements;
DROP TABLE gitlab_commit_statuses;
DROP TABLE gitlab_merge_requests;
