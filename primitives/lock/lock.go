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
//		g, err := m.Lock(ctx) // waits until acquired or ctx is done
//		if err != nil {
//			return err
//		}
//		defer g.Release(ctx)
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
// # Waiting
//
// Releases publish on the lock's channel. When the backend is a
// backend.Notifier (all three drivers are), a waiter whose first attempt
// finds the lock held subscribes, tries again at once (so a release in
// between is not missed) and then retries as soon as a release is
// published, so a hand-off costs about one round trip; an uncontended
// acquisition never subscribes. Waiters also poll every RetryInterval,
// which covers a missed message and a holder that crashed (its lease
// expires).
//
// # RWMutex
//
// Many readers or one writer. A writer that has to wait marks itself
// waiting (refreshed on every attempt, expiring after 3×RetryInterval if
// the writer gives up or dies); new readers do not enter while a writer
// waits, so a stream of readers cannot starve it. Each reader holds its own
// lease entry, renewed independently, so a crashed reader expires alone.
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
//	{<prefix>:<name>}:released  channel  a message on every release
package lock

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

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
}

// State is a guard's view of its lease.
type State int32

// Guard states.
const (
	// Acquired: the lease is held (as of the last renewal).
	Acquired State = iota
	// Lost: a renewal failed or was refused; Done is closed. A renewal that
	// fails on a transient error may later confirm the lease again (back to
	// Acquired); a refused one is final.
	Lost
	// Released: Release succeeded.
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
	notifier backend.Notifier // nil: poll only
	name     string
	owner    string
	ttl      time.Duration
	retry    time.Duration
	waitTTL  string // ms, the waiting-writer marker's lifetime
	ttlArg   string // ms
	lockKey  string
	readers  string
	wwait    string
	fence    string
	channel  string
	excKeys  []string // KEYS of the acquire scripts
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
	if opts.Owner == "" {
		var b [12]byte
		rand.Read(b[:])
		opts.Owner = hex.EncodeToString(b[:])
	} else if err := distkit.ValidateKey("owner", opts.Owner); err != nil {
		return nil, fmt.Errorf("lock: %w: Owner: %w", distkit.ErrInvalidOption, err)
	}
	k := keyspace.Lock(prefix, name)
	c := &core{
		b: b, name: name, owner: opts.Owner, ttl: opts.TTL, retry: opts.RetryInterval,
		waitTTL: driver.Millis(max(3*opts.RetryInterval, 150*time.Millisecond)),
		ttlArg:  driver.Millis(opts.TTL),
		lockKey: k.Lock, readers: k.Readers, wwait: k.WaitingWriter,
		fence: k.Fence, channel: k.Channel,
	}
	c.excKeys = []string{c.lockKey, c.readers, c.wwait, c.fence}
	c.notifier, _ = b.(backend.Notifier)
	return c, nil
}

// newAcquisitionID returns owner plus 64 random bits (keyspace.LockAcquisition).
// Uniqueness, not secrecy, is what matters, so the fast (OS-seeded ChaCha8)
// math/rand/v2 generator is used rather than a getrandom syscall per
// acquisition.
func newAcquisitionID(owner string) string {
	return keyspace.LockAcquisition(owner, strconv.FormatUint(mrand.Uint64(), 36))
}
