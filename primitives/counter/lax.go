package counter

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/ctxsync"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Defaults of the Lax options.
const (
	DefaultAllowedLag = 20 * time.Millisecond
	DefaultDedupTTL   = 24 * time.Hour
)

const (
	maxBackoff     = time.Second
	minFlushBudget = 2 * time.Second // per background flush attempt
	orphanBudget   = 5 * time.Second // final flush of a collected Lax
)

var (
	errLaxClosed       = fmt.Errorf("counter: %w", distkit.ErrClosed)
	errLaxClosedRacing = fmt.Errorf("counter: inc raced with Close: %w (%w)", distkit.ErrClosed, distkit.ErrIndeterminate)
)

// Lax is a counter that buffers Inc and Dec in process and flushes them in
// the background: a warm-key Inc is a few atomic operations, no I/O and no
// allocation. Inc, Dec and Get return the local view (remote value as last
// seen + this process's pending deltas); every other call flushes first and
// then acts like Strict.
//
// Nothing acknowledged is lost: a delta stays pending until the backend
// confirmed it, failed flushes are retried with backoff, a flush whose
// outcome is unknown is resent with the same batch number and applied at
// most once, and Close reports whatever it could not flush. A Lax that is
// garbage-collected without Close flushes once more and stops its
// goroutine.
type Lax struct {
	c *laxCore
}

// laxCore is the state the flusher goroutine shares; it holds no reference
// to the Lax, so an abandoned Lax can be collected.
type laxCore struct {
	b        backend.Backend
	k        keys
	lag      time.Duration
	dedupTTL string // ms
	marker   string // {prefix}:laxseq:<instance>
	ix       *index
	closed   atomic.Bool
	epoch    time.Time // origin of entry.synced

	// mu serialises flushes and flush-first operations. It is held across
	// backend calls, so every wait for it that has a context gives up when
	// the context ends (a Close must not wait for a call hung on the
	// backend).
	mu       *ctxsync.Mutex
	seq      int64  // last batch number used
	inflight *batch // sent with an unknown outcome: resend before anything else

	stop     chan struct{}   // closed by Close
	base     context.Context // the flusher's I/O runs under it; Close cancels it
	cancel   context.CancelFunc
	orphaned chan struct{} // closed when the Lax was collected
	done     chan struct{} // closed when the flusher exits
	stopOnce sync.Once
	orphOnce sync.Once
}

// entry is one key's local state. view = base + added.
type entry struct {
	added atomic.Int64 // sum of every local delta ever accepted
	base  atomic.Int64 // remote value at the last sync minus the part of added it included
	key   string
	field string // key's field in the hash (keyspace.CounterField)
	// sent is the part of added the backend has applied: written with
	// laxCore.mu held, read without by Close when the lock is busy.
	sent atomic.Int64
	// guarded by laxCore.mu
	stuck error // non-nil: the pending delta cannot be applied (overflow)
	// synced is when base was last set from the backend (monotonic ns
	// since the core's epoch); written with mu held, read without.
	synced atomic.Int64
}

// batch is one flush: deltas of entries up to the snapshots taken.
type batch struct {
	seq     int64
	entries []*entry
	snaps   []int64 // added as of the batch
	args    []string
}

// NewLax returns a Lax counter over b and starts its flusher. Options:
// Prefix, AllowedLag (default 20 ms) and DedupTTL (default 24 h).
func NewLax(b backend.Backend, opts Options) (*Lax, error) {
	if b == nil {
		return nil, fmt.Errorf("counter: %w: backend is nil", distkit.ErrInvalidOption)
	}
	k, err := newKeys(opts.Prefix)
	if err != nil {
		return nil, err
	}
	lag, err := durationOpt("AllowedLag", opts.AllowedLag, DefaultAllowedLag, time.Millisecond)
	if err != nil {
		return nil, err
	}
	ttl, err := durationOpt("DedupTTL", opts.DedupTTL, DefaultDedupTTL, time.Second)
	if err != nil {
		return nil, err
	}
	var id [12]byte
	cryptoRead(id[:])
	c := &laxCore{
		b: b, k: k, lag: lag, dedupTTL: driver.Millis(ttl),
		marker:   keyspace.CounterLaxMarker(k.prefix, hex.EncodeToString(id[:])),
		ix:       newIndex(),
		mu:       ctxsync.NewMutex(),
		epoch:    time.Now(),
		stop:     make(chan struct{}),
		orphaned: make(chan struct{}),
		done:     make(chan struct{}),
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	l := &Lax{c: c}
	go c.run()
	runtime.AddCleanup(l, func(c *laxCore) { c.orphOnce.Do(func() { close(c.orphaned) }) }, c)
	return l, nil
}

func cryptoRead(b []byte) { _, _ = crand.Read(b) }

func durationOpt(name string, v, def, min time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return def, nil
	case v < min:
		return 0, fmt.Errorf("counter: %w: %s %v is below the minimum %v", distkit.ErrInvalidOption, name, v, min)
	}
	return v, nil
}

