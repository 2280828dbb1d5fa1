// Package election provides leader election leased in a backend, shaped
// after etcd's concurrency.Election: candidates Campaign, one of them
// leads for a term, a term is a lease with the lock's semantics (renewed
// every TTL/3, lost only when really lost) and a fencing token strictly
// greater than every earlier term's; anyone can ask who leads (Leader) or
// follow each change (Observe).
//
//	// runScheduler runs schedule only while this process leads.
//	func runScheduler(ctx context.Context, b backend.Backend, host string, schedule func(context.Context, int64) error) error {
//		e, err := election.New(b, "scheduler", election.Options{TTL: 10 * time.Second})
//		if err != nil {
//			return err
//		}
//		for ctx.Err() == nil {
//			l, err := e.Campaign(ctx, host) // blocks until elected or ctx is done
//			if err != nil {
//				return err
//			}
//			// Cancelled when the term ends (lease lost, or Resign).
//			err = schedule(l.Context(ctx), l.Token())
//			l.Resign(context.WithoutCancel(ctx)) // hand over at once
//			if err != nil {
//				return err
//			}
//		}
//		return ctx.Err()
//	}
//
// # Terms are leases
//
// A Leadership renews its lease every TTL/3 and reports it Lost exactly as
// a lock.Guard does (see package lock, "When a guard reports its lease
// lost"): on a refused renewal at once, and at its last confirmed expiry
// less a margin when renewals fail. Done is then closed and every context
// from Context is cancelled. A leader that crashes is replaced once its
// lease expires (at most TTL, plus a candidate's RetryInterval). A leader
// paused past its TTL may still act after a successor was elected, which
// is why each term has a fencing token: the resource the leader acts on
// should reject tokens lower than the highest it has seen. A Leadership
// that becomes unreachable without Resign is reported Lost and resigned.
//
// # Campaigning and observing
//
// Campaign waits until this candidate is elected or ctx is done; a
// candidate is elected when there is no leader (the last one resigned or
// its lease expired). Elections, resignations and proclamations publish on
// the election's channel: with a backend.Notifier, candidates try again at
// once on Resign, and otherwise poll every RetryInterval (an expiry
// publishes nothing; polling finds it). Campaign, Resign, Proclaim and Leader return
// within a round trip of their ctx's end even when the driver does not
// honour it (rueidis while it dials): an abandoned campaign attempt resigns
// the term it may have won when it returns.
//
// Leader reads the current term: its token and value, or
// distkit.ErrNoLeader. Observe follows the terms from a goroutine that
// reads on every message and every RetryInterval, and delivers each new
// term once and each value a leader proclaims. It never reports two
// leaders for one token, and tokens never go down from one report to the
// next; a term shorter than the polling interval may go unreported (an
// observer sees the latest state, not every state).
//
// # Key layout
//
// All keys of one election share the hash tag {<prefix>:<name>} (escaped as
// in package lock; the "elect" part keeps them apart from a lock or
// semaphore of the same name):
//
//	{<prefix>:<name>}:elect:leader   hash     id → <owner>:<nonce>, token, value (PX TTL)
//	{<prefix>:<name>}:elect:fence    string   the last term's token (never expires)
//	{<prefix>:<name>}:elect:changed  channel  a message per election, resignation and proclamation
package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/bounded"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/waitsub"
)

// Defaults and limits of Options.
const (
	DefaultTTL           = 30 * time.Second
	MinTTL               = 100 * time.Millisecond
	DefaultRetryInterval = 50 * time.Millisecond
)

// Options configure an Election. The zero value is valid.
type Options struct {
	// TTL is a term's lease duration: default 30 s, at least 100 ms. A
	// leader renews every TTL/3; a crashed leader is replaced at most TTL
	// (plus RetryInterval) later.
	TTL time.Duration
	// RetryInterval is how often a candidate and an observer poll when no
	// notification arrives; default 50 ms, at least 1 ms.
	RetryInterval time.Duration
	// Owner identifies this candidate in the backend (for debugging and
	// operations): any byte string of up to distkit.MaxKeyLen bytes;
	// random by default.
	Owner string
	// Prefix namespaces the keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// Logger receives one line per state change of a held leader's term's lease:
	// lease_renew_failing, lease_renew_recovered, lease_lost (README
	// "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider records the metrics distkit.election.* (term duration, terms lost, renew failures; README
	// "Observability"); nil: none, at no cost.
	MeterProvider metric.MeterProvider
}

// Term is a leader's term as seen by Leader and Observe.
type Term struct {
	// Token is the term's fencing token, strictly greater than every
	// earlier term's.
	Token int64
	// Value is the leader's value (given to Campaign, changed by Proclaim).
	Value string
}

// Election is one election on one name. Build it with New. It holds no
// resources (Observe's goroutine ends with its ctx) and is safe for
// concurrent use.
type Election struct {
	b        backend.Backend
	notifier backend.Notifier
	name     string
	errName  string // `election "<name>"`
	owner    string
	ttl      time.Duration
	retry    time.Duration
	ttlArg   string
	keys     keyspace.ElectionKeys
	obs      *obs.Leases // nil: no Logger, Observer or MeterProvider
	watch    *obs.Watch  // Observe's loops; nil likewise
}

