// Package counter provides distributed int64 counters keyed by name, with
// two guarantees behind one interface, Counter: Strict makes every call one
// atomic script and one round trip, so reads are always current; Lax
// buffers Inc and Dec in process (a few nanoseconds, no I/O, no allocation
// on a warm key) and flushes them in the background every AllowedLag,
// while every other call flushes first and then acts like Strict.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or a Redis driver
//	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close(ctx)
//	n, err := c.Inc(ctx, "orders", 1)
//	cur, prev, err := c.IncIf(ctx, "seats", distkit.Lt(100), 1) // take a seat while fewer than 100 are taken
//	fmt.Println(n, cur, prev, err)
//
// # Key layout
//
// All counters of one prefix live in one Redis hash, one field per key;
// Lax adds one small marker per instance. <prefix> and <key> stand for the
// prefix and key as given, with '%', ':', '{', '}' and control bytes
// written as %XX (see package distkit, "Keys"):
//
//	{<prefix>}:counter              hash    <key> → decimal int64
//	{<prefix>}:laxseq:<instance>    string  last flush batch applied for one Lax value, and the pairs it refused ("17" or "17:2,5"; TTL DedupTTL)
//
// The hash tag {<prefix>} keeps every key of a prefix in one Cluster slot,
// so every script is Cluster-safe and Clear is a single DEL. Values are
// exact over the whole int64 range: scripts never do arithmetic on Lua
// numbers (doubles) but on Redis integers and decimal strings.
//
// # Group commit (Strict)
//
// Concurrent Inc, Dec, Get, Set and Del calls on one Strict share script
// calls: a call made while the counter is idle goes out at once as its own
// script (a lone caller waits one round trip); calls arriving while two
// calls of the counter are in flight are queued and sent together, in
// arrival order, in one script (counterscript.Batch) as soon as one of
// those returns. Each call gets exactly the value or error it would have
// got alone at its place, and takes effect inside its own call, so Strict
// stays linearizable. A whole batch that fails gives every call in it the
// batch's class (ErrNotApplied or ErrIndeterminate). A call whose context
// ends while queued is never sent (ErrNotApplied); once sent it returns
// ErrIndeterminate at once. Options.DisableGroupCommit turns it off.
//
// # Conditional and batch operations
//
// IncIf/SetIf compare the current value (0 when absent) with a
// distkit.Comparator: on a match they apply and return (new, old), on a
// miss they change nothing and return (current, current). IncAllIf and
// SetAllIf apply a list of such updates in input order as one atomic
// script; a later update sees the effect of an earlier one on the same key,
// and a failure (overflow) leaves every key unchanged.
//
// # Lax: nothing acknowledged is lost
//
// Each flush is one script call per prefix (per 1024 keys) carrying a
// batch number; the script applies a batch only if its number is above the
// instance's marker and advances the marker in the same atomic step. A
// flush whose outcome is unknown (distkit.ErrIndeterminate) is resent with
// the same number and deltas before anything else, so it is applied
// exactly once. Failed flushes are retried with backoff and their deltas
// stay pending; Close returns nil only when everything was confirmed,
// otherwise an *UnflushedError listing the remainder per key. A Lax that
// is garbage-collected without Close is noticed by a runtime cleanup (the
// flusher holds no reference to it): the flusher does a final flush and
// exits.
//
// The marker holds the last batch number applied for one Lax value, rather
// than one marker per batch: the same exactly-once guarantee with one key
// per live Lax instead of one per flush (50 per second at the default
// lag), so its TTL (DedupTTL, 24 h) can be long enough to outlast any
// realistic outage between a lost reply and its resend.
//
// Inc checks the local view before its delta becomes visible to the
// flusher (a compare-and-swap), so a rejected Inc never reaches the
// backend. A delta the backend refuses — it would overflow the remote
// value that other processes moved close to the int64 limit, or the stored
// value is not an integer — is refused for that key only: the script
// applies the other keys of the batch, and the key is set aside, reported
// by Failed, Flush and Close (UnflushedError.Failed) and retried with its
// own backoff (at once by Flush and Close). It recovers when a retry
// succeeds (another process made room) or when Set, Del or Clear
// overwrites the key, dropping the refused delta. Until then IncIf, SetIf,
// the batch calls and GetAll involving the key fail, naming it: their
// comparison or read would miss this process's acknowledged delta.
//
// # Lax: costs follow the keys in use
//
// Inc on a warm key touches that key's entry only, whether the Lax
// tracks one key or millions; it writes anything else only when the key
// goes from "nothing pending" to "something pending" (it joins the dirty
// set). A flush sends the dirty keys only, in script calls of at most 1024
// keys: one pending key among a million idle ones costs what one key
// costs. The local state of a key with nothing pending is dropped after
// IdleAfter (default 1 min) without use, and at once by Del and Clear;
// Tracked reports how many keys are held. A key used again after that
// starts afresh: its remote part is unknown (0) in Inc's result until a
// flush or a Get reads it, as for a key this Lax never saw.
//
// # Lax: reads during an outage
//
// Pending and Failed read local state only and answer at once, even while
// a flush hangs. Get returns the local view; when its remote part is older
// than AllowedLag and cannot be refreshed (the backend fails, or ctx ends
// while a flush holds it), Get returns the local view anyway, with an
// error matching distkit.ErrStale and the cause. Flush and Close return
// when their context ends, even if the backend does not answer, with the
// unflushed remainder.
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
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Options configure a counter. The zero value is valid.
type Options struct {
	// Prefix namespaces the counters (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix. Counters
	// of one prefix share one Redis hash.
	Prefix string
	// AllowedLag (Lax only) is how often pending deltas are flushed and how
	// stale Get's remote part may be; default 20 ms, minimum 1 ms.
	AllowedLag time.Duration
	// DedupTTL (Lax only) is how long the backend remembers the last
	// applied flush batch of an instance, so that a batch resent after an
	// unknown outcome is not applied twice; default 24 h, minimum 1 s.
	DedupTTL time.Duration
	// IdleAfter (Lax only): the local state of a key with nothing pending
	// is dropped after this long without use, so memory and flush cost
	// follow the keys in use; default 1 min, minimum 1 ms. A dropped key
	// used again starts afresh, its remote part unknown (0) until a flush
	// or Get reads it.
	IdleAfter time.Duration
	// Logger (Lax only) receives one line per state change of the
	// background flusher (flush_failing, flush_recovered; README
	// "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer (Lax only) is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider (Lax only) records the flusher's metrics
	// (distkit.counter.*, README "Observability"); nil: none, at no cost.
	MeterProvider metric.MeterProvider
	// DisableGroupCommit (Strict only) sends every Inc, Dec, Get, Set and
	// Del as its own script call instead of coalescing concurrent calls
	// into shared script calls (see Strict). Results and errors are the
	// same either way; group commit only changes how many round trips
	// concurrent calls take.
	DisableGroupCommit bool
}

// keys is the Redis key layout of one prefix (internal/keyspace).
type keys struct {
	prefix   string
	hash     string   // {prefix}:counter
	hashKeys []string // {hash}: the KEYS of single-hash scripts, shared read-only
}

func newKeys(prefix string) (keys, error) {
	p, err := keyspace.Prefix(prefix)
	if err != nil {
		return keys{}, fmt.Errorf("counter: %w", err)
	}
	h := keyspace.CounterHash(p)
	return keys{prefix: p, hash: h, hashKeys: []string{h}}, nil
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
	if errors.As(err, &se) && se.Code() == counterscript.CodeOverflow {
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