// Prefix returns the counter's prefix.
func (l *Lax) Prefix() string { return l.c.k.prefix }

// entryFor returns key's entry, validating the key when it is new.
func (c *laxCore) entryFor(key string) (*entry, error) {
	if e := c.ix.load(key); e != nil {
		return e, nil
	}
	if err := validKey(key); err != nil {
		return nil, err
	}
	return c.ix.loadOrStore(key, func() *entry { return &entry{key: key, field: keyspace.CounterField(key)} }), nil
}

// Inc adds delta to key's pending delta and returns the local view
// (remote as last seen + pending). It does no I/O; the background flusher
// sends the delta within about AllowedLag. It fails with distkit.ErrOverflow
// when the local view would leave the int64 range.
//
// An Inc that races with Close and loses may return an error matching both
// distkit.ErrClosed and distkit.ErrIndeterminate: its delta was accepted as
// Close began and may or may not be in Close's final flush.
func (l *Lax) Inc(_ context.Context, key string, delta int64) (int64, error) {
	c := l.c
	e := c.ix.slot(key).Load()
	if e == nil || e.key != key || c.closed.Load() {
		return l.incSlow(key, delta)
	}
	v, err := c.add(e, delta)
	runtime.KeepAlive(l) // l must not be collected (and orphaned) mid-call
	return v, err
}

func (l *Lax) incSlow(key string, delta int64) (int64, error) {
	c := l.c
	if c.closed.Load() {
		return 0, errLaxClosed
	}
	e, err := c.entryFor(key)
	if err != nil {
		return 0, err
	}
	c.ix.slot(key).Store(e)
	v, err := c.add(e, delta)
	runtime.KeepAlive(l)
	return v, err
}

// add is Inc's work on a found entry.
func (c *laxCore) add(e *entry, delta int64) (int64, error) {
	n := e.added.Add(delta)
	base := e.base.Load()
	v := base + n
	old := n - delta // exact even when the add wrapped
	if (delta > 0 && n < old) || (delta < 0 && n > old) || (n > 0 && v < base) || (n < 0 && v > base) {
		e.added.Add(-delta)
		return 0, fmt.Errorf("counter: inc %q by %d: %w", e.key, delta, distkit.ErrOverflow)
	}
	if c.closed.Load() {
		// Close began after this delta was accepted: it may or may not be
		// in the final flush.
		return 0, errLaxClosedRacing
	}
	return v, nil
}

// Dec subtracts delta; see Inc.
func (l *Lax) Dec(ctx context.Context, key string, delta int64) (int64, error) {
	d, err := negate("dec", key, delta)
	if err != nil {
		return 0, err
	}
	return l.Inc(ctx, key, d)
}

// Get returns the local view of key, first refreshing the remote part from
// the backend when it is older than AllowedLag.
func (l *Lax) Get(ctx context.Context, key string) (int64, error) {
	c := l.c
	if c.closed.Load() {
		return 0, errLaxClosed
	}
	e, err := c.entryFor(key)
	if err != nil {
		return 0, err
	}
	if c.stale(e) {
		if err := c.mu.LockCtx(ctx); err != nil {
			return 0, fmt.Errorf("counter: get %q: %w", key, err)
		}
		defer c.mu.Unlock()
		if c.inflight != nil { // the remote value is ambiguous until it is resolved
			if err := c.flushLocked(ctx); err != nil {
				return 0, err
			}
		}
		if c.stale(e) {
			v, err := c.b.EvalScript(ctx, counterscript.Get, c.k.hashKeys, e.field)
			if err != nil {
				return 0, wrapErr("get", key, err)
			}
			r, err := intValue(v)
			if err != nil {
				return 0, err
			}
			c.setRemote(e, r)
		}
	}
	v := e.base.Load() + e.added.Load()
	runtime.KeepAlive(l)
	return v, nil
}

func (c *laxCore) stale(e *entry) bool {
	s := e.synced.Load()
	return s == 0 || time.Since(c.epoch)-time.Duration(s) > c.lag
}

