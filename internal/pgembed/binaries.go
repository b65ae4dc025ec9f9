package pgembed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MinMajorVersion is the oldest PostgreSQL major version writ runs on.
const MinMajorVersion = 15

// ErrNoBinaries is returned when no usable PostgreSQL server binaries are
// found on the machine.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// Binaries locates the PostgreSQL server programs writ runs.
type Binaries struct {
	Dir      string // directory holding initdb and postgres
	Initdb   string
	Postgres string
	Major    int // major version, e.g. 15
	Version  string
}

// searchDirs lists candidate binary directories in order of preference:
// an explicit directory, PATH, pg_config --bindir, then the Debian layout
// /usr/lib/postgresql/*/bin (newest first).
func searchDirs(ctx context.Context, explicit string) []string {
	var dirs []string
	if explicit != "" {
		return []string{explicit}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	if pgc, err := exec.LookPath("pg_config"); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(cctx, pgc, "--bindir").Output()
		cancel()
		if err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool {
		return versionOfDir(matches[i]) > versionOfDir(matches[j])
	})
	dirs = append(dirs, matches...)
	return dirs
}

func versionOfDir(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// FindBinaries finds initdb and postgres. explicit, when set, is the only
// directory searched.
func FindBinaries(ctx context.Context, explicit string) (*Binaries, error) {
	var tried []string
	var tooOld []string
	for _, dir := range searchDirs(ctx, explicit) {
		initdb := filepath.Join(dir, "initdb")
		postgres := filepath.Join(dir, "postgres")
		if !isExecutable(initdb) || !isExecutable(postgres) {
			tried = append(tried, dir)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(cctx, postgres, "--version").Output()
		cancel()
		if err != nil {
			tried = append(tried, dir)
			continue
		}
		m := versionRE.FindSubmatch(bytes.TrimSpace(out))
		if m == nil {
			tried = append(tried, dir)
			continue
		}
		major, _ := strconv.Atoi(string(m[1]))
		if major < MinMajorVersion {
			tooOld = append(tooOld, fmt.Sprintf("%s (PostgreSQL %d)", dir, major))
			continue
		}
		return &Binaries{
			Dir:      dir,
			Initdb:   initdb,
			Postgres: postgres,
			Major:    major,
			Version:  strings.TrimSpace(string(out)),
		}, nil
	}
	msg := "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; " +
		fmt.Sprintf("version %d or newer), or pass --database URL to use an existing server", MinMajorVersion)
	if len(tooOld) > 0 {
		return nil, fmt.Errorf("%w: too old: %s; %s", ErrNoBinaries, strings.Join(tooOld, ", "), msg)
	}
	if len(tried) > 0 {
		return nil, fmt.Errorf("%w (looked in %s): %s", ErrNoBinaries, strings.Join(tried, ", "), msg)
	}
	return nil, fmt.Errorf("%w on PATH, via pg_config or under /usr/lib/postgresql/*/bin: %s", ErrNoBinaries, msg)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
