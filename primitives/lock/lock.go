// Package lock provides distributed locks leased in a backend: Mutex and a
// writer-preferring RWMutex, one value per resource name, with fencing
// tokens, background lease renewal and wake-up on release.
//
//	// checkout runs write while holding the lock of one order. write gets a
//	// context cancelled if the lease is lost, and the fencing token to hand
//	// to the store, which rejects tokens lower than one it has seen.
//	func checkout(ctx context.Context, b backend.Backend, order string, write func(context.Context, int64) error) error {
//		m, err := lock.NewMutex(b, "order:"+order, lock.Options{TTL: 30 * time.Second})
//		if err != nil {
//			return err
//		}
//		// Do waits until acquired (or ctx is done), runs write, and
//		// releases on a context of its own, also when write panics.
//		return lock.Do(ctx, m, write)
//	}
//
// Without Do:
//
//	func checkoutByHand(ctx context.Context, m *lock.Mutex, write func(context.Context, int64) error) error {
//		g, err := m.Lock(ctx)
//		defer g.Release(ctx) // safe before the check: a nil Guard returns ErrNotHeld
//		if err != nil {
//			return err
//		}
//		return write(g.Context(ctx), g.Token())
//	}
//
// # What a lease promises, and what it does not
//
// A held lock is a lease: the holder's guard renews it every TTL/3 and it
// expires TTL after the last renewal. While renewals succeed, no other
// guard can acquire the same name. But a lease alone gives efficiency-grade
// exclusion, not safety: a holder that pauses longer than its TTL (a GC
// pause, a stopped VM, a partition) keeps running while the lease has
// expired and someone else holds the lock. Its guard will report the loss
// (Done is closed, State is Lost, Context is cancelled, Release returns
// distkit.ErrNotHeld), but possibly only after it has already acted.
// Following Kleppmann ("How to do distributed locking", 2016), when
// correctness depends on exclusion, the protected resource must check the
// fencing token: every acquisition of a name gets a token strictly greater
// than all earlier ones (a per-name counter incremented in the same atomic
// script, never reset, so tokens are never reused, not even across Mutex
// values or process restarts), and the resource rejects a write whose token
// is lower than the highest it has seen.
//
// A token is max(previous + 1, server time in µs): it also keeps rising when
// a Redis failover lost the last writes to the counter (asynchronous
// replication), as long as the promoted replica's clock is not behind the
// old master's.
//
// # When a guard reports its lease lost
//
// The server sets the lease's expiry from its own clock when it runs the
// acquiring or renewing script, after the request was sent. So a guard
// counts its lease held until its deadline: the send time of the last
// confirmed request (acquisition or renewal, on the client's monotonic
// clock) + TTL − margin, the margin (TTL/100 + 2 ms) covering a server
// clock up to 1 % fast. With TTL 30 s:
//
//	t=0      Lock sent; confirmed            deadline 29.698 s
//	t=10 s   renewal sent; confirmed         deadline 39.698 s
//	t=20 s   renewal fails (timeout, reset, Redis down): state stays Acquired,
//	         nothing is cancelled; retried every min(TTL/10, 1 s) = 1 s,
//	         each try bounded by the deadline
//	t=23 s   a retry is confirmed            deadline 52.698 s, next renewal at 33 s
//	         … or no retry is confirmed by 39.698 s: Lost, with a cause that
//	         wraps distkit.ErrLeaseLost and the last renewal error
//	any time a renewal is refused (the lease expired, was deleted, or
//	         someone else holds the name): Lost at once
//
// Transient errors (distkit.ErrNotApplied, distkit.ErrIndeterminate) are
// retried until the deadline, because the lease may well still be held;
// permanent ones (distkit.ErrClosed, a script error) are not retried, and
// the loss is still reported only at the deadline. A process paused past
// its deadline reports the loss as soon as it runs again, before it sends
// anything. Lost is final: renewals stop (so that the lease, if it
// survives, expires and someone else can take the lock), Done is closed and
// every context from Context is cancelled with the same cause; Release
// then returns Lost and an error matching distkit.ErrNotHeld (it still
// removes the lease if it survives, owner-checked).
//
// A Guard that becomes unreachable without Release (garbage-collected) is
// reported Lost at once, with a cause saying so, and its lease is released:
// code that kept only g.Context(ctx) or g.Done() is told rather than left
// running while the lease lapses. Keep the Guard for as long as you rely on
// the lock (defer g.Release, or Do).
//
// # Waiting
//
// Lock waits until ctx is done; TryLock makes one attempt; TryLockWithTimeout
// waits at most its timeout; TryLockWithRetries makes 1 + n attempts. Every
// wait honours its own budget through every I/O it does: each attempt is
// bounded by the wait's context, its timeout and the TTL (a reply later than
// that could not leave a lease to count on), and an attempt whose
// driver overruns that bound (rueidis while it dials a new connection) is
// abandoned and cleans up after itself, so TryLockWithTimeout(d) returns
// within d plus a round trip whether the servers answer, refuse connections
// or are blackholed, and TryLockWithRetries(n) within (n+1)×TTL plus n
// RetryIntervals; Lock(ctx) returns within a round trip of ctx's
// cancellation. (Lock with a ctx that can never end, such as
// context.Background(), has no budget: its attempts run on the caller's
// goroutine, saving a goroutine switch, and one may overrun the TTL by such
// a driver's dial timeout.)
// Permanent errors (distkit.ErrClosed, distkit.ErrInvalidOption, a script
// error, an ACL refusal) end every wait at once. A wait that ends without the
// lock leaves nothing behind: a lease an attempt may have taken without its
// reply arriving, and a writer's waiting mark, are removed in the
// background; when the backend answered the last attempt, the wait waits up
// to 50 ms for that, so a healthy backend has done it before it returns.
//
// Releases publish on the lock's channel while someone waits: a waiting
// attempt that finds the lock held marks it waited for (the waiters key,
// for at least three RetryIntervals, renewed by each attempt), and a
// release publishes only while that mark lives, so an uncontended Lock +
// Release publishes nothing (a Cluster broadcasts every PUBLISH to all its
// nodes). Clients of older distkit versions do not mark: their waiters
// fall back to polling. When the backend is a
// backend.Notifier (all three drivers are), a waiter that found the lock held
// subscribes beside its attempts (never delaying them; the subscription is
// bounded by the wait too), tries again once subscribed, and then as soon as
// a release is published, so a hand-off costs about one round trip; it also
// polls every RetryInterval, which covers a lost message and a holder that
// crashed (its lease expires). The drivers keep subscriptions across
// reconnects and wake waiters after each re-subscription.
//
// # Fairness and hand-off
//
// Exclusive waiters (Mutex, and RWMutex writers) are served first come,
// first served: a waiting attempt that is refused takes a place at the tail
// of the lock's queue (keeping it on later attempts) and refreshes its mark
// there with every attempt (the mark lasts three RetryIntervals, at least
// 150 ms). A release hands the lock directly to the head of the queue,
// inside the releasing script, with a new fencing token, and publishes; the
// head's next attempt (at once on the message, else at its next poll)
// finds the lease its own and extends it to the TTL. Waiters behind the
// head do not send an attempt for a release that went to someone ahead of
// them. A free lock goes only to the head (TryLock, which does not wait, is
// refused while anyone waits). The promise: among waiters that keep
// waiting, no one is served twice while another waits, so contending
// processes with equal demand get equal shares (measured: 3 processes × 3
// goroutines over 2 s, 282 / 281 / 281 acquisitions; before the queue,
// 263 / 483 / 184). What it does not promise: a waiter whose attempts are
// delayed past its mark (a process paused, a partition) loses its place
// and queues again at the tail; a waiter that crashes holds up the line
// at most until its mark lapses, and a lock handed to it is leased only
// for what was left of its mark, after which it goes to the next in line
// (or is free). A wait that gives up leaves the line and passes on a lock
// handed to it meanwhile. Readers are not queued: they keep the rule
// above (held back while a writer waits).
//
// # Errors
//
// Test the backend's classes first: "the lock is held by someone else" and
// "the backend did not answer" are different answers.
//
//	func report(ctx context.Context, m *lock.Mutex) string {
//		g, err := m.TryLockWithTimeout(ctx, time.Second)
//		switch {
//		case err == nil:
//			defer g.Release(ctx)
//			return "acquired"
//		case errors.Is(err, distkit.ErrNotApplied), errors.Is(err, distkit.ErrIndeterminate):
//			// Redis was unreachable or did not answer in time, at least on
//			// the last attempt: the lock's state is unknown. (A timeout then
//			// also matches distkit.ErrTimeout: check this case first.)
//			return "backend down"
//		case errors.Is(err, distkit.ErrTimeout), errors.Is(err, distkit.ErrNotAcquired),
//			errors.Is(err, distkit.ErrRetriesExhausted):
//			// Redis answered the last attempt: someone else holds the lock.
//			return "already locked"
//		}
//		return "other: " + err.Error() // ctx ended, backend closed, ErrNotReplicated…
//	}
//
// TryLock returns distkit.ErrNotAcquired when the lock is held and the
// backend's error when the attempt failed (never both). TryLockWithTimeout
// returns distkit.ErrTimeout, wrapping the last attempt's error when the last
// attempt failed; TryLockWithRetries a *distkit.RetriesError likewise; Lock
// (and a wait whose ctx ended first) ctx's error, likewise.
//
// # Replicas
//
// Redis replicates asynchronously: a master that fails right after granting
// a lock may not have passed the grant on, and the promoted replica then
// grants the same lock to a second holder. With Options.MinReplicas, an
// acquisition counts only after that many replicas acknowledged it: the
// driver sends WAIT after the acquiring script on the same connection, in
// the same round trip (backend.Replicator), and an acquisition fewer
// replicas acknowledged within ReplicaTimeout is released and fails with a
// *distkit.ReplicationError, ending the wait. Renewals wait too: a renewal
// the replicas did not acknowledge is not confirmed (retried until the
// deadline). A failover can then still lose the lease if every
// acknowledging replica failed too, and Redis's WAIT does not make
// replication synchronous (a replica may acknowledge and be demoted before
// promotion); the fencing token remains the safety net. The memory backend
// has no replicas and is refused.
//
// # RWMutex
//
// Many readers or one writer. A writer that has to wait marks itself
// waiting (refreshed on every attempt, expiring after 3×RetryInterval if
// the writer dies); new readers do not enter while a writer waits, so a
// stream of readers cannot starve it. A writer that gives up removes its
// mark and wakes the readers it held back. Each reader holds its own lease
// entry, renewed independently, so a crashed reader expires alone.
//
// # Key layout
//
// All keys of one lock share the hash tag {<prefix>:<name>}. <prefix>,
// <name> and <owner> stand for the strings as given, with '%', ':', '{',
// '}' and control bytes written as %XX (see package distkit, "Keys");
// <nonce> is a random base-36 number per acquisition:
//
//	{<prefix>:<name>}:lock      string   the exclusive holder <owner>:<nonce>:<token> (PX TTL)
//	{<prefix>:<name>}:readers   zset     read leases <owner>:<nonce>:<token> → expiry (Unix ms)
//	{<prefix>:<name>}:wwait     string   a waiting writer <owner>:<nonce> (PX 3×RetryInterval)
//	{<prefix>:<name>}:fence     string   the last fencing token (never expires)
//	{<prefix>:<name>}:waiters   string   "1" while someone waits for the lock (PX 3×RetryInterval, at least 150 ms)
//	{<prefix>:<name>}:queue     zset     exclusive waiters <owner>:<nonce> → arrival order (≥ Unix µs), first come first served
//	{<prefix>:<name>}:qexp      zset     the same waiters → mark expiry (Unix ms; 3×RetryInterval, at least 150 ms)
//	{<prefix>:<name>}:released  channel  a message on every release, and when a waiting writer gives up, while someone waits
package lock

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Defaults and limits of Options.
const (
	DefaultTTL           = 30 * time.Second
	MinTTL               = 100 * time.Millisecond
	DefaultRetryInterval = 50 * time.Millisecond
)