// setRemote records that the backend holds r for e, which includes
// exactly e.sent of the local deltas. Called with mu held.
func (c *laxCore) setRemote(e *entry, r int64) {
	e.base.Store(r - e.sent.Load())
	e.synced.Store(max(int64(time.Since(c.epoch)), 1))
}

// Flush sends every pending delta now and waits for the answer. It
// returns an error when something could not be flushed: a backend error,
// or a key whose delta would overflow the remote value (distkit.ErrOverflow;
// see Pending).
func (l *Lax) Flush(ctx context.Context) error {
	c := l.c
	if err := c.mu.LockCtx(ctx); err != nil {
		return fmt.Errorf("counter: flush: %w", err)
	}
	defer c.mu.Unlock()
	if err := c.flushLocked(ctx); err != nil {
		return err
	}
	return c.stuckErr()
}

// Pending returns the deltas accepted locally but not yet confirmed by
// the backend, per key. It does not wait for a flush in progress, whose
// deltas count as pending until the backend confirms them.
func (l *Lax) Pending() map[string]int64 { return l.c.pending() }

// pending returns the unconfirmed delta per key. It needs no lock (a
// Close whose context ended while another call holds mu uses it); a batch
// in flight still counts as pending.
func (c *laxCore) pending() map[string]int64 {
	out := map[string]int64{}
	c.ix.each(func(e *entry) {
		// sent first: it only grows towards a value added already had, so
		// a flush confirming meanwhile cannot make the difference negative.
		sent := e.sent.Load()
		if d := e.added.Load() - sent; d != 0 {
			out[e.key] = d
		}
	})
	return out
}

func (c *laxCore) stuckErr() error {
	var stuck []string
	var first error
	c.ix.each(func(e *entry) {
		if e.stuck != nil && e.added.Load() != e.sent.Load() {
			stuck = append(stuck, e.key)
			if first == nil {
				first = e.stuck
			}
		}
	})
	if first == nil {
		return nil
	}
	sort.Strings(stuck)
	return fmt.Errorf("counter: pending deltas of %q cannot be applied: %w", stuck, first)
}

// flushLocked resends an unresolved batch, then sends all pending deltas
// of keys that are not stuck. Called with mu held.
func (c *laxCore) flushLocked(ctx context.Context) error {
	if c.inflight != nil {
		if err := c.send(ctx, c.inflight); err != nil && !errors.Is(err, errRebuild) {
			return err
		}
	}
	for {
		b := c.build()
		if b == nil {
			return nil
		}
		if err := c.send(ctx, b); err != nil {
			if errors.Is(err, errRebuild) {
				continue // a key was marked stuck; send the others
			}
			return err
		}
	}
}

var errRebuild = errors.New("rebuild batch")

func (c *laxCore) build() *batch {
	var b *batch
	c.ix.each(func(e *entry) {
		if e.stuck != nil {
			return
		}
		a := e.added.Load()
		if a == e.sent.Load() {
			return
		}
		if b == nil {
			c.seq++
			b = &batch{seq: c.seq, args: []string{strconv.FormatInt(c.seq, 10), c.dedupTTL}}
		}
		b.entries = append(b.entries, e)
		b.snaps = append(b.snaps, a)
		b.args = append(b.args, e.field, strconv.FormatInt(a-e.sent.Load(), 10))
	})
	return b
}

// send applies b. On an unknown outcome b becomes the in-flight batch and
// is resent, with the same number, before anything else.
func (c *laxCore) send(ctx context.Context, b *batch) error {
	v, err := c.b.EvalScript(ctx, counterscript.Flush, []string{c.k.hash, c.marker}, b.args...)
	if err != nil {
		var se *backend.ScriptError
		switch {
		case errors.As(err, &se):
			// The script ran and applied nothing (it validates, or rolls
			// back, before setting the marker).
			c.inflight = nil
			if se.Code() == counterscript.CodeOverflow {
				// "DKOVERFLOW <n>": the n-th pair (1-based) would overflow.
				_, arg, _ := strings.Cut(se.Msg, " ")
				if n, err := strconv.Atoi(arg); err == nil && n >= 1 && n <= len(b.entries) {
					e := b.entries[n-1]
					e.stuck = fmt.Errorf("counter: flush %q: %w", e.key, distkit.ErrOverflow)
					return errRebuild
				}
			}
		case errors.Is(err, backend.ErrIndeterminate):
			c.inflight = b
		case c.inflight != b:
			// Not applied, and never sent before with an unknown outcome:
			// forget the batch; its deltas are still pending.
		}
		return wrapErr("flush", "", err)
	}
	c.inflight = nil
	vals, err := v.Int64s()
	if err != nil || len(vals) != len(b.entries)+1 {
		return fmt.Errorf("counter: flush: malformed reply %v", v)
	}
	for i, e := range b.entries {
		e.sent.Store(b.snaps[i])
		c.setRemote(e, vals[i+1])
	}
	return nil
}

