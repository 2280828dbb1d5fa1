// Package distkit gives Go services distributed counters, instance-aware
// counters, locks and rate limiting, backed by Redis (standalone or
// Cluster, through the rueidis or go-redis client) or by an in-process
// memory backend. This package holds what every primitive shares: the key
// rules, comparators, sentinel errors and the Clock.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or rueidisbackend.New(client), goredisbackend.New(client)
//	defer b.Close()
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	n, err := c.Inc(ctx, "orders", 1) // stored in the Redis hash {shop}:counter
//	if errors.Is(err, distkit.ErrIndeterminate) {
//		// the increment may or may not have been applied: do not retry blindly
//	}
//	fmt.Println(n, err)
//
// The primitives live in primitives/counter, primitives/instancecounter,
// primitives/lock and primitives/ratelimit; the backends in backend/memory,
// backend/rueidis and backend/goredis.
//
// # Keys
//
// A key, prefix, lock name, owner or instance id is any byte string of 1
// to MaxKeyLen (1024) bytes: IPv6 addresses, "user:42", URLs, "a{b}c",
// binary ids are all valid as they are. distkit encodes each one before it
// becomes part of a Redis key name, hash field, set member or channel: the
// bytes '%', ':', '{', '}', every byte below 0x20 and 0x7f become '%'
// followed by two upper-case hex digits, and every other byte is kept. The
// encoding is injective, so two different keys never share state, and it
// keeps all the Redis keys of one counter prefix, lock or rate-limited key
// in one Redis Cluster hash slot. Each primitive's documentation shows its
// exact layout; a key without any of the encoded bytes appears in Redis
// exactly as given.
//
// # Errors
//
// Every error a primitive returns can be matched with errors.Is against the
// sentinels below. Backend failures additionally match ErrNotApplied
// (certainly not executed, safe to retry) or ErrIndeterminate (may have
// executed).
package distkit

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/distkit-go/distkit/backend"
)

// Sentinel errors. Every error a primitive returns wraps one of them.
var (
	// ErrInvalidKey: a key, prefix, name or owner breaks the rules of
	// ValidateKey. Nothing was sent to the backend.
	ErrInvalidKey = errors.New("distkit: invalid key")
	// ErrInvalidOption: an option or argument is out of range. Nothing was
	// sent to the backend.
	ErrInvalidOption = backend.ErrInvalidOption
	// ErrClosed: the primitive or backend was closed.
	ErrClosed = backend.ErrClosed
	// ErrNotAcquired: a single lock attempt found the lock held.
	ErrNotAcquired = errors.New("distkit: not acquired")
	// ErrTimeout: a lock was not acquired within the given time.
	ErrTimeout = errors.New("distkit: timeout")
	// ErrRetriesExhausted: a lock was not acquired within the given number
	// of attempts; the error is a *RetriesError.
	ErrRetriesExhausted = errors.New("distkit: retries exhausted")
	// ErrNotHeld: a release or renewal found the lock held by someone else
	// or not at all.
	ErrNotHeld = errors.New("distkit: not held")
	// ErrLeaseLost: the lease backing a held lock or instance was lost.
	ErrLeaseLost = errors.New("distkit: lease lost")
	// ErrOverflow: the operation would overflow an int64; nothing changed.
	ErrOverflow = errors.New("distkit: int64 overflow")
	// ErrDuplicateInstance: another live instance counter holds this
	// instance id; nothing was applied.
	ErrDuplicateInstance = errors.New("distkit: instance id held by another live instance")
	// ErrStale: a value was returned from local state because it could not
	// be refreshed from the backend (Lax.Get during an outage); the error
	// also wraps the cause.
	ErrStale = errors.New("distkit: stale value")
	// ErrNotReplicated: an acquisition that had to be acknowledged by
	// replicas (lock.Options.MinReplicas) was not, within the time allowed;
	// it is not granted and was undone (best effort: otherwise it expires
	// by its TTL). The error is a *ReplicationError.
	ErrNotReplicated = errors.New("distkit: not acknowledged by enough replicas")
	// ErrNoLeader: an election has no leader at the moment (none was
	// elected, or the last one resigned or its term expired).
	ErrNoLeader = errors.New("distkit: no leader")

	// ErrNotApplied: the backend certainly did not execute the operation.
	ErrNotApplied = backend.ErrNotApplied
	// ErrIndeterminate: the backend may or may not have executed the operation.
	ErrIndeterminate = backend.ErrIndeterminate
)

// ReplicationError reports an acquisition that fewer replicas than wanted
// acknowledged. It matches ErrNotReplicated.
type ReplicationError struct {
	Wanted int // replicas that had to acknowledge
	Acked  int // replicas that did, within the timeout
}

// Error says how many replicas acknowledged of how many wanted.
func (e *ReplicationError) Error() string {
	return fmt.Sprintf("%s: %d of %d", ErrNotReplicated.Error(), e.Acked, e.Wanted)
}

// Is reports whether target is ErrNotReplicated.
func (e *ReplicationError) Is(target error) bool { return target == ErrNotReplicated }

// RetriesError reports that a bounded number of attempts all failed. It
// matches ErrRetriesExhausted.
type RetriesError struct {
	Attempts int   // how many attempts were made
	Last     error // the last attempt's error, if it was not a plain refusal
}

// Error says how many attempts failed and, if known, the last error.
func (e *RetriesError) Error() string {
	msg := "distkit: retries exhausted after " + strconv.Itoa(e.Attempts) + " attempts"
	if e.Last != nil {
		msg += ": " + e.Last.Error()
	}
	return msg
}

// Is reports whether target is ErrRetriesExhausted.
func (e *RetriesError) Is(target error) bool { return target == ErrRetriesExhausted }

// Unwrap returns the last attempt's error.
func (e *RetriesError) Unwrap() error { return e.Last }

// Clock tells time; see backend.Clock.
type Clock = backend.Clock

// SystemClock is the operating system's Clock.
type SystemClock = backend.SystemClock

// DefaultPrefix is the prefix primitives use when Options.Prefix is empty.
const DefaultPrefix = "distkit"

// MaxKeyLen is the longest key, prefix, name, owner or instance id
// accepted, in bytes, counted as the caller gives them (before distkit
// encodes them for Redis).
const MaxKeyLen = 1024

// ValidateKey checks a key, prefix, name, owner or instance id: any byte
// string of 1 to MaxKeyLen bytes is valid — ':', '{', '}', '%', spaces,
// control bytes and invalid UTF-8 included, since distkit encodes every
// byte it must (see the key layout in each primitive's documentation).
// what names the argument in the error ("key", "prefix", …). The error
// wraps ErrInvalidKey and says which rule failed.
func ValidateKey(what, key string) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: %s is empty", ErrInvalidKey, what)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalidKey, what, len(key), MaxKeyLen)
	}
	return nil
}
