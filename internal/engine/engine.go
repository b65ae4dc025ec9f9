// Package engine builds writ's server from its configuration and runs
// it, the way OPA's runtime does for OPA: the HTTP server with the API,
// the console and the forges' webhooks; the audit log with its
// checkpoints, witnesses and rollback watch; the git source; the
// reconciler and executor; notifications, SIEM forwarding, retention; and
// leadership among replicas, with the single-writer jobs on the leader
// only. cmd/writ maps its flags to Options and calls Run. The design and
// the trust rules it wires are in docs/design.md.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/action"
	"github.com/writ-sec/writ/internal/approval"
	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/gitsrc"
	"github.com/writ-sec/writ/internal/leader"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/notify"
	"github.com/writ-sec/writ/internal/policy"
	"github.com/writ-sec/writ/internal/reconcile"
	"github.com/writ-sec/writ/internal/retention"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/store"
	"github.com/writ-sec/writ/policies"
)

// Options is what the engine is built from.
type Options struct {
	// Config is the server configuration (writ.yaml). Required.
	Config *config.Config
	// DataDir holds writ's state: the private PostgreSQL cluster, the
	// audit key and checkpoints, the clone of a remote repository, the
	// default blocklists. Required.
	DataDir string
	// Repository overrides repository.url: a local path or a remote URL.
	// With neither, only the database and the health endpoints run.
	Repository string
	// Branch overrides repository.branch.
	Branch string
	// PollInterval overrides repository.pollInterval.
	PollInterval time.Duration
	// Listen overrides the listen address.
	Listen string
	// OpenDatabase opens and migrates the database; the engine calls it
	// once the listener is bound (a taken port fails first). Required.
	OpenDatabase func(ctx context.Context) (*Database, error)
	// Backends builds the action backends. Required.
	Backends func(ctx context.Context, cfg *config.Config, log *slog.Logger) (*action.Registry, error)
	// Getenv resolves secret references (…Env). Default os.Getenv.
	Getenv func(string) string
	// Stderr receives the first admin's one-time password, once. Default
	// os.Stderr.
	Stderr io.Writer
	// Version names writ to remote APIs (User-Agent).
	Version string
	Logger  *slog.Logger
}

// Database is the database the engine runs on.
type Database struct {
	Store *store.Store
	// Supervise, when set, runs until ctx ends and keeps the database up
	// (the private cluster is restarted if it exits).
	Supervise func(ctx context.Context)
	// AuditBypassRisks are the ways the database role could get past the
	// audit tables' append-only triggers (metric).
	AuditBypassRisks []store.RoleRisk
	// Close releases it.
	Close func()
}

