-- What is contained now (store.Containment): the console searches the
-- targets writ acted on by address. A target is text as the playbook wrote
-- it; writ_target_inet reads it as an address or prefix, or NULL when it is
-- none (a user, a host, a team action's free text), never an error, so a
-- search never fails on a row. It is immutable (inet input is), so it can
-- be indexed: the GiST index answers "every target covering this address"
-- (>>=) and "every target inside this prefix" (<<=) without reading the
-- table. The second index answers case-insensitive exact-or-prefix search
-- of user and host names, by byte range.

CREATE FUNCTION writ_target_inet(target text) RETURNS inet
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    -- Only a dotted quad or text with a colon, of address characters, may
    -- be an address; the rest returns at once, without the subtransaction
    -- the exception block below costs.
    IF NOT (target ~ '^[0-9]{1,3}(\.[0-9]{1,3}){3}(/[0-9]{1,2})?$'
            OR target ~ '^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/[0-9]{1,3})?$') THEN
        RETURN NULL;
    END IF;
    BEGIN
        RETURN target::inet;
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;
END
$$;

CREATE INDEX execution_targets_inet_idx ON execution_targets USING gist (writ_target_inet(target) inet_ops);
CREATE INDEX execution_targets_lower_idx ON execution_targets ((lower(target) COLLATE "C"));

---- create above / drop below ----

DROP INDEX execution_targets_lower_idx;
DROP INDEX execution_targets_inet_idx;
DROP FUNCTION writ_target_inet(text);
