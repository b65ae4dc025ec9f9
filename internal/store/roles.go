package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ServiceRole is the role writ serve and the other commands run as in the
// private cluster. It is not a superuser, owns nothing, and holds exactly
// the grants GrantService gives (docs/audit.md, "Hardening the database").
const ServiceRole = "writ_service"

// appendOnlySuffix names the statement trigger that refuses UPDATE, DELETE
// and TRUNCATE on an audit table (migrations/002_audit.sql). A table with
// such a trigger is an append-only table: the service role may only read and
// insert there.
const appendOnlySuffix = "_append_only"

// readOnlyTables are tables the service role may only read: the log's
// identity, written once by the migration, and tern's version bookkeeping.
var readOnlyTables = []string{"audit_log", versionTable}

// EnsureServiceRole creates role as a login role with no attribute that
// lifts a check (not a superuser, no CREATEDB, CREATEROLE, REPLICATION or
// BYPASSRLS), or resets those attributes when it exists. It needs a
// superuser (or CREATEROLE) connection.
func (s *Store) EnsureServiceRole(ctx context.Context, role string) error {
	if !validRoleName(role) {
		return fmt.Errorf("store: role name %q: use lower-case letters, digits and _", role)
	}
	id := pgx.Identifier{role}.Sanitize()
	const attrs = " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT"
	var exists bool
	if err := s.db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, role).Scan(&exists); err != nil {
		return fmt.Errorf("store: look up role %s: %w", role, err)
	}
	q := "CREATE ROLE " + id + attrs
	if exists {
		q = "ALTER ROLE " + id + attrs
	}
	if _, err := s.db.Exec(ctx, q); err != nil {
		return fmt.Errorf("store: ensure role %s: %w", role, err)
	}
	return nil
}

func validRoleName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ServiceGrants lists, per table of the current schema, the privileges
// GrantService gives: SELECT on read-only tables, SELECT and INSERT on
// append-only ones, SELECT, INSERT, UPDATE and DELETE on the rest.
func (s *Store) ServiceGrants(ctx context.Context) (map[string][]string, error) {
	rows, err := s.db.Query(ctx, `
		SELECT c.relname,
		       EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = c.relname || $1)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
		ORDER BY c.relname`, appendOnlySuffix)
	if err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	grants := map[string][]string{}
	for rows.Next() {
		var name string
		var appendOnly bool
		if err := rows.Scan(&name, &appendOnly); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list tables: %w", err)
		}
		switch {
		case slices.Contains(readOnlyTables, name):
			grants[name] = []string{"SELECT"}
		case appendOnly:
			grants[name] = []string{"SELECT", "INSERT"}
		default:
			grants[name] = []string{"SELECT", "INSERT", "UPDATE", "DELETE"}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list tables: %w", err)
	}
	return grants, nil
}

// GrantService gives role exactly the privileges ServiceGrants lists on
// every table of the current schema, USAGE on its sequences, and nothing
// else: whatever it held on these tables before is revoked first, in the
// same transaction. Run it as the tables' owner after every migration.
func (s *Store) GrantService(ctx context.Context, role string) error {
	if !validRoleName(role) {
		return fmt.Errorf("store: role name %q: use lower-case letters, digits and _", role)
	}
	return s.Tx(ctx, func(tx *Store) error {
		grants, err := tx.ServiceGrants(ctx)
		if err != nil {
			return err
		}
		id := pgx.Identifier{role}.Sanitize()
		schema := "current_schema()"
		var name string
		if err := tx.db.QueryRow(ctx, "SELECT "+schema).Scan(&name); err != nil {
			return fmt.Errorf("store: current schema: %w", err)
		}
		sch := pgx.Identifier{name}.Sanitize()
		stmts := []string{
			"REVOKE ALL ON ALL TABLES IN SCHEMA " + sch + " FROM " + id,
			"REVOKE ALL ON ALL SEQUENCES IN SCHEMA " + sch + " FROM " + id,
			"GRANT USAGE ON SCHEMA " + sch + " TO " + id,
			"GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + sch + " TO " + id,
		}
		tables := make([]string, 0, len(grants))
		for t := range grants {
			tables = append(tables, t)
		}
		slices.Sort(tables)
		for _, t := range tables {
			stmts = append(stmts, "GRANT "+strings.Join(grants[t], ", ")+" ON "+pgx.Identifier{name, t}.Sanitize()+" TO "+id)
		}
		for _, q := range stmts {
			if _, err := tx.db.Exec(ctx, q); err != nil {
				return fmt.Errorf("store: grant to %s: %s: %w", role, q, err)
			}
		}
		return nil
	})
}