// Options configure a Mutex or RWMutex. The zero value is valid.
type Options struct {
	// TTL is the lease duration: default 30 s, at least 100 ms. A held
	// lease is renewed every TTL/3.
	TTL time.Duration
	// RetryInterval is how often a waiter polls when no release
	// notification arrives; default 50 ms.
	RetryInterval time.Duration
	// Owner identifies this holder in the backend (for debugging and
	// operations): any byte string of up to distkit.MaxKeyLen bytes, such
	// as a host name and process id; random by default.
	Owner string
	// Prefix namespaces the keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// MinReplicas, when positive, makes an acquisition count only once that
	// many replicas acknowledged it (Redis WAIT after the acquiring script,
	// on the same connection, in the same round trip; renewals wait too).
	// An acquisition fewer replicas acknowledged within ReplicaTimeout is
	// undone and fails with a *distkit.ReplicationError
	// (distkit.ErrNotReplicated), which ends a wait at once. It needs a
	// backend that is a backend.Replicator (both Redis drivers are; the
	// memory backend has no replicas and is refused with
	// distkit.ErrInvalidOption). Default 0: no waiting. See "Replicas" in
	// the package documentation.
	MinReplicas int
	// ReplicaTimeout bounds each wait for replicas: default
	// min(TTL/4, 500 ms), at most TTL/3.
	ReplicaTimeout time.Duration
	// Logger receives one line per state change of a held lock's lease:
	// lease_renew_failing, lease_renew_recovered, lease_lost (README
	// "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider records the metrics distkit.lock.* (wait and hold
	// time, lost leases, renew failures; README "Observability"); nil:
	// none, at no cost.
	MeterProvider metric.MeterProvider
}

