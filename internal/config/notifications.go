package config

import (
	"fmt"
	"maps"
	"net"
	"net/mail"
	"slices"
	"strings"

	"github.com/writ-sec/writ/internal/audit"
	"github.com/writ-sec/writ/internal/diag"
	"github.com/writ-sec/writ/internal/yamldoc"
)

// NotificationGroups are the names a route may give for several audit
// events at once. Some are narrower than their events: waiting is only an
// operation waiting for approvals, and override takes policy.change_adopted
// only when the recovery keys adopted it.
var NotificationGroups = map[string][]audit.Event{
	"waiting":       {audit.EventExecutionWaiting},
	"rejected":      {audit.EventExecutionRejected},
	"denied":        {audit.EventExecutionDenied},
	"invalid_merge": {audit.EventPlaybookInvalid, audit.EventCommitRefused},
	"failed":        {audit.EventExecutionFailed},
	"drift":         {audit.EventDriftDetected, audit.EventDriftResolved},
	"hold":          {audit.EventPolicyChangeHeld, audit.EventRepositoryHistoryRewritten, audit.EventAuditRollbackHeld},
	"breakglass":    {audit.EventBreakGlassInvoked, audit.EventBreakGlassConfirmed, audit.EventBreakGlassLapsed},
	"override": {audit.EventRepositoryHoldAcknowledged, audit.EventPolicyChangeDismissed, audit.EventPolicyChangeAdopted,
		audit.EventAuditRollbackAcknowledged, audit.EventExecutionManualStart},
}