// RoleRisk is one way the connected role can get past the audit tables'
// append-only triggers.
type RoleRisk struct {
	Table  string // empty for the role as a whole
	Reason string
}

func (r RoleRisk) String() string {
	if r.Table == "" {
		return r.Reason
	}
	return r.Table + ": " + r.Reason
}

// AuditBypassRisks reports how role (the connected role when empty) could
// change or remove audit entries despite the triggers: as a superuser, by
// setting session_replication_role (which skips triggers), as the owner of
// an audit table (ALTER TABLE … DISABLE TRIGGER, DROP), or through UPDATE,
// DELETE or TRUNCATE privileges that only the trigger stands in front of.
// Empty when the role holds exactly what docs/audit.md lists.
func (s *Store) AuditBypassRisks(ctx context.Context, role string) ([]RoleRisk, error) {
	var risks []RoleRisk
	var user string
	var super, canSetSRR bool
	err := s.db.QueryRow(ctx, `
		SELECT r.rolname, r.rolsuper,
		       CASE WHEN current_setting('server_version_num')::int >= 150000
		            THEN has_parameter_privilege(r.rolname, 'session_replication_role', 'SET')
		            ELSE false END
		FROM pg_roles r WHERE r.rolname = COALESCE(NULLIF($1, ''), current_user)`, role).Scan(&user, &super, &canSetSRR)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store: role %q does not exist", role)
	}
	if err != nil {
		return nil, fmt.Errorf("store: inspect role: %w", err)
	}
	if super {
		return []RoleRisk{{Reason: fmt.Sprintf("role %s is a superuser: it can SET session_replication_role = replica and skip every trigger", user)}}, nil
	}
	if canSetSRR {
		risks = append(risks, RoleRisk{Reason: fmt.Sprintf("role %s may SET session_replication_role, which skips every trigger", user)})
	}
	rows, err := s.db.Query(ctx, `
		SELECT c.relname, pg_get_userbyid(c.relowner),
		       pg_has_role($2::name, c.relowner, 'USAGE'),
		       has_table_privilege($2::name, c.oid, 'UPDATE'),
		       has_table_privilege($2::name, c.oid, 'DELETE'),
		       has_table_privilege($2::name, c.oid, 'TRUNCATE'),
		       has_table_privilege($2::name, c.oid, 'TRIGGER')
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
		  AND EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = c.relname || $1)
		ORDER BY c.relname`, appendOnlySuffix, user)
	if err != nil {
		return nil, fmt.Errorf("store: inspect audit table privileges: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var table, owner string
		var owns, upd, del, trunc, trig bool
		if err := rows.Scan(&table, &owner, &owns, &upd, &del, &trunc, &trig); err != nil {
			return nil, fmt.Errorf("store: inspect audit table privileges: %w", err)
		}
		if owns {
			risks = append(risks, RoleRisk{Table: table, Reason: fmt.Sprintf("owned by %s, whose rights role %s has: ALTER TABLE … DISABLE TRIGGER or DROP TABLE removes the protection", owner, user)})
			continue
		}
		var privs []string
		for _, p := range []struct {
			ok   bool
			name string
		}{{upd, "UPDATE"}, {del, "DELETE"}, {trunc, "TRUNCATE"}, {trig, "TRIGGER"}} {
			if p.ok {
				privs = append(privs, p.name)
			}
		}
		if len(privs) > 0 {
			risks = append(risks, RoleRisk{Table: table, Reason: fmt.Sprintf("role %s holds %s; only the trigger stands in the way", user, strings.Join(privs, ", "))})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: inspect audit table privileges: %w", err)
	}
	return risks, nil
}