// State is a guard's view of its lease.
type State int32

// Guard states.
const (
	// Acquired: the lease is held (as of the last confirmed renewal).
	Acquired State = iota
	// Lost: a renewal was refused, or the lease's last confirmed expiry
	// passed without a confirmed renewal, or the Guard was collected
	// without Release. Final: Done is closed, renewals have stopped.
	Lost
	// Released: Release succeeded (or the Guard is nil).
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

// core is what Mutex and RWMutex share.
type core struct {
	b        backend.Backend
	notifier backend.Notifier   // nil: poll only
	repl     backend.Replicator // set when replicas > 0
	replicas int
	replWait time.Duration
	name     string
	errName  string // `lock "<name>"`
	owner    string
	ttl      time.Duration
	retry    time.Duration
	waitTTL  string // ms, the waiting-writer marker's lifetime
	ttlArg   string // ms
	lockKey  string
	readers  string
	wwait    string
	fence    string
	waiters  string
	queue    string
	qexp     string
	channel  string
	excKeys  []string // KEYS of the acquire scripts
	obs      *lockObs // nil: no Logger, Observer or MeterProvider
}

func newCore(b backend.Backend, name string, opts Options) (*core, error) {
	if b == nil {
		return nil, fmt.Errorf("lock: %w: backend is nil", distkit.ErrInvalidOption)
	}
	if err := distkit.ValidateKey("name", name); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	prefix, err := keyspace.Prefix(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	switch {
	case opts.TTL == 0:
		opts.TTL = DefaultTTL
	case opts.TTL < MinTTL:
		return nil, fmt.Errorf("lock: %w: TTL %v is below the minimum %v", distkit.ErrInvalidOption, opts.TTL, MinTTL)
	}
	switch {
	case opts.RetryInterval == 0:
		opts.RetryInterval = DefaultRetryInterval
	case opts.RetryInterval < time.Millisecond:
		return nil, fmt.Errorf("lock: %w: RetryInterval %v is below 1ms", distkit.ErrInvalidOption, opts.RetryInterval)
	}
	switch {
	case opts.MinReplicas < 0:
		return nil, fmt.Errorf("lock: %w: MinReplicas %d is negative", distkit.ErrInvalidOption, opts.MinReplicas)
	case opts.ReplicaTimeout < 0:
		return nil, fmt.Errorf("lock: %w: ReplicaTimeout %v is negative", distkit.ErrInvalidOption, opts.ReplicaTimeout)
	case opts.ReplicaTimeout == 0:
		opts.ReplicaTimeout = min(opts.TTL/4, 500*time.Millisecond)
	case opts.ReplicaTimeout > opts.TTL/3:
		return nil, fmt.Errorf("lock: %w: ReplicaTimeout %v is above TTL/3 (%v): an acquisition must leave time to renew", distkit.ErrInvalidOption, opts.ReplicaTimeout, opts.TTL/3)
	}
	var repl backend.Replicator
	if opts.MinReplicas > 0 {
		var ok bool
		if repl, ok = b.(backend.Replicator); !ok {
			return nil, fmt.Errorf("lock: %w: MinReplicas %d: the backend (%T) cannot wait for replicas (it is not a backend.Replicator)", distkit.ErrInvalidOption, opts.MinReplicas, b)
		}
	}
	if opts.Owner == "" {
		var b [12]byte
		rand.Read(b[:])
		opts.Owner = hex.EncodeToString(b[:])
	} else if err := distkit.ValidateKey("owner", opts.Owner); err != nil {
		return nil, fmt.Errorf("lock: %w: Owner: %w", distkit.ErrInvalidOption, err)
	}
	k := keyspace.Lock(prefix, name)
	c := &core{
		b: b, name: name, errName: fmt.Sprintf("lock %q", name), owner: opts.Owner, ttl: opts.TTL, retry: opts.RetryInterval,
		repl: repl, replicas: opts.MinReplicas, replWait: opts.ReplicaTimeout,
		waitTTL: driver.Millis(max(3*opts.RetryInterval, 150*time.Millisecond)),
		ttlArg:  driver.Millis(opts.TTL),
		lockKey: k.Lock, readers: k.Readers, wwait: k.WaitingWriter,
		fence: k.Fence, waiters: k.Waiters, queue: k.Queue, qexp: k.QueueExpiry, channel: k.Channel,
	}
	c.excKeys = []string{c.lockKey, c.readers, c.wwait, c.fence, c.waiters, c.queue, c.qexp}
	c.notifier, _ = b.(backend.Notifier)
	c.obs = newLockObs(opts, prefix, name)
	return c, nil
}

// newAcquisitionID returns owner plus 64 random bits (keyspace.LockAcquisition).
// Uniqueness, not secrecy, is what matters, so the fast (OS-seeded ChaCha8)
// math/rand/v2 generator is used rather than a getrandom syscall per
// acquisition.
func newAcquisitionID(owner string) string {
	return keyspace.LockAcquisition(owner, strconv.FormatUint(mrand.Uint64(), 36))
}
