// Package semaphore provides a distributed weighted semaphore leased in a
// backend: at most Capacity units held at once across every process that
// uses the same name, each acquisition (a Permit) holding its own lease with
// a fencing token, background renewal and wake-up on release. Its shape
// follows golang.org/x/sync/semaphore, and a Permit behaves like a
// lock.Guard.
//
//	// export runs at most 4 exports at once across the fleet.
//	func export(ctx context.Context, b backend.Backend, run func(context.Context, int64) error) error {
//		s, err := semaphore.New(b, "exports", 4, semaphore.Options{TTL: 30 * time.Second})
//		if err != nil {
//			return err
//		}
//		p, err := s.Acquire(ctx, 1) // waits for a free unit, or until ctx is done
//		if err != nil {
//			return err
//		}
//		defer p.Release(context.WithoutCancel(ctx))
//		return run(p.Context(ctx), p.Token()) // cancelled if the permit's lease is lost
//	}
//
// # Permits are leases
//
// Each Permit holds n units under a lease of its own, renewed every TTL/3
// and lost exactly as a lock.Guard's lease is (see package lock, "When a
// guard reports its lease lost"): a renewal refused, or its last confirmed
// expiry passed without a confirmed renewal. A holder that crashes frees
// its units when its lease expires, at most TTL later; a Permit that
// becomes unreachable without Release is reported Lost and released. As
// with a lock, a lease is efficiency-grade: a holder paused past its TTL
// may still act after its units went to someone else. Every acquisition
// therefore gets a fencing token, strictly greater than the token of every
// earlier acquisition of the same name (max(previous + 1, server time in
// µs), as for locks), which a protected resource can check.
//
// # Capacity
//
// The capacity is a property of the Semaphore value, passed with every
// acquisition and checked there against the units held at that moment:
// all users of a name should agree on it. SetCapacity changes it for this
// value's later attempts (waits in progress included); permits already
// granted are not revoked when it shrinks, so the units held may exceed a
// lowered capacity until enough are released. A request for more than the
// capacity (or fewer than 1 unit) fails at once with
// distkit.ErrInvalidOption: it could never be granted, and waiting for it
// would hang.
//
// # Fairness
//
// Waiters are served first come, first served, like
// golang.org/x/sync/semaphore: a waiter that cannot get in queues (its
// place fixed by its first refused attempt: behind everyone already in
// line), and an acquisition succeeds only when its units are free and
// nobody is queued ahead of it. So a request for many units is not starved
// by a stream of small ones: once it is first in line, the small ones wait
// behind it until it got its units, even when some are free. TryAcquire
// never queues, and fails while anyone is queued. A waiter keeps its place by
// refreshing a waiting mark on every attempt (every RetryInterval at the
// latest, plus a round trip); the mark of a waiter that died expires after
// max(3×RetryInterval, 150 ms) plus twice its last round trip (so that a
// live waiter on a slow link keeps its place; at most the TTL, unless
// 3×RetryInterval is longer) and it drops out of line,
// and a waiter that gives up leaves the line at once.
//
// # Waiting
//
// Acquire waits until ctx is done; TryAcquire makes one attempt;
// TryAcquireWithTimeout waits at most its timeout. Each attempt is bounded
// by the wait's context and the TTL. An attempt whose driver overruns that (rueidis
// does not honour a cancellation while it dials) is abandoned within a
// round trip of the wait's end, and releases what it may have taken and
// leaves the line when it returns (Acquire with a ctx that can never end,
// such as context.Background(), has no budget: its attempts run on the
// caller's goroutine). Permanent errors (distkit.ErrClosed,
// distkit.ErrInvalidOption, a script error) end a wait at once; transient
// ones are retried. A wait that ends without a permit leaves nothing behind:
// a permit an attempt may have taken without its reply arriving, and its
// place in line, are removed in the background (a healthy backend has done
// it, within 50 ms, before the wait returns). The removal leaves a
// tombstone for the acquisition, for max(TTL, its mark's lifetime), which
// the server checks first: an attempt of that wait that reaches the
// server later still (a driver such as go-redis stops waiting for a
// request it has already written when the ctx ends) takes no units and
// does not queue.
//
// Releases publish on the semaphore's channel, and so does a grant that
// leaves waiters behind (the next one in line may fit too). When the
// backend is a backend.Notifier, a waiter subscribes after its first
// refusal and tries again at once on each message; it also polls every
// RetryInterval, which covers a lost message and a holder that crashed.
//
// # Errors
//
// As for locks: TryAcquire returns distkit.ErrNotAcquired when the units
// are not free (or someone is queued) and the backend's error when the
// attempt failed; TryAcquireWithTimeout distkit.ErrTimeout, wrapping the
// last attempt's error if it failed; Acquire (and a wait whose ctx ended
// first) ctx's error, likewise. Check distkit.ErrNotApplied and
// distkit.ErrIndeterminate first to tell an unreachable backend from a full
// semaphore.
//
// # Key layout
//
// All keys of one semaphore share the hash tag {<prefix>:<name>} (escaped
// as in package lock; the "sem" part keeps them apart from a lock of the
// same name):
//
//	{<prefix>:<name>}:sem:holders   zset     permits <owner>:<nonce>:<n>:<token> → expiry (Unix ms)
//	{<prefix>:<name>}:sem:queue     zset     waiters <owner>:<nonce> → arrival order (above every score in line, ≥ Unix µs)
//	{<prefix>:<name>}:sem:qexp      zset     waiters <owner>:<nonce> → mark expiry (Unix ms)
//	{<prefix>:<name>}:sem:fence     string   the last fencing token (never expires)
//	{<prefix>:<name>}:sem:gone      zset     given-up acquisitions <owner>:<nonce> → tombstone expiry (Unix ms)
//	{<prefix>:<name>}:sem:released  channel  a message per release, give-up and grant with waiters left
package semaphore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/bounded"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/semscript"
)

