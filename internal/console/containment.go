package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/writ-sec/writ/internal/playbook"
	"github.com/writ-sec/writ/internal/store"
)

// expiryFilters are the choices of the containment page's expiry filter.
var expiryFilters = []struct{ Value, Label string }{
	{"", "any"}, {"24h", "within 24 hours"}, {"7d", "within 7 days"}, {"never", "never"},
}

// containmentPage shows every target contained now — blocked, suspended,
// isolated — with its playbook, ticket, environment, since, expiry and
// who proposed and approved it. q finds an address (also the prefixes
// that cover it), a prefix, a user or a host.
func (c *Console) containmentPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f store.ContainmentFilter
	var problem string
	var err error
	if f.Query, err = queryValue(q, "q", 256); err != nil {
		problem = err.Error()
	}
	if f.Environment, err = queryValue(q, "env", 64); err != nil && problem == "" {
		problem = err.Error()
	}
	expires := q.Get("expires")
	switch expires {
	case "":
	case "never":
		f.NoExpiry = true
	default:
		d, err := playbook.ParseDuration(expires)
		if err != nil || d <= 0 {
			if problem == "" {
				problem = fmt.Sprintf("expires %q: want 24h, 7d or never", expires)
			}
			break
		}
		before := c.opts.Now().Add(d)
		f.ExpiresBefore = &before
	}
	data := map[string]any{"Query": f.Query, "Env": f.Environment, "Expires": expires, "ExpiryFilters": expiryFilters,
		"Environments": c.environments(r)}
	if problem != "" {
		data["Problem"] = problem
		c.render(w, r, http.StatusBadRequest, "containment.html", "Containment now", data)
		return
	}
	targets, err := c.opts.Store.Containment(r.Context(), f)
	if errors.Is(err, store.ErrInvalidFilter) {
		data["Problem"] = err.Error()
		c.render(w, r, http.StatusBadRequest, "containment.html", "Containment now", data)
		return
	}
	if err != nil {
		c.fail(w, r, "list what is contained", err)
		return
	}
	page := 1
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1_000_000 {
			data["Problem"] = fmt.Sprintf("page %q: want a page number from 1", v)
			c.render(w, r, http.StatusBadRequest, "containment.html", "Containment now", data)
			return
		}
		page = n
	}
	from := min((page-1)*containmentPageRows, len(targets))
	to := min(from+containmentPageRows, len(targets))
	data["Targets"] = targets[from:to]
	data["Total"] = len(targets)
	data["From"], data["To"] = from+1, to
	if page > 1 {
		data["Prev"] = pageLink(q, page-1)
	}
	if to < len(targets) {
		data["Next"] = pageLink(q, page+1)
	}
	data["Now"] = c.opts.Now()
	if r.URL.Query().Get("changed") == "1" {
		data["Changed"] = true
	}
	c.render(w, r, http.StatusOK, "containment.html", "Containment now", data)
}

// containmentPageRows is how many targets one page shows: a search or a
// filter finds the rest.
const containmentPageRows = 500

// pageLink is the page's query with another page number.
func pageLink(q url.Values, page int) string {
	next := url.Values{}
	for _, k := range []string{"q", "env", "expires"} {
		if v := q.Get(k); v != "" {
			next.Set(k, v)
		}
	}
	next.Set("page", strconv.Itoa(page))
	return "/?" + next.Encode()
}

// environments are the environments the filter offers.
func (c *Console) environments(*http.Request) []string { return c.opts.Environments }
