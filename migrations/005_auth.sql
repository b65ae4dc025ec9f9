-- Authentication: what local logins, API tokens and sessions need beyond
-- the core tables (001). Secrets are never stored: passwords as argon2id
-- PHC strings, tokens and session ids as their sha256.

ALTER TABLE users
    ADD COLUMN last_login_at timestamptz,
    ADD CONSTRAINT users_password_hash_check CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%'),
    ADD CONSTRAINT users_failed_logins_check CHECK (failed_logins >= 0);

ALTER TABLE api_tokens
    ADD COLUMN created_by text NOT NULL DEFAULT '',
    ADD CONSTRAINT api_tokens_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$');
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

ALTER TABLE sessions
    ADD COLUMN remote_addr text NOT NULL DEFAULT '' CHECK (octet_length(remote_addr) <= 64);

---- create above / drop below ----

ALTER TABLE sessions DROP COLUMN remote_addr;
DROP INDEX api_tokens_user_idx;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_name_check, DROP COLUMN created_by;
ALTER TABLE users DROP CONSTRAINT users_failed_logins_check, DROP CONSTRAINT users_password_hash_check, DROP COLUMN last_login_at;
