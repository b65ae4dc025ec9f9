package server

import (
	"net/http"

	"github.com/writ-sec/writ/internal/reconcile"
)

// listPending lists what waits for signatures: playbook operations (apply,
// revert) and the change to policies/ and .writ/ the branch holds, each
// with what it needs and who may give it.
func (a *API) listPending(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	list, err := e.Pending(r.Context())
	if err != nil {
		a.fail(w, r, "list pending", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Pending []reconcile.Pending `json:"pending"`
	}{Pending: list})
}

// getPending is one pending item with everything a statement about it
// binds and a reviewer reads: content, the version it replaces, decision,
// plan, and the trusted (and changed) files the digests are computed from.
func (a *API) getPending(w http.ResponseWriter, r *http.Request) {
	e := a.engine(w)
	if e == nil {
		return
	}
	id := r.PathValue("id")
	if !reconcile.ValidPendingID(id) {
		a.fail(w, r, "pending item", badRequest("%q is not a pending item's id (op-N or trust-N)", id))
		return
	}
	d, err := e.PendingItem(r.Context(), id)
	if err != nil {
		a.fail(w, r, "pending item "+id, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}