// checkNotifications: the shorthand or channels and routes, not both;
// channels of one kind each, with unique names and secrets from one place;
// routes naming known events and configured channels, with recipients
// exactly when they reach an email channel.
func (c *Config) checkNotifications(doc *yamldoc.Doc) diag.Problems {
	n := c.Notifications
	if n == nil {
		return nil
	}
	var out diag.Problems
	bad := func(ptr, format string, args ...any) {
		out = append(out, doc.Errorf(ptr, "invalid-value", format, args...))
	}
	structured := len(n.Channels) > 0 || len(n.Routes) > 0
	switch {
	case n.Shorthand() && structured:
		bad("/notifications", "notifications: give channels and routes, or the single-webhook shorthand (url or urlEnv), not both: move the webhook into a channel")
		return out
	case !n.Shorthand() && !structured:
		bad("/notifications", "notifications need channels and routes (or the single-webhook shorthand, url or urlEnv)")
		return out
	case n.Shorthand():
		if n.URL != "" && n.URLEnv != "" {
			bad("/notifications", "notifications need url or urlEnv (one of them)")
		}
		if n.SecretEnv != "" && n.SecretFile != "" {
			bad("/notifications/secretFile", "give secretEnv or secretFile, not both")
		}
		for i, e := range n.Events {
			if !audit.Known(audit.Event(e)) {
				bad(fmt.Sprintf("/notifications/events/%d", i), "%q is not an audit event (docs/audit.md)", e)
			}
		}
		return out
	}
	if len(n.Channels) == 0 {
		bad("/notifications", "notifications need at least one channel")
	}
	if len(n.Routes) == 0 {
		bad("/notifications", "notifications need at least one route: without one nothing is sent")
	}
	if len(n.Events) > 0 || n.SecretEnv != "" || n.SecretFile != "" || n.CAFile != "" || n.AllowInsecureHTTP {
		bad("/notifications", "events, secretEnv, secretFile, caFile and allowInsecureHTTP belong to a channel (or to the shorthand with url), not to the section")
	}
	kinds := map[string]string{}
	for i, ch := range n.Channels {
		ptr := fmt.Sprintf("/notifications/channels/%d", i)
		if _, dup := kinds[ch.Name]; dup {
			bad(ptr+"/name", "notification channel name %q is used twice", ch.Name)
		}
		set := 0
		for _, b := range []bool{ch.Webhook != nil, ch.Slack != nil, ch.Email != nil} {
			if b {
				set++
			}
		}
		if set != 1 {
			bad(ptr, "notification channel %q needs webhook, slack or email (one of them)", ch.Name)
		}
		kinds[ch.Name] = ch.Kind()
		if w := ch.Webhook; w != nil {
			if (w.URL == "") == (w.URLEnv == "") {
				bad(ptr+"/webhook", "a webhook channel needs url or urlEnv (one of them)")
			}
			if w.SecretEnv != "" && w.SecretFile != "" {
				bad(ptr+"/webhook/secretFile", "give secretEnv or secretFile, not both")
			}
			if w.URL != "" && strings.HasPrefix(w.URL, "http://") && !w.AllowInsecureHTTP {
				bad(ptr+"/webhook/url", "an http URL sends notifications in the clear: use https, or set allowInsecureHTTP")
			}
		}
		if s := ch.Slack; s != nil && (s.URLEnv == "") == (s.URLFile == "") {
			bad(ptr+"/slack", "a slack channel's URL is a credential: give urlEnv or urlFile (one of them)")
		}
		if e := ch.Email; e != nil {
			out = append(out, checkEmail(doc, ptr+"/email", e)...)
		}
	}
	for i, r := range n.Routes {
		ptr := fmt.Sprintf("/notifications/routes/%d", i)
		for j, e := range r.Events {
			if _, group := NotificationGroups[e]; !group && !audit.Known(audit.Event(e)) {
				groups := slices.Sorted(maps.Keys(NotificationGroups))
				bad(fmt.Sprintf("%s/events/%d", ptr, j), "%q is neither a group (%s) nor an audit event (docs/audit.md)", e, strings.Join(groups, ", "))
			}
		}
		email := false
		for j, name := range r.Channels {
			kind, ok := kinds[name]
			if !ok {
				bad(fmt.Sprintf("%s/channels/%d", ptr, j), "no notification channel is named %q", name)
			}
			email = email || kind == "email"
		}
		switch to := r.To; {
		case email && (to == nil || (len(to.Addresses) == 0 && len(to.People) == 0 && len(to.Roles) == 0 && !to.MustAct)):
			bad(ptr, "a route to an email channel needs recipients: to with addresses, people, roles or mustAct")
		case !email && to != nil:
			bad(ptr+"/to", "recipients (to) are for email channels; this route names none")
		}
		if to := r.To; to != nil {
			for j, a := range to.Addresses {
				if _, err := mail.ParseAddress(a); err != nil {
					bad(fmt.Sprintf("%s/to/addresses/%d", ptr, j), "%q is not an email address", a)
				}
			}
		}
	}
	used := map[string]bool{}
	for _, r := range n.Routes {
		for _, name := range r.Channels {
			used[name] = true
		}
	}
	for i, ch := range n.Channels {
		if !used[ch.Name] {
			bad(fmt.Sprintf("/notifications/channels/%d/name", i), "notification channel %q is in no route: nothing would be sent to it", ch.Name)
		}
	}
	return out
}

func checkEmail(doc *yamldoc.Doc, ptr string, e *EmailChannel) diag.Problems {
	var out diag.Problems
	host, _, err := net.SplitHostPort(e.Address)
	if err != nil {
		out = append(out, doc.Errorf(ptr+"/address", "invalid-value", "%q is not host:port", e.Address))
	}
	if _, err := mail.ParseAddress(e.From); err != nil {
		out = append(out, doc.Errorf(ptr+"/from", "invalid-value", "%q is not an email address", e.From))
	}
	if e.PasswordEnv != "" && e.PasswordFile != "" {
		out = append(out, doc.Errorf(ptr+"/passwordFile", "invalid-value", "give passwordEnv or passwordFile, not both"))
	}
	if (e.Username == "") != (e.PasswordEnv == "" && e.PasswordFile == "") {
		out = append(out, doc.Errorf(ptr, "invalid-value", "AUTH needs username and passwordEnv or passwordFile (both or neither)"))
	}
	if e.AllowPlaintext && err == nil && !Loopback(host) {
		out = append(out, doc.Errorf(ptr+"/allowPlaintext", "invalid-value",
			"allowPlaintext sends mail (and any password) in the clear: only a server on loopback may be used without STARTTLS, not %q", host))
	}
	return out
}

// Loopback reports whether host names this machine's loopback interface.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