// run is the flusher goroutine.
func (c *laxCore) run() {
	defer close(c.done)
	delay := c.lag
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.orphaned:
			c.closed.Store(true)
			ctx, cancel := context.WithTimeout(c.base, orphanBudget)
			c.settle(ctx)
			cancel()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.base, max(minFlushBudget, 5*c.lag))
		err := c.mu.LockCtx(ctx)
		if err == nil {
			err = c.flushLocked(ctx)
			c.mu.Unlock()
		}
		cancel()
		if err != nil {
			delay = min(2*delay, maxBackoff)
			delay += rand.N(delay/4 + 1) // jitter spreads retries of many instances
		} else {
			delay = c.lag
		}
		t.Reset(delay)
	}
}

// settle flushes until nothing is pending or ctx ends, backing off between
// failures. It returns nil only when everything was flushed.
func (c *laxCore) settle(ctx context.Context) error {
	delay := c.lag
	for {
		if err := c.mu.LockCtx(ctx); err != nil {
			return &UnflushedError{Pending: c.pending(), Err: fmt.Errorf("counter: close: %w", err)}
		}
		err := c.flushLocked(ctx)
		if err == nil {
			err = c.stuckErr()
			if err == nil {
				c.mu.Unlock()
				return nil
			}
			pending := c.pending()
			c.mu.Unlock()
			return &UnflushedError{Pending: pending, Err: err} // stuck keys never flush
		}
		pending := c.pending()
		c.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return &UnflushedError{Pending: pending, Err: err}
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
}

// Close stops the flusher and flushes everything, retrying until ctx ends.
// It returns nil only when every accepted delta was confirmed by the
// backend; otherwise an *UnflushedError lists the remainder per key. Close
// may be called again (for example with a longer deadline) to retry. Calls
// made after Close began fail with distkit.ErrClosed. It does not close the
// backend.
func (l *Lax) Close(ctx context.Context) error {
	c := l.c
	c.closed.Store(true)
	c.stopOnce.Do(func() {
		close(c.stop)
		c.cancel() // a background flush in progress gives up at once
	})
	select {
	case <-c.done:
	case <-ctx.Done():
		return &UnflushedError{Pending: c.pending(), Err: fmt.Errorf("counter: close: %w", ctx.Err())}
	}
	return c.settle(ctx)
}

// UnflushedError is returned by Lax.Close when deltas remain unflushed.
// It wraps the last flush error.
type UnflushedError struct {
	Pending map[string]int64 // key → delta not confirmed by the backend
	Err     error
}

// Error lists up to ten unflushed keys with their deltas, then the last
// flush error.
func (e *UnflushedError) Error() string {
	keys := make([]string, 0, len(e.Pending))
	for k := range e.Pending {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "counter: %d keys unflushed (", len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		if i == 10 {
			fmt.Fprintf(&b, "… %d more", len(keys)-10)
			break
		}
		fmt.Fprintf(&b, "%s: %+d", k, e.Pending[k])
	}
	b.WriteString(")")
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the last flush error.
func (e *UnflushedError) Unwrap() error { return e.Err }

// flushFirst runs op with mu held after flushing every pending delta.
func (l *Lax) flushFirst(ctx context.Context, op string, f func() error) error {
	c := l.c
	if c.closed.Load() {
		return errLaxClosed
	}
	if err := c.mu.LockCtx(ctx); err != nil {
		return fmt.Errorf("counter: %s: %w", op, err)
	}
	defer c.mu.Unlock()
	if err := c.flushLocked(ctx); err != nil {
		return fmt.Errorf("counter: %s: flushing first: %w", op, err)
	}
	return f()
}

// remoteIs records remote values for keys this Lax tracks. With supersede,
// a stuck key's pending delta is dropped: the operation overwrote the key,
// as flushing it first would have. Called with mu held.
func (c *laxCore) remoteIs(key string, r int64, supersede bool) {
	e := c.ix.load(key)
	if e == nil {
		return
	}
	if supersede && e.stuck != nil {
		e.sent.Store(e.added.Load())
		e.stuck = nil
	}
	c.setRemote(e, r)
}

// Set flushes pending deltas, then sets key to v like Strict.Set. A
// pending delta of key that cannot be flushed (overflow) is superseded.
func (l *Lax) Set(ctx context.Context, key string, v int64) (int64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	var out int64
	err := l.flushFirst(ctx, "set", func() error {
		if _, err := l.c.b.EvalScript(ctx, counterscript.Set, l.c.k.hashKeys, keyspace.CounterField(key), strconv.FormatInt(v, 10)); err != nil {
			return wrapErr("set", key, err)
		}
		out = v
		l.c.remoteIs(key, v, true)
		return nil
	})
	return out, err
}

// Del flushes pending deltas, then removes key like Strict.Del and returns
// its old value.
func (l *Lax) Del(ctx context.Context, key string) (int64, error) {
	if err := validKey(key); err != nil {
		return 0, err
	}
	var out int64
	err := l.flushFirst(ctx, "del", func() error {
		r, err := l.c.b.EvalScript(ctx, counterscript.Del, l.c.k.hashKeys, keyspace.CounterField(key))
		if err != nil {
			return wrapErr("del", key, err)
		}
		if out, err = intValue(r); err != nil {
			return err
		}
		l.c.remoteIs(key, 0, true)
		return nil
	})
	return out, err
}

// Clear flushes pending deltas, then removes every counter of the prefix.
func (l *Lax) Clear(ctx context.Context) error {
	return l.flushFirst(ctx, "clear", func() error {
		if _, err := l.c.b.EvalScript(ctx, counterscript.Clear, l.c.k.hashKeys); err != nil {
			return wrapErr("clear", "", err)
		}
		l.c.ix.each(func(e *entry) { l.c.remoteIs(e.key, 0, true) })
		return nil
	})
}

// IncIf flushes pending deltas, then acts like Strict.IncIf.
func (l *Lax) IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cur, prev int64, err error) {
	res, err := l.allIf(ctx, "incif", "inc", []Update{{Key: key, Cmp: cmp, Delta: delta}})
	if err != nil {
		return 0, 0, err
	}
	return res[0].Cur, res[0].Prev, nil
}

// SetIf flushes pending deltas, then acts like Strict.SetIf.
func (l *Lax) SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cur, prev int64, err error) {
	res, err := l.allIf(ctx, "setif", "set", []Update{{Key: key, Cmp: cmp, Delta: v}})
	if err != nil {
		return 0, 0, err
	}
	return res[0].Cur, res[0].Prev, nil
}

