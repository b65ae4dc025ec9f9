-- Usernames are unique whatever their case: "ADMIN" and "admin" would be
-- two accounts that people, audit readers and approvers cannot tell apart.
-- Accounts made before this that differ only by case stop the migration,
-- named, so that an administrator decides which keeps its name (the others
-- are renamed in the database; a disabled account still clashes) rather
-- than writ picking one.
DO $$
DECLARE
    clashes text;
BEGIN
    SELECT string_agg(names, '; ' ORDER BY names) INTO clashes FROM (
        SELECT string_agg(username, ', ' ORDER BY username) AS names
        FROM users GROUP BY lower(username) HAVING count(*) > 1) c;
    IF clashes IS NOT NULL THEN
        RAISE EXCEPTION 'usernames that differ only by case: %', clashes
            USING HINT = 'rename all but one account of each group (UPDATE users SET username = ''new-name'' WHERE id = ...), then run the migration again';
    END IF;
END
$$;

CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

---- create above / drop below ----

DROP INDEX users_username_lower_key;
