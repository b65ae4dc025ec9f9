// Package migrations holds writ's PostgreSQL schema as numbered SQL files,
// embedded in the binary and applied by internal/store with tern.
package migrations

import "embed"

// FS holds the migration files, named NNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
