// Package inbox is the durable delivery inbox every forge shares: a
// webhook delivery is stored in PostgreSQL (forge_deliveries) before the
// forge is answered, deduplicated by its delivery id and by its body, and
// processed from there in order, under a lease, with retries and a final
// failure. A forge package (internal/forge/github, internal/forge/gitlab)
// authenticates and filters deliveries, then calls Put; its processor runs
// ProcessPending with the function that handles one delivery. The inbox
// knows nothing of any forge's payloads.
package inbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/writ-sec/writ/internal/display"
	"github.com/writ-sec/writ/internal/retry"
	"github.com/writ-sec/writ/internal/store"
)

// ErrPermanent marks a failure that retrying will not fix (a payload that
// cannot be decoded, an API refusal): the delivery is marked failed at
// once. Wrap it: fmt.Errorf("%w: ...", inbox.ErrPermanent).
var ErrPermanent = errors.New("permanent")

// Options configures an Inbox.
type Options struct {
	// Forge names the forge whose deliveries this inbox holds (github,
	// gitlab). Required.
	Forge string
	// Store holds the deliveries. Required.
	Store *store.Store
	// Lease is how long a claimed delivery is left to its processor before
	// another may claim it again. Default 5m.
	Lease time.Duration
	// MaxAttempts per delivery before it is marked failed. Default 10.
	MaxAttempts int
	// RetryBase and RetryMax bound the delay before a failed delivery is
	// tried again (doubling). Defaults 2s and 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// Now, when set, is the clock the queue is read with (when a delivery
	// is due, when its lease ends). Nil: the database's clock, shared by
	// every replica. Tests set it so that leases and retry delays never
	// depend on the machine's speed.
	Now    func() time.Time
	Logger *slog.Logger
}

var forgeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`) })

// Inbox is one forge's view of the shared inbox. Safe for concurrent use.
type Inbox struct {
	opts Options
	wake chan struct{}
}

// New checks the options and makes the inbox.
func New(opts Options) (*Inbox, error) {
	if opts.Lease == 0 {
		opts.Lease = 5 * time.Minute
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 10
	}
	if opts.RetryBase == 0 {
		opts.RetryBase = 2 * time.Second
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case !forgeRE().MatchString(opts.Forge):
		return nil, fmt.Errorf("inbox: forge %q is not a name", opts.Forge)
	case opts.Store == nil:
		return nil, errors.New("inbox: a store is required")
	case opts.Lease < time.Second:
		return nil, fmt.Errorf("inbox: lease %s is too short", opts.Lease)
	case opts.MaxAttempts < 1:
		return nil, errors.New("inbox: attempts must be at least 1")
	}
	return &Inbox{opts: opts, wake: make(chan struct{}, 1)}, nil
}

// Forge is the forge whose deliveries the inbox holds.
func (in *Inbox) Forge() string { return in.opts.Forge }

// Lease is how long one delivery may be processed.
func (in *Inbox) Lease() time.Duration { return in.opts.Lease }

// now is the time the queue is read at (nil: the database's clock).
func (in *Inbox) now() *time.Time {
	if in.opts.Now == nil {
		return nil
	}
	t := in.opts.Now()
	return &t
}

// Put stores a delivery (its Forge is the inbox's) and wakes the
// processor. created is false for a delivery id stored before (a
// redelivery: id is the stored row's); a body stored before under another
// delivery id is refused with store.ErrDeliveryReplayed. When Put returns
// without error the delivery is committed: the forge may be answered.
func (in *Inbox) Put(ctx context.Context, d store.Delivery) (id int64, created bool, err error) {
	d.Forge = in.opts.Forge
	id, created, err = in.opts.Store.InsertDelivery(ctx, in.now(), d)
	if err == nil && created {
		in.Wake()
	}
	return id, created, err
}

// Wake asks the processor to look for deliveries now. It never blocks.
func (in *Inbox) Wake() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// Woken receives when Put stored a delivery or Wake was called.
func (in *Inbox) Woken() <-chan struct{} { return in.wake }

// Handle processes one delivery and says what came of it (the outcome
// recorded with it). An error keeps it queued for a retry, unless it is
// ErrPermanent or the attempts are spent.
type Handle func(ctx context.Context, d *store.Delivery) (outcome string, err error)

// ProcessPending processes every delivery of the forge that is due, oldest
// first, and returns how many it finished. A delivery that fails stays
// queued and is tried again after a growing delay (after MaxAttempts, or
// at once for ErrPermanent, it is marked failed); a crash leaves it
// claimed until its lease runs out, then it is processed again. handle
// gets a context that ends before the lease does: past it another
// processor may claim the delivery, and two must not work on one.
func (in *Inbox) ProcessPending(ctx context.Context, handle Handle) (int, error) {
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		d, err := in.opts.Store.ClaimDelivery(ctx, in.opts.Forge, in.now(), in.opts.Lease)
		if errors.Is(err, store.ErrNotFound) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		log := in.opts.Logger.With(slog.String("delivery", d.DeliveryID), slog.String("event", d.Event), slog.String("action", d.Action),
			slog.Int("attempt", d.Attempts))
		pctx, cancel := context.WithTimeout(ctx, in.opts.Lease-in.opts.Lease/10)
		outcome, perr := handle(pctx, d)
		if perr != nil && pctx.Err() != nil && ctx.Err() == nil {
			perr = fmt.Errorf("processing ran past its lease of %s: %w", in.opts.Lease, perr)
		}
		cancel()
		if perr == nil {
			if err := in.opts.Store.FinishDelivery(ctx, d.ID, outcome); err != nil {
				return n, err
			}
			log.InfoContext(ctx, "webhook delivery processed", slog.String("outcome", outcome))
			n++
			continue
		}
		if ctx.Err() != nil {
			// Stopping: the lease brings it back.
			return n, ctx.Err()
		}
		giveUp := d.Attempts >= in.opts.MaxAttempts || errors.Is(perr, ErrPermanent)
		delay := retry.Backoff{Initial: in.opts.RetryBase, Max: in.opts.RetryMax}.Delay(d.Attempts - 1)
		if err := in.opts.Store.RetryDelivery(ctx, in.now(), d.ID, display.Line(perr.Error(), 2000), delay, giveUp); err != nil {
			return n, err
		}
		if giveUp {
			log.ErrorContext(ctx, "webhook delivery failed for good", slog.Any("error", perr))
		} else {
			log.WarnContext(ctx, "webhook delivery failed; it will be retried", slog.Duration("after", delay), slog.Any("error", perr))
		}
	}
}

// Readiness is the /readyz detail of the forge's deliveries.
func (in *Inbox) Readiness(ctx context.Context) (string, error) {
	counts, err := in.opts.Store.DeliveryCounts(ctx, in.opts.Forge)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("webhook deliveries: %d queued, %d done, %d failed",
		counts[store.DeliveryQueued], counts[store.DeliveryDone], counts[store.DeliveryFailed]), nil
}

// Answer is the JSON body of every webhook response.
type Answer struct {
	Status string `json:"status"` // queued, duplicate, ignored, pong, or an error code (replayed_delivery, unauthorized, ...)
	ID     int64  `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Reply writes a webhook response.