// Run builds the server and runs it until ctx ends or a part fails.
func Run(ctx context.Context, o Options) error {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, log := o.Config, o.Logger
	if cfg == nil || o.DataDir == "" || o.OpenDatabase == nil || o.Backends == nil {
		return errors.New("engine: Config, DataDir, OpenDatabase and Backends are required")
	}
	listen := cfg.ListenAddr()
	if o.Listen != "" {
		listen = o.Listen
	}
	m := metrics.New()
	so := server.Options{Listen: listen, Logger: log, Metrics: m}
	if cfg.TLS != nil {
		so.TLSCertFile, so.TLSKeyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
	}
	srv, err := server.New(so)
	if err != nil {
		return err
	}
	srv.Handle("GET /metrics", m.Handler())
	// Bind first: a taken port should fail before PostgreSQL starts.
	if err := srv.Listen(); err != nil {
		return err
	}
	repoURL := cfg.Repository.URL
	if o.Repository != "" {
		repoURL = o.Repository
	}
	if repoURL != "" && !strings.Contains(repoURL, "://") {
		if err := checkDataDirOutside(o.DataDir, repoURL); err != nil {
			return err
		}
	}
	db, err := o.OpenDatabase(ctx)
	if err != nil {
		return err
	}
	if db.Close != nil {
		defer db.Close()
	}
	risks := db.AuditBypassRisks
	m.Gauge("database_audit_bypass_risks", "Ways the database role writ runs as could get past the audit tables' append-only triggers (0 when it holds only the documented grants).",
		func(context.Context) (float64, error) { return float64(len(risks)), nil })
	srv.AddCheck("database", func(ctx context.Context) (string, error) {
		return "", db.Store.Ready(ctx)
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	running := 0
	if repoURL != "" {
		rec, err := startEngine(ctx, o, repoURL, db.Store, srv, m)
		if err != nil {
			return err
		}
		running++
		go func() { errc <- rec() }()
	} else {
		log.WarnContext(ctx, "no repository configured: only the health endpoints run (pass --repo PATH or set repository.url)")
	}
	if db.Supervise != nil {
		go db.Supervise(ctx)
	}
	running++
	go func() { errc <- srv.Run(ctx) }()
	var first error
	for range running {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return first
	}
	log.Info("stopped")
	return nil
}

// startEngine builds the audit log, the git source and the reconciler,
// mounts the API and the webhooks, and returns the function that campaigns
// for leadership and, while this replica leads, runs the single-writer jobs:
// the reconciler and executor (on a store fenced by the leader epoch),
// audit checkpoints, GitHub delivery processing, notifications, SIEM
// forwarding, retention.
// Every replica serves the API and accepts webhooks.
func startEngine(ctx context.Context, o Options, repoURL string, st *store.Store, srv *server.Server, m *metrics.Metrics) (func() error, error) {
	cfg, log := o.Config, o.Logger
	m.Gauge("approvals_pending", "Operations waiting for approvals or a decision.", func(ctx context.Context) (float64, error) {
		n, err := st.CountWaitingExecutions(ctx)
		return float64(n), err
	})
	key, err := auditKey(o.DataDir, cfg, log, o.Getenv)
	if err != nil {
		return nil, err
	}
	alog, err := audit.NewLog(audit.LogOptions{Store: st, Key: key, Logger: log})
	if err != nil {
		return nil, err
	}
	sinks := []audit.Sink{audit.DirSink{Dir: CheckpointDir(o.DataDir, cfg)}}
	if !strings.Contains(repoURL, "://") && !IsSCPLike(repoURL) {
		sinks = append(sinks, audit.GitSink{Repo: repoURL, Ref: cfg.Audit.CheckpointRef})
	}
	// One health record of the sinks for the process (a checkpointer is
	// made per leadership term): metrics, and a readiness check that fails
	// only when a sink proves the log rolled back or forked.
	sinkHealth := audit.NewSinkMonitor(func(h audit.SinkHealth) { m.CheckpointSink(h.Sink, h.OK, h.NotContained, h.LastSuccess) })
	sinkHealth.Track(sinks...)
	srv.AddCheck("audit checkpoint sinks", func(context.Context) (string, error) { return sinkHealth.Readiness() })
	witnesses, err := auditWitnesses(cfg)
	if err != nil {
		return nil, err
	}
	// One health record of the witnesses for the process too: metrics, and
	// a readiness detail that never fails the check (a third party's
	// refusal or absence must not take the server out of service; see
	// audit.WitnessMonitor.Readiness).
	witnessHealth := audit.NewWitnessMonitor(func(h audit.WitnessHealth) {
		m.AuditWitness(h.Witness, h.Attempted, h.OK, h.Refusal != "", h.CosignedSize, h.LastCosigned)
	})
	if len(witnesses) > 0 {
		witnessHealth.Track(witnesses...)
		srv.AddCheck("audit witnesses", func(context.Context) (string, error) { return witnessHealth.Readiness() })
	}
	// The leader's guard against a rolled-back audit log (CheckAuditLog).
	watch := audit.NewRollbackWatch(st, CheckpointDir(o.DataDir, cfg))
	// Every checkpoint interval the leader also verifies every entry (hash,
	// chain, signature, key, tree) with the keys POST /api/v1/audit/verify
	// trusts, one core at most: a log changed in place holds like one
	// rolled back.
	scrubKeys, err := trustedAuditKeys(cfg, alog)
	if err != nil {
		return nil, err
	}
	watch.SetVerifier(func(ctx context.Context) (*audit.Report, error) {
		trusted, err := audit.TrustPredecessors(ctx, st, scrubKeys)
		if err != nil {
			return nil, err
		}
		return audit.VerifyDatabase(ctx, st, audit.VerifyOptions{Trusted: trusted, Workers: 1})
	})
	m.Gauge("audit_rollback_detected", "1 while the audit log is held: it no longer contains a checkpoint this server knows of.", func(context.Context) (float64, error) {
		if watch.Held() != nil {
			return 1, nil
		}
		return 0, nil
	})
	srv.AddCheck("audit log", func(context.Context) (string, error) {
		if rb := watch.Held(); rb != nil {
			return "", errors.New(rb.Reason() + "; nothing executes until the admins sign its acknowledgement (docs/audit.md)")
		}
		if t := watch.Seen(); t != nil {
			return fmt.Sprintf("contains the %d entries this server saw", t.Size), nil
		}
		return "", nil
	})
	secret, err := config.ResolveSecret(o.Getenv, cfg.Repository.PasswordEnv, cfg.Repository.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("repository password: %w", err)
	}
	passphrase, err := config.ResolveSecret(o.Getenv, cfg.Repository.SSHKeyPassphraseEnv, "")
	if err != nil {
		return nil, fmt.Errorf("repository SSH key passphrase: %w", err)
	}
	branch := cfg.Branch()
	if o.Branch != "" {
		branch = o.Branch
	}
	tokens, err := repositoryTokens(cfg, repoURL, o.Getenv, o.Version)
	if err != nil {
		return nil, err
	}
	src, err := gitsrc.Open(ctx, gitsrc.Options{
		URL: repoURL, Branch: branch, CacheDir: filepath.Join(o.DataDir, "repository"),
		Username: cfg.Repository.Username, Password: secret.Value(), PasswordFunc: tokens,
		SSHKeyFile: cfg.Repository.SSHKeyFile, SSHKeyPassphrase: passphrase.Value(), KnownHostsFile: cfg.Repository.KnownHostsFile,
	})
	if err != nil {
		return nil, err
	}
	reg, err := o.Backends(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	poll := cfg.PollInterval()
	if o.PollInterval > 0 {
		poll = o.PollInterval
	}
	host, _ := os.Hostname()
	replica := fmt.Sprintf("%s-%d", host, os.Getpid())
	engine := &engineFacade{store: st, log: log}
	repository, maxPlaybooks := cfg.RepositoryName(), 0
	if cfg.GitHub != nil {
		maxPlaybooks = cfg.GitHub.MaxPlaybooks
	}
	if repository == "" {
		if repository, err = gitsrc.IdentityOf(repoURL); err != nil {
			return nil, err
		}
	}
	log.InfoContext(ctx, "repository identity: signed statements must name it", slog.String("repository", repository))
	recovery, recoveryApprovals, err := RecoveryKeyring(cfg)
	if err != nil {
		return nil, err
	}
	// Envelopes refused at the door are audited within bounds on every
	// replica (anyone may post junk to the approvals route).
	refusals, err := reconcile.NewRefusalAuditor(audit.BoundedOptions{Log: alog, Store: st, Logger: log})
	if err != nil {
		return nil, err
	}
	api, err := reconcile.New(reconcile.Options{
		Recovery: recovery, RecoveryApprovals: recoveryApprovals,
		Source: src, Store: st, Audit: alog, Backends: reg, Refusals: refusals,
		Catalog: cfg.Catalog(), Environments: Environments(cfg), DefaultPolicies: policies.FS,
		Approval:      approval.Options{MaxAge: cfg.ApprovalMaxAge(), ClockSkew: cfg.ClockSkew(), RelaxProposal: !cfg.RequireProposal()},
		MetaApprovals: cfg.AdminApprovals(), BreakGlassWindow: cfg.BreakGlassWindow(), Repository: repository, PollInterval: poll, Logger: log, Metrics: m,
		MaxPlaybooksPerChange: maxPlaybooks, OnNudge: engine.forwardNudge, AuditWatch: watch,
		Drift: reconcile.DriftOptions{Interval: cfg.DriftInterval(), Modes: cfg.DriftModes()},
	})
	if err != nil {
		return nil, err
	}
	engine.Reconciler = api
	mounted, err := MountAPI(ctx, APIParams{Config: cfg, Engine: engine, Store: st, Audit: alog, Checkpointer: engine, Server: srv, Logger: log, Getenv: o.Getenv, Stderr: o.Stderr})
	if err != nil {
		return nil, err
	}
	forges, err := newForges(ctx, cfg, api, src, st, log, o.Getenv, o.Version, repository)
	if err != nil {
		return nil, err
	}
	mountForges(srv, forges)
	var notifier *notify.Notifier
	if cfg.Notifications != nil {
		if notifier, err = newNotifier(cfg, st, api.KeyringInForce, log, m, o.Getenv); err != nil {
			return nil, err
		}
	}
	forwarders, err := setupSIEM(cfg, st, srv, log, m, o.Getenv)
	if err != nil {
		return nil, err
	}
	el, err := leader.New(leader.Options{Store: st, ID: replica, Logger: log})
	if err != nil {
		return nil, err
	}
	engine.elector = el
	srv.AddCheck("reconciler", func(ctx context.Context) (string, error) {
		st := engine.Status()
		processed := "nothing yet"
		if st.Processed != "" {
			processed = fmt.Sprintf("%.12s", st.Processed)
		}
		if !st.Leader {
			return fmt.Sprintf("follower: %s leads (epoch %d); processed %s", st.LeaderHolder, st.LeaderEpoch, processed), nil
		}
		if st.Passes == 0 {
			return "", errors.New("leading, no reconcile pass yet")
		}
		detail := fmt.Sprintf("leader (epoch %d); processed %s of branch %s", st.LeaderEpoch, processed, branch)
		if len(st.Holds) > 0 {
			// Holding is reported, not a failure: the API still serves.
			detail += "; holding: " + strings.Join(st.Holds, "; ")
		}
		if st.LastError != "" {
			return detail, errors.New(st.LastError)
		}
		return detail, nil
	})
	log.InfoContext(ctx, "engine ready", slog.String("replica", replica), slog.String("repository", gitsrc.RedactURL(repoURL)),
		slog.String("branch", branch), slog.Duration("poll_interval", poll), slog.Any("audit_key", key))

	lead := func(lctx context.Context, epoch int64) error {
		m.Leading(true)
		defer m.Leading(false)
		fenced := st.Fenced(epoch)
		rec := api.WithStore(fenced)
		flog, err := audit.NewLog(audit.LogOptions{Store: fenced, Key: key, Logger: log})
		if err != nil {
			return err
		}
		// Witnesses get each recorded checkpoint from a loop of their own,
		// never from the append path.
		var wr *audit.Witnesser
		var recorded func(*audit.Checkpoint)
		if len(witnesses) > 0 {
			if wr, err = audit.NewWitnesser(audit.WitnesserOptions{Log: flog, Witnesses: witnesses, Health: witnessHealth, Logger: log}); err != nil {
				return err
			}
			recorded = wr.Notify
		}
		cp, err := audit.NewCheckpointer(audit.CheckpointerOptions{Log: flog, Sinks: sinks, Health: sinkHealth, Superseded: watch.Superseded,
			Recorded: recorded, Interval: cfg.CheckpointInterval(), Logger: log})
		if err != nil {
			return err
		}
		if _, err := rec.CheckAuditLog(lctx); err != nil {
			log.WarnContext(lctx, "audit rollback check", slog.Any("error", err))
		}
		engine.setLeader(rec, epoch, cp)
		defer engine.setLeader(nil, 0, nil)
		rs, ra, rp, ri := cfg.Retention.RetentionDurations()
		jobs, err := retention.New(retention.Options{Store: fenced, Audit: flog, Sessions: rs, Approvals: ra, Playbooks: rp, Interval: ri, Logger: log})
		if err != nil {
			return err
		}
		jobsRun := []func(context.Context) error{
			rec.Run, cp.Run, jobs.Run,
			func(ctx context.Context) error { return rec.WatchAuditLog(ctx, cfg.CheckpointInterval()) },
			func(ctx context.Context) error { return st.ListenNudges(ctx, rec.Nudge) },
		}
		if wr != nil {
			jobsRun = append(jobsRun, wr.Run)
		}
		for _, f := range forges {
			jobsRun = append(jobsRun, f.Run)
		}
		if notifier != nil {
			jobsRun = append(jobsRun, notifier.Run)
		}
		for _, f := range forwarders {
			jobsRun = append(jobsRun, f.Run)
		}
		errc := make(chan error, len(jobsRun))
		for _, run := range jobsRun {
			go func() { errc <- run(lctx) }()
		}
		var first error
		for range jobsRun {
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) && first == nil {
				first = err
			}
		}
		// A last checkpoint on the way out, so the published view is current.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, cerr := cp.Checkpoint(sctx); cerr != nil && !errors.Is(cerr, store.ErrFenced) {
			log.Warn("final checkpoint", slog.Any("error", cerr))
		}
		if wr != nil {
			// And to the witnesses, within a bound: they cosign it now,
			// not when a leader next runs.
			wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer wcancel()
			wr.Round(wctx)
		}
		return first
	}
	return func() error {
		// Every replica audits the requests and envelopes it refuses.
		go func() { _ = mounted.Run(ctx) }()
		go func() { _ = refusals.Run(ctx) }()
		return el.Run(ctx, lead)
	}, nil
}

// engineFacade is the engine as the API sees it on any replica: intake,
// dry-runs and judgements run here; status and nudges go to the leader,
// local or not.
type engineFacade struct {
	*reconcile.Reconciler
	store   *store.Store
	log     *slog.Logger
	elector *leader.Elector

	mu     sync.Mutex
	leader *reconcile.Reconciler
	epoch  int64
	cp     *audit.Checkpointer
}

func (e *engineFacade) setLeader(r *reconcile.Reconciler, epoch int64, cp *audit.Checkpointer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leader, e.epoch, e.cp = r, epoch, cp
}

// Checkpoint signs a checkpoint now when this replica leads
// (POST /api/v1/audit/checkpoints).
func (e *engineFacade) Checkpoint(ctx context.Context) (*audit.Checkpoint, error) {
	e.mu.Lock()
	cp, rec := e.cp, e.leader
	e.mu.Unlock()
	if cp == nil {
		return nil, server.ErrNotLeader
	}
	if held, err := rec.CheckAuditLog(ctx); err != nil || held {
		return nil, errors.Join(err, errors.New("the audit log is held: see /readyz"))
	}
	c, err := cp.Checkpoint(ctx)
	if c != nil {
		rec.AuditWatch().Observe(audit.TreeHead{Size: c.Size, Root: c.Root})
	}
	return c, err
}

// CheckDrift checks drift now when this replica leads
// (POST /api/v1/drift/check); the report is read on any replica.
func (e *engineFacade) CheckDrift(ctx context.Context) (*reconcile.DriftReport, error) {
	rec, _ := e.local()
	if rec == nil {
		return nil, fmt.Errorf("%w: the leader checks drift (periodically, or on a request that reaches it)", server.ErrNotLeader)
	}
	return rec.CheckDrift(ctx)
}

func (e *engineFacade) local() (*reconcile.Reconciler, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader, e.epoch
}

// forwardNudge wakes the leader: directly when it runs here, through
// PostgreSQL NOTIFY when another replica leads.
func (e *engineFacade) forwardNudge() {
	if l, _ := e.local(); l != nil {
		l.Nudge()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.store.NotifyNudge(ctx); err != nil {
		e.log.Warn("nudge the leader", slog.Any("error", err))
	}
}

// Nudge asks the leader for a pass.
func (e *engineFacade) Nudge() { e.forwardNudge() }

// Status is the leader's status when it runs here, else what the database
// says.
func (e *engineFacade) Status() reconcile.Status {
	if l, epoch := e.local(); l != nil {
		s := l.Status()
		s.Leader, s.LeaderEpoch = true, epoch
		return s
	}
	var s reconcile.Status
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if li, err := e.store.Leader(ctx); err == nil {
		s.LeaderHolder, s.LeaderEpoch = li.Holder, li.Epoch
	}
	if rs, err := e.store.RepoState(ctx); err == nil {
		s.Processed, s.Adopted, s.Head = rs.ProcessedSHA, rs.AdoptedSHA, rs.ObservedHead
	}
	if holds, err := e.store.OpenHolds(ctx); err == nil {
		for _, h := range holds {
			s.Holds = append(s.Holds, fmt.Sprintf("hold %d: %s at %.12s", h.ID, h.Kind, h.CommitSHA))
		}
	}
	return s
}

// newNotifier builds the notifier of the notifications section: its
// channels and routes (the single-webhook shorthand as channel "default"),
// people and roles resolved against the approvers file in force, links to
// the console at notifications.consoleURL or console.origin.
func newNotifier(cfg *config.Config, st *store.Store, keyring func(context.Context) (*approval.Keyring, error), log *slog.Logger, m *metrics.Metrics,
	getenv func(string) string) (*notify.Notifier, error) {
	n := cfg.Notifications
	chans, routes := n.Normalized(notify.DefaultEvents)
	consoleURL := n.ConsoleURL
	if consoleURL == "" && cfg.Console != nil && !cfg.Console.Disabled {
		consoleURL = cfg.Console.Origin
	}
	return notify.New(notify.Options{Store: st, Channels: chans, Routes: routes, Getenv: getenv, Keyring: keyring,
		ConsoleURL: consoleURL, Logger: log, Metrics: m})
}

// auditKey loads the configured audit signing key, or the one writ keeps in
// the data directory (made on first start).
func auditKey(dataDir string, cfg *config.Config, log *slog.Logger, getenv func(string) string) (*audit.SigningKey, error) {
	if cfg.Audit.SigningKeyFile != "" {
		pw, err := config.ResolveSecret(getenv, cfg.Audit.SigningKeyPasswordEnv, "")
		if err != nil {
			return nil, fmt.Errorf("audit key password: %w", err)
		}
		return audit.LoadSigningKey(cfg.Audit.SigningKeyFile, []byte(pw.Value()))
	}
	key, created, err := audit.EnsureKey(dataDir)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("made an audit signing key; keep its public half to verify the log offline",
			slog.Any("key", key), slog.String("public_key", filepath.Join(dataDir, "audit", "audit.pub")))
	}
	return key, nil
}

// auditWitnesses are the witnesses of audit.witnesses.
func auditWitnesses(cfg *config.Config) ([]*audit.Witness, error) {
	out := make([]*audit.Witness, 0, len(cfg.Audit.Witnesses))
	for _, w := range cfg.Audit.Witnesses {
		wt, err := audit.NewWitness(w.Name, w.URL, w.Key)
		if err != nil {
			return nil, fmt.Errorf("audit.witnesses: %w", err)
		}
		out = append(out, wt)
	}
	return out, nil
}

// CheckpointDir is where the audit log's checkpoints are published:
// audit.checkpointDir, else DATA_DIR/audit/checkpoints.
func CheckpointDir(dataDir string, cfg *config.Config) string {
	if cfg.Audit.CheckpointDir != "" {
		return cfg.Audit.CheckpointDir
	}
	return filepath.Join(dataDir, "audit", "checkpoints")
}

// IsSCPLike reports whether a repository URL is scp-like (host:path):
// remote, though it has no scheme.
func IsSCPLike(u string) bool {
	i := strings.Index(u, ":")
	return i > 0 && !strings.Contains(u[:i], "/")
}

// Environments turns the configuration's environments into what policies
// see. An environment that does not say production: false is left as it
// is: the default policies then treat it as production (the safe reading).
func Environments(c *config.Config) policy.Environments {
	out := policy.Environments{}
	for name, desc := range c.EnvironmentMap() {
		d := map[string]any{}
		for k, v := range desc {
			d[k] = v
		}
		out[name] = d
	}
	return out
}

// checkDataDirOutside refuses a data directory inside the content
// repository: writ's state (keys, database) must never be committed.
func checkDataDirOutside(dataDir, repo string) error {
	r, err := filepath.Abs(repo)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(r); err == nil {
		r = real
	}
	d := dataDir
	if real, err := filepath.EvalSymlinks(d); err == nil {
		d = real
	}
	rel, err := filepath.Rel(r, d)
	if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		return fmt.Errorf("the data directory %s is inside the content repository %s: choose a --data-dir outside it", dataDir, repo)
	}
	if _, err := os.Stat(r); err != nil {
		return fmt.Errorf("repository %s: %w", repo, err)
	}
	return nil
}

// RecoveryKeyring reads the recovery keys of writ.yaml (approvals.recovery)
// into a keyring; nil when none are configured.
func RecoveryKeyring(cfg *config.Config) (*approval.Keyring, int, error) {
	rc := cfg.Approvals.Recovery
	if rc == nil {
		return nil, 0, nil
	}
	var rks []approval.RecoveryKey
	for _, k := range rc.Keys {
		pemBytes, err := config.ReadFile(k.KeyFile, 64<<10)
		if err != nil {
			return nil, 0, fmt.Errorf("approvals.recovery key %s: %w", k.ID, err)
		}
		rks = append(rks, approval.RecoveryKey{ID: k.ID, PEM: pemBytes})
	}
	kr, err := approval.NewRecoveryKeyring(rks)
	if err != nil {
		return nil, 0, fmt.Errorf("approvals.recovery: %w", err)
	}
	return kr, rc.ApprovalsRequired, nil
}