// New returns an Election for name over b. Invalid options fail with
// distkit.ErrInvalidOption naming the field; an invalid name or prefix with
// distkit.ErrInvalidKey.
func New(b backend.Backend, name string, opts Options) (*Election, error) {
	if b == nil {
		return nil, fmt.Errorf("election: %w: backend is nil", distkit.ErrInvalidOption)
	}
	if err := distkit.ValidateKey("name", name); err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	prefix, err := keyspace.Prefix(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	switch {
	case opts.TTL == 0:
		opts.TTL = DefaultTTL
	case opts.TTL < MinTTL:
		return nil, fmt.Errorf("election %q: %w: TTL %v is below the minimum %v", name, distkit.ErrInvalidOption, opts.TTL, MinTTL)
	}
	switch {
	case opts.RetryInterval == 0:
		opts.RetryInterval = DefaultRetryInterval
	case opts.RetryInterval < time.Millisecond:
		return nil, fmt.Errorf("election %q: %w: RetryInterval %v is below 1ms", name, distkit.ErrInvalidOption, opts.RetryInterval)
	}
	if opts.Owner == "" {
		var r [12]byte
		rand.Read(r[:])
		opts.Owner = hex.EncodeToString(r[:])
	} else if err := distkit.ValidateKey("owner", opts.Owner); err != nil {
		return nil, fmt.Errorf("election %q: %w: Owner: %w", name, distkit.ErrInvalidOption, err)
	}
	e := &Election{
		b: b, name: name, errName: fmt.Sprintf("election %q", name), owner: opts.Owner,
		ttl: opts.TTL, retry: opts.RetryInterval, ttlArg: driver.Millis(opts.TTL),
		keys: keyspace.Election(prefix, name),
	}
	e.notifier, _ = b.(backend.Notifier)
	cfg := obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider}
	e.obs = obs.NewLeases(cfg, "election", prefix, name)
	e.watch = obs.NewWatch(cfg, "election", prefix, name, func(in *obs.Instruments) metric.Int64Counter { return in.ElectWatchFailures })
	return e, nil
}

// Name returns the election's name.
func (e *Election) Name() string { return e.name }

// Leader returns the current term, or an error matching
// distkit.ErrNoLeader when nobody leads; an error matching
// distkit.ErrNotApplied or distkit.ErrIndeterminate when the backend did
// not answer. It returns soon after ctx ends even when the backend's
// driver does not honour ctx (rueidis while it dials).
func (e *Election) Leader(ctx context.Context) (Term, error) {
	v, _, err := bounded.Run(ctx, func() (backend.Value, error) {
		return e.b.EvalScript(ctx, electscript.Leader, []string{e.keys.Leader})
	}, nil)
	if err != nil {
		return Term{}, fmt.Errorf("%s: %w", e.errName, err)
	}
	if n, err := v.Int64(); err == nil && n == 0 {
		return Term{}, fmt.Errorf("%s: %w", e.errName, distkit.ErrNoLeader)
	}
	arr, err := v.Array()
	if err != nil || len(arr) != 2 {
		return Term{}, fmt.Errorf("%s: unexpected reply %v", e.errName, v)
	}
	tok, err := arr[0].Int64()
	if err != nil {
		return Term{}, fmt.Errorf("%s: %w", e.errName, err)
	}
	val, err := arr[1].Text()
	if err != nil {
		return Term{}, fmt.Errorf("%s: %w", e.errName, err)
	}
	return Term{Token: tok, Value: val}, nil
}

// Observe returns a channel that receives the current term (if any) and
// then each change: a new term, or a new value proclaimed by the leader.
// Tokens never go down from one report to the next, and one token is
// never reported with two leaders. Terms are read on every notification
// (with a backend.Notifier) and every RetryInterval, so a term shorter
// than that may go unreported. The channel is closed, and the goroutine
// behind it ends, when ctx is done; a receiver that stops reading must
// cancel ctx. Backend errors are retried (reported through Options.Logger,
// Observer and MeterProvider: watch_failing once, then watch_recovered).
func (e *Election) Observe(ctx context.Context) <-chan Term {
	ch := make(chan Term)
	go e.observe(ctx, ch)
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- Term) {
	defer close(ch)
	sub := waitsub.Start(ctx, e.notifier, e.keys.Channel)
	defer func() { sub.Close() }()
	timer := time.NewTimer(e.retry)
	defer timer.Stop()
	var last Term
	var health obs.Health // this loop's reads: failing or not
	for {
		t, err := e.Leader(ctx)
		if errors.Is(err, distkit.ErrNoLeader) {
			e.watch.Read(ctx, &health, nil)
		} else {
			e.watch.Read(ctx, &health, err)
		}
		if err == nil && (t.Token > last.Token || t.Token == last.Token && t.Value != last.Value) {
			select {
			case ch <- t:
				last = t
			case <-ctx.Done():
				return
			}
		}
		if sub.Retryable() && e.notifier != nil {
			sub.Close()
			sub = waitsub.Start(ctx, e.notifier, e.keys.Channel)
		}
		timer.Reset(e.retry)
		select {
		case <-sub.Ready():
			sub.SawReady()
		case <-sub.Notify():
		case <-timer.C:
		case <-ctx.Done():
			return
		}
	}
}

// newTermID returns owner plus 64 random bits.
func newTermID(owner string) string {
	return keyspace.LockAcquisition(owner, strconv.FormatUint(mrand.Uint64(), 36))
}