func Reply(w http.ResponseWriter, code int, a Answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(a)
	_, _ = w.Write(b.Bytes())
}

// ReadBody reads a webhook's body of at most limit bytes. When it cannot,
// it answers (413 for a larger body, 400 otherwise) and returns false.
// deliveryID only names the delivery in the log.
func (in *Inbox) ReadBody(w http.ResponseWriter, r *http.Request, limit int64, deliveryID string) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		in.opts.Logger.WarnContext(r.Context(), "webhook delivery refused: body too large", slog.Int64("limit", limit),
			slog.String("delivery", display.Line(display.Safe(deliveryID), 128)))
		Reply(w, http.StatusRequestEntityTooLarge, Answer{Status: "too_large", Reason: "the body exceeds the configured limit"})
		return nil, false
	}
	if err != nil {
		Reply(w, http.StatusBadRequest, Answer{Status: "bad_request", Reason: "the body could not be read"})
		return nil, false
	}
	return body, true
}

// Accept stores an authenticated delivery (Put) and answers the forge:
// 202 queued once it is committed, 200 for a delivery id stored before
// (a redelivery), 409 replayed_delivery for body (the bytes the forge
// authenticated) stored before under another delivery id, 503 when it
// could not be stored (the forge delivers it again). d.BodySHA256 is set
// from body.
func (in *Inbox) Accept(w http.ResponseWriter, r *http.Request, d store.Delivery, body []byte) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	digest := sha256.Sum256(body)
	d.BodySHA256 = hex.EncodeToString(digest[:])
	log := in.opts.Logger.With(slog.String("delivery", d.DeliveryID), slog.String("event", d.Event))
	id, created, err := in.Put(ctx, d)
	switch {
	case errors.Is(err, store.ErrDeliveryReplayed):
		log.WarnContext(ctx, "webhook delivery refused: a body delivered before, under a new delivery id",
			slog.String("remote", r.RemoteAddr), slog.Int64("stored_id", id), slog.Any("error", err))
		Reply(w, http.StatusConflict, Answer{Status: "replayed_delivery",
			Reason: "this body was delivered before under another delivery id: a replay is not processed"})
	case err != nil:
		log.ErrorContext(ctx, "store webhook delivery", slog.Any("error", err))
		Reply(w, http.StatusServiceUnavailable, Answer{Status: "unavailable", Reason: "the delivery could not be stored; redeliver it"})
	case !created:
		Reply(w, http.StatusOK, Answer{Status: "duplicate", ID: id, Reason: "this delivery was received before"})
	default:
		log.DebugContext(ctx, "webhook delivery queued", slog.String("action", d.Action), slog.Int64("id", id))
		Reply(w, http.StatusAccepted, Answer{Status: "queued", ID: id})
	}
}

// Serve processes the inbox's deliveries with handle until ctx ends: at
// once, whenever Put stores one, and every poll (deliveries stored by
// other replicas, retries coming due). With every > 0 it also calls
// refresh that often (a forge re-checking its open requests).
func (in *Inbox) Serve(ctx context.Context, handle Handle, poll, every time.Duration, refresh func(context.Context) error) error {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var again <-chan time.Time
	if every > 0 && refresh != nil {
		t := time.NewTicker(every)
		defer t.Stop()
		again = t.C
	}
	for {
		if _, err := in.ProcessPending(ctx, handle); err != nil && ctx.Err() == nil {
			in.opts.Logger.ErrorContext(ctx, "process webhook deliveries", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-in.wake:
		case <-tick.C:
		case <-again:
			if err := refresh(ctx); err != nil && ctx.Err() == nil {
				in.opts.Logger.ErrorContext(ctx, "refresh open requests", slog.Any("error", err))
			}
		}
	}
}