// Defaults and limits of Options.
const (
	DefaultTTL           = 30 * time.Second
	MinTTL               = 100 * time.Millisecond
	DefaultRetryInterval = 50 * time.Millisecond
	// MaxCapacity is the largest capacity: 2^52. The scripts add units up
	// in Lua numbers (doubles, exact up to 2^53), and the units held plus
	// a request can reach twice the capacity.
	MaxCapacity = 1 << 52
)

// Options configure a Semaphore. The zero value is valid.
type Options struct {
	// TTL is each permit's lease duration: default 30 s, at least 100 ms.
	// A held permit is renewed every TTL/3.
	TTL time.Duration
	// RetryInterval is how often a waiter polls when no notification
	// arrives (and refreshes its place in line); default 50 ms, at least
	// 1 ms.
	RetryInterval time.Duration
	// Owner identifies this holder in the backend (for debugging and
	// operations): any byte string of up to distkit.MaxKeyLen bytes;
	// random by default.
	Owner string
	// Prefix namespaces the keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// Logger receives one line per state change of a held permit's lease:
	// lease_renew_failing, lease_renew_recovered, lease_lost (README
	// "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider records the metrics distkit.semaphore.* (hold time, lost leases, renew failures; README
	// "Observability"); nil: none, at no cost.
	MeterProvider metric.MeterProvider
}

// State is a permit's view of its lease.
type State int32

// Permit states (numbered as lock.State).
const (
	// Acquired: the lease is held (as of the last confirmed renewal).
	Acquired State = iota
	// Lost: a renewal was refused, the lease's last confirmed expiry passed
	// without a confirmed renewal, or the Permit was collected without
	// Release. Final.
	Lost
	// Released: Release succeeded (or the Permit is nil).
	Released
)

