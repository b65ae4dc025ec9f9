package main

import (
	"context"
	"path/filepath"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/action/blocklist"
	"github.com/writ-sec/writ/internal/playbook"
)

// backendRegistry builds the action backends commands dry-run against: the
// embedded default is a blocklist file per environment for block_ip, in
// DATA_DIR/blocklist/ENVIRONMENT.txt.
func backendRegistry(g *globals) (*action.Registry, error) {
	reg := action.NewRegistry()
	dir := filepath.Join(g.dataDir, "blocklist")
	reg.RegisterFactory("block_ip", func(env string) (action.Backend, error) {
		return blocklist.New(blocklist.Options{
			Path: filepath.Join(dir, env+".txt"),
			Name: "blocklist:" + env,
		})
	})
	return reg, nil
}

// dryRun plans a playbook's apply on its backend: what it would change,
// read from live state, changing nothing. Its digest is what approvals
// cite as planDigest.
func dryRun(ctx context.Context, reg *action.Registry, pb *playbook.Playbook) (*action.Plan, error) {
	return reg.Plan(ctx, action.RequestFor(pb, action.Apply))
}