// IncAllIf flushes pending deltas, then acts like Strict.IncAllIf.
func (l *Lax) IncAllIf(ctx context.Context, updates []Update) ([]Result, error) {
	return l.allIf(ctx, "incallif", "inc", updates)
}

// SetAllIf flushes pending deltas, then acts like Strict.SetAllIf.
func (l *Lax) SetAllIf(ctx context.Context, updates []Update) ([]Result, error) {
	return l.allIf(ctx, "setallif", "set", updates)
}

func (l *Lax) allIf(ctx context.Context, op, mode string, updates []Update) ([]Result, error) {
	if l.c.closed.Load() {
		return nil, errLaxClosed
	}
	if len(updates) == 0 {
		return []Result{}, nil
	}
	if _, err := allIfArgs(mode, updates); err != nil { // fail before flushing
		return nil, err
	}
	var out []Result
	err := l.flushFirst(ctx, op, func() error {
		res, err := evalAllIf(ctx, l.c.b, l.c.k.hash, op, mode, updates)
		if err != nil {
			return err
		}
		for _, r := range res {
			l.c.remoteIs(r.Key, r.Cur, mode == "set" && r.Cur != r.Prev)
		}
		out = res
		return nil
	})
	return out, err
}

// GetAll flushes pending deltas, then reads keys like Strict.GetAll.
func (l *Lax) GetAll(ctx context.Context, keys ...string) ([]int64, error) {
	if l.c.closed.Load() {
		return nil, errLaxClosed
	}
	if len(keys) == 0 {
		return []int64{}, nil
	}
	for i, k := range keys {
		if err := distkit.ValidateKey("key", k); err != nil {
			return nil, fmt.Errorf("counter: getall key %d: %w", i, err)
		}
	}
	var out []int64
	err := l.flushFirst(ctx, "getall", func() error {
		vals, err := evalGetAll(ctx, l.c.b, l.c.k.hash, keys)
		if err != nil {
			return err
		}
		for i, k := range keys {
			l.c.remoteIs(k, vals[i], false)
		}
		out = vals
		return nil
	})
	return out, err
}