// String returns "Acquired", "Lost" or "Released".
func (s State) String() string {
	switch s {
	case Acquired:
		return "Acquired"
	case Lost:
		return "Lost"
	case Released:
		return "Released"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Semaphore is a distributed weighted semaphore on one name. Build it with
// New. It holds no resources (nothing to close) and is safe for concurrent
// use: two goroutines of one process compete like two processes.
type Semaphore struct {
	b        backend.Backend
	notifier backend.Notifier // nil: poll only
	name     string
	errName  string // `semaphore "<name>"`
	owner    string
	ttl      time.Duration
	retry    time.Duration
	ttlArg   string        // ms
	markBase time.Duration // a waiter's mark lifetime, before its round trips
	goneArg  string        // ms, a given-up acquisition's tombstone: max(markBase, TTL), the longest mark or lease its attempts set
	rtt      atomic.Int64  // the last answered attempt's duration (ns), for a wait's first mark
	keys     keyspace.SemaphoreKeys
	acqKeys  []string
	capacity atomic.Int64
	obs      *obs.Leases // nil: no Logger, Observer or MeterProvider
}

// New returns a Semaphore of capacity units for name over b. A capacity
// below 1 or above MaxCapacity and invalid options fail with distkit.ErrInvalidOption naming the
// problem; an invalid name or prefix with distkit.ErrInvalidKey.
func New(b backend.Backend, name string, capacity int64, opts Options) (*Semaphore, error) {
	if b == nil {
		return nil, fmt.Errorf("semaphore: %w: backend is nil", distkit.ErrInvalidOption)
	}
	if err := distkit.ValidateKey("name", name); err != nil {
		return nil, fmt.Errorf("semaphore: %w", err)
	}
	prefix, err := keyspace.Prefix(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("semaphore: %w", err)
	}
	if err := checkCapacity(capacity); err != nil {
		return nil, fmt.Errorf("semaphore %q: %w", name, err)
	}
	switch {
	case opts.TTL == 0:
		opts.TTL = DefaultTTL
	case opts.TTL < MinTTL:
		return nil, fmt.Errorf("semaphore %q: %w: TTL %v is below the minimum %v", name, distkit.ErrInvalidOption, opts.TTL, MinTTL)
	}
	switch {
	case opts.RetryInterval == 0:
		opts.RetryInterval = DefaultRetryInterval
	case opts.RetryInterval < time.Millisecond:
		return nil, fmt.Errorf("semaphore %q: %w: RetryInterval %v is below 1ms", name, distkit.ErrInvalidOption, opts.RetryInterval)
	}
	if opts.Owner == "" {
		var r [12]byte
		rand.Read(r[:])
		opts.Owner = hex.EncodeToString(r[:])
	} else if err := distkit.ValidateKey("owner", opts.Owner); err != nil {
		return nil, fmt.Errorf("semaphore %q: %w: Owner: %w", name, distkit.ErrInvalidOption, err)
	}
	k := keyspace.Semaphore(prefix, name)
	s := &Semaphore{
		b: b, name: name, errName: fmt.Sprintf("semaphore %q", name), owner: opts.Owner,
		ttl: opts.TTL, retry: opts.RetryInterval,
		ttlArg:   driver.Millis(opts.TTL),
		markBase: max(3*opts.RetryInterval, 150*time.Millisecond),
		keys:     k,
		acqKeys:  []string{k.Holders, k.Queue, k.QueueExpiry, k.Fence, k.Gone},
	}
	s.goneArg = driver.Millis(max(s.markBase, s.ttl))
	s.capacity.Store(capacity)
	s.notifier, _ = b.(backend.Notifier)
	s.obs = obs.NewLeases(obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider}, "semaphore", prefix, name)
	return s, nil
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

// Capacity returns the capacity this Semaphore acquires against.
func (s *Semaphore) Capacity() int64 { return s.capacity.Load() }

// SetCapacity changes the capacity for this Semaphore's later attempts,
// those of waits in progress included: a larger capacity lets waiters in
// on their next attempt; a smaller one revokes nothing already held. A
// waiter asking for more than the new capacity fails with
// distkit.ErrInvalidOption on its next attempt. No I/O.
func (s *Semaphore) SetCapacity(capacity int64) error {
	if err := checkCapacity(capacity); err != nil {
		return fmt.Errorf("%s: %w", s.errName, err)
	}
	s.capacity.Store(capacity)
	return nil
}

// Used returns the units held now by live permits of this name (expired
// permits are dropped first). An error matching distkit.ErrNotApplied or
// distkit.ErrIndeterminate means the backend did not answer (also when ctx
// ended while the driver did not honour it, as rueidis while it dials).
func (s *Semaphore) Used(ctx context.Context) (int64, error) {
	v, _, err := bounded.Run(ctx, func() (backend.Value, error) {
		return s.b.EvalScript(ctx, semscript.Used, []string{s.keys.Holders})
	}, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s.errName, err)
	}
	return v.Int64()
}

func checkCapacity(c int64) error {
	switch {
	case c < 1:
		return fmt.Errorf("%w: capacity %d is below 1", distkit.ErrInvalidOption, c)
	case c > MaxCapacity:
		return fmt.Errorf("%w: capacity %d is above MaxCapacity (2^52)", distkit.ErrInvalidOption, c)
	}
	return nil
}

// newAcquisitionID returns owner plus 64 random bits, as the lock's.
func newAcquisitionID(owner string) string {
	return keyspace.LockAcquisition(owner, strconv.FormatUint(mrand.Uint64(), 36))
}
