// Package counter provides distributed int64 counters keyed by name.
//
// Strict makes every call one atomic script and one round trip: reads are
// always current. (Lax, which buffers increments in process, arrives with
// the counters issue.)
//
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//	n, err := c.Inc(ctx, "orders", 1)
//
// # Key layout
//
// All counters of one prefix live in one Redis hash, one field per key:
//
//	{prefix}:counter    hash   key → decimal int64
//
// The hash tag {prefix} keeps every key of a prefix in one Cluster slot, so
// multi-key operations are Cluster-safe and Clear is a single DEL.
//
// # Errors
//
// Invalid keys fail with distkit.ErrInvalidKey before any I/O. An increment
// that would overflow int64 fails with distkit.ErrOverflow and changes
// nothing. Backend failures match distkit.ErrNotApplied (nothing changed;
// safe to retry) or distkit.ErrIndeterminate (the change may have been
// applied: Strict never retries these, since Inc is not idempotent).
package counter

import (
	"errors"
	"fmt"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
)

// Options configure a counter. The zero value is valid.
type Options struct {
	// Prefix namespaces the counters; default distkit.DefaultPrefix. It
	// follows the key rules of distkit.ValidateKey.
	Prefix string
	// AllowedLag (Lax only) is how often pending deltas are flushed and how
	// stale Get's remote part may be; default 20 ms, minimum 1 ms.
	AllowedLag time.Duration
	// DedupTTL (Lax only) is how long the backend remembers the last
	// applied flush batch of an instance, so that a batch resent after an
	// unknown outcome is not applied twice; default 24 h, minimum 1 s.
	DedupTTL time.Duration
}

// keys is the Redis key layout of one prefix.
type keys struct {
	prefix string
	hash   string // {prefix}:counter
}

func newKeys(prefix string) (keys, error) {
	p, err := distkit.PrefixOrDefault(prefix)
	if err != nil {
		return keys{}, fmt.Errorf("counter: %w", err)
	}
	return keys{prefix: p, hash: "{" + p + "}:counter"}, nil
}

func validKey(key string) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("counter: %w", err)
	}
	return nil
}

// wrapErr gives a backend error the operation and key, and turns script
// error codes into distkit sentinels.
func wrapErr(op, key string, err error) error {
	var se *backend.ScriptError
	if errors.As(err, &se) && se.Code() == codeOverflow {
		return fmt.Errorf("counter: %s %q: %w", op, key, distkit.ErrOverflow)
	}
	if key == "" {
		return fmt.Errorf("counter: %s: %w", op, err)
	}
	return fmt.Errorf("counter: %s %q: %w", op, key, err)
}

// intValue reads a script's counter result: nil counts as 0.
func intValue(v backend.Value) (int64, error) {
	if v.IsNil() {
		return 0, nil
	}
	return v.Int64()
}
