-- Leadership among replicas sharing one database. The leader holds a
-- session advisory lock on a dedicated connection; each new leader bumps
-- the epoch, and every transaction the leader makes first checks the epoch
-- is still its own (fencing): a deposed leader that has not noticed yet
-- cannot write.
CREATE TABLE leadership (
    id          integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch       bigint NOT NULL DEFAULT 0,
    holder      text NOT NULL DEFAULT '',
    acquired_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO leadership (id) VALUES (1);

-- The notifier's position in the audit log: the next seq to read.
CREATE TABLE notification_cursor (
    id       integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    next_seq bigint NOT NULL DEFAULT 0
);
INSERT INTO notification_cursor (id) VALUES (1);

---- create above / drop below ----

DROP TABLE notification_cursor;
DROP TABLE leadership;
