package engine

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/writ-sec/writ/internal/config"
	"github.com/writ-sec/writ/internal/metrics"
	"github.com/writ-sec/writ/internal/server"
	"github.com/writ-sec/writ/internal/siem"
	"github.com/writ-sec/writ/internal/store"
)

// setupSIEM builds a forwarder per audit.siem destination and the
// "audit siem" readiness check. The forwarders run on the leader (their
// Run functions go with its jobs). The check never fails: a SIEM that is
// down or behind delays its copy of the log, which waits in the database,
// while the server itself is fine; taking replicas out of a load balancer
// for it would only stop the API. Its detail and the writ_siem_* metrics
// say how far each destination is.
func setupSIEM(cfg *config.Config, st *store.Store, srv *server.Server, log *slog.Logger, m *metrics.Metrics,
	getenv func(string) string) ([]*siem.Forwarder, error) {
	dests, err := SIEMDestinations(cfg, log, getenv)
	if err != nil {
		return nil, err
	}
	var fs []*siem.Forwarder
	for _, d := range dests {
		f, err := siem.New(siem.Options{Store: st, Destination: d, Logger: log, Metrics: m})
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	if len(fs) > 0 {
		srv.AddCheck("audit siem", func(context.Context) (string, error) { return siemReadiness(fs, time.Now()), nil })
	}
	return fs, nil
}

// SIEMDestinations builds the audit.siem destinations: secrets resolved,
// TLS files read, nothing connected (writ config check runs it too).
func SIEMDestinations(cfg *config.Config, log *slog.Logger, getenv func(string) string) ([]siem.Destination, error) {
	var out []siem.Destination
	for _, d := range cfg.Audit.SIEM {
		switch {
		case d.Syslog != nil:
			s, err := siem.NewSyslog(siem.SyslogOptions{Name: d.Name, Address: d.Syslog.Address, CAFile: d.Syslog.CAFile,
				ServerName: d.Syslog.ServerName, CertFile: d.Syslog.CertFile, KeyFile: d.Syslog.KeyFile, AppName: d.Syslog.AppName, Logger: log})
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		case d.Webhook != nil:
			secret, err := config.ResolveSecret(getenv, d.Webhook.SecretEnv, d.Webhook.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("audit.siem %s secret: %w", d.Name, err)
			}
			w, err := siem.NewWebhook(siem.WebhookOptions{Name: d.Name, URL: d.Webhook.URL, Secret: secret.Value(), CAFile: d.Webhook.CAFile})
			if err != nil {
				return nil, err
			}
			out = append(out, w)
		default:
			return nil, fmt.Errorf("audit.siem %s: neither syslog nor webhook", d.Name)
		}
	}
	return out, nil
}

// siemReadiness says, per destination, how far it is.
func siemReadiness(fs []*siem.Forwarder, now time.Time) string {
	var parts []string
	for _, f := range fs {
		s := f.Status()
		if !s.Running {
			parts = append(parts, s.Destination+": forwarded by the leader")
			continue
		}
		p := fmt.Sprintf("%s: acknowledged below seq %d, %d behind", s.Destination, s.Acked, s.Lag())
		if s.LastError != "" && s.LastErrorAt.After(s.LastAckAt) {
			p += fmt.Sprintf("; failing, last error %s ago: %s", now.Sub(s.LastErrorAt).Round(time.Second), s.LastError)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}
