-- GitHub: every accepted webhook delivery, stored before it is
-- acknowledged and processed in order from here; the pull requests writ
-- follows; the check runs it wrote; the reviews, descriptions and comments
-- it read signed statements from; the GitHub App's installations.

CREATE TABLE github_deliveries (
    id           bigserial PRIMARY KEY,
    -- X-GitHub-Delivery: a redelivered or replayed delivery is stored once.
    delivery_id  text NOT NULL UNIQUE CHECK (delivery_id ~ '^[A-Za-z0-9._:-]{1,128}$'),
    event        text NOT NULL CHECK (event ~ '^[a-z_]{1,64}$'),
    action       text NOT NULL DEFAULT '',
    payload      bytea NOT NULL CHECK (octet_length(payload) <= 26214400),
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- queued: to process (again, after not_before); done; failed: gave up.
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    -- a claimed delivery's lease: a processor that dies leaves it to be
    -- claimed again once this passes.
    not_before   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    outcome      text NOT NULL DEFAULT '',
    last_error   text NOT NULL DEFAULT ''
);
CREATE INDEX github_deliveries_queue_idx ON github_deliveries (not_before, id) WHERE state = 'queued';

CREATE TABLE github_pull_requests (
    repository          text NOT NULL,
    number              integer NOT NULL CHECK (number > 0),
    state               text NOT NULL CHECK (state IN ('open', 'closed', 'merged')),
    base_ref            text NOT NULL,
    head_sha            text NOT NULL,
    author              text NOT NULL DEFAULT '',
    -- logins writ asked for a review, so it asks once
    requested_reviewers text[] NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, number)
);
CREATE INDEX github_pull_requests_open_idx ON github_pull_requests (repository, updated_at) WHERE state = 'open';

CREATE TABLE github_check_runs (
    repository         text NOT NULL,
    head_sha           text NOT NULL CHECK (head_sha ~ '^[0-9a-f]{40,64}$'),
    name               text NOT NULL,
    check_run_id       bigint NOT NULL,
    pull_request       integer NOT NULL,
    conclusion         text NOT NULL DEFAULT '',
    -- what was written last: an unchanged output is not written again, and
    -- annotations (which GitHub appends) are sent once per check run
    output_digest      text NOT NULL DEFAULT '',
    annotations_digest text NOT NULL DEFAULT '',
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, head_sha, name)
);

-- Where signed statements were read from on GitHub: a review, a pull
-- request's description or a comment, and what came of it.
CREATE TABLE github_statements (
    repository   text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('review', 'description', 'comment')),
    ref_id       bigint NOT NULL,
    pull_request integer NOT NULL,
    login        text NOT NULL,
    -- the review's state as GitHub reported it (approved, commented, ...)
    state        text NOT NULL DEFAULT '',
    body_sha256  text NOT NULL,
    envelopes    integer NOT NULL DEFAULT 0,
    outcome      text NOT NULL CHECK (outcome IN ('accepted', 'refused', 'no_envelope', 'withdrawn', 'ignored')),
    message      text NOT NULL DEFAULT '',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository, kind, ref_id)
);
CREATE INDEX github_statements_pr_idx ON github_statements (repository, pull_request);

CREATE TABLE github_installations (
    installation_id bigint PRIMARY KEY,
    account         text NOT NULL DEFAULT '',
    action          text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

---- create above / drop below ----

DROP TABLE github_installations;
DROP TABLE github_statements;
DROP TABLE github_check_runs;
DROP TABLE github_pull_requests;
DROP TABLE github_deliveries;
