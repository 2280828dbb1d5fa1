package counter

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/flush"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/obs"
)

// Defaults of the Lax options.
const (
	DefaultAllowedLag = 20 * time.Millisecond
	DefaultDedupTTL   = 24 * time.Hour
	// DefaultIdleAfter is how long Lax keeps the local state of a key that
	// has nothing pending after its last use (Inc flushed, Get, Set…).
	DefaultIdleAfter = time.Minute
)

// maxBatch caps the keys of one flush script call, so that flushing a
// burst of many keys never blocks Redis on one long script.
const maxBatch = 1024

var (
	errLaxClosed       = fmt.Errorf("counter: %w", distkit.ErrClosed)
	errLaxClosedRacing = fmt.Errorf("counter: inc raced with Close: %w (%w)", distkit.ErrClosed, distkit.ErrIndeterminate)
)

// Lax is a counter that buffers Inc and Dec in process and flushes them in
// the background: a warm-key Inc is a few atomic operations, no I/O and no
// allocation, whether the Lax tracks one key or millions. Inc, Dec and Get
// return the local view (remote value as last seen + this process's
// pending deltas); every other call flushes first and then acts like
// Strict.
//
// Nothing acknowledged is lost: a delta stays pending until the backend
// confirmed it, failed flushes are retried with backoff, a flush whose
// outcome is unknown is resent with the same batch number and applied at
// most once, and Close reports whatever it could not flush. A key whose
// delta the backend refuses (distkit.ErrOverflow, a value that is not an
// integer) is set aside on its own and reported by Failed, Flush and
// Close; the other keys keep flushing, and the key is retried with backoff
// until its cause goes away or a Set, Del or Clear overwrites it.
//
// Memory follows the keys in use: the local state of a key with nothing
// pending is dropped after IdleAfter without use (and at once by Del and
// Clear), so a flush costs what is pending, not every key ever seen. A
// key seen again starts afresh, its remote part unknown (0) until a flush
// or Get reads it, as for a key this Lax never saw.
//
// A Lax that is garbage-collected without Close flushes once more and
// stops its goroutine.
type Lax struct {
	c *laxCore
}

// laxCore is the state the flusher goroutine shares; it holds no reference
// to the Lax, so an abandoned Lax can be collected.
type laxCore struct {
	b         backend.Backend
	k         keys
	lag       time.Duration
	dedupTTL  string   // ms
	flushKeys []string // {hash, marker}
	epoch     time.Time
	g         *flush.Engine[laxKey]
	obs       *obs.Flusher // nil: no Logger, Observer or MeterProvider
}

// laxKey is Lax's part of one key's state; its view is
// base + Entry.Added().
type laxKey struct {
	// base is the remote value last seen minus the part of the accepted
	// deltas it included (Entry.Sent), in wrapping arithmetic: it changes
	// only when the remote value moves for other reasons (other processes,
	// Set), never when this process's own deltas are applied.
	base  atomic.Int64
	field string // the key's field in the hash (keyspace.CounterField)
	// synced is when base was last set from the backend (ns since the
	// core's epoch); 0 when never. Last: every flush writes it, and it is
	// not on Inc's cache line.
	synced atomic.Int64
}

type laxEntry = flush.Entry[laxKey]

// laxBatch is a batch's encoded arguments and its reply values; the
// engine reuses it for later batches (seq says which one it encodes).
type laxBatch struct {
	seq  int64
	args []string
	vals []int64
	// noval[i]: item i was applied, but the reply carries no integer for
	// it (a resend's reply gives the field's current value, which another
	// process may have overwritten with something else since).
	noval []bool
	at    int64 // when the reply came (laxKey.synced's clock)
}

// NewLax returns a Lax counter over b and starts its flusher. Options:
// Prefix, AllowedLag (default 20 ms), DedupTTL (default 24 h) and
// IdleAfter (default 1 min).
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
	idle, err := durationOpt("IdleAfter", opts.IdleAfter, DefaultIdleAfter, time.Millisecond)
	if err != nil {
		return nil, err
	}
	var id [12]byte
	cryptoRead(id[:])
	c := &laxCore{
		b: b, k: k, lag: lag, dedupTTL: driver.Millis(ttl), epoch: time.Now(),
		flushKeys: []string{k.hash, keyspace.CounterLaxMarker(k.prefix, hex.EncodeToString(id[:]))},
	}
	c.g = flush.New(flush.Config[laxKey]{
		Interval:  lag,
		IdleAfter: idle,
		MaxBatch:  maxBatch,
		Send:      c.sendObserved,
		Applied:   c.applied,
	})
	c.obs = newFlushObs(opts, k.prefix, c)
	l := &Lax{c: c}
	c.g.Start()
	runtime.AddCleanup(l, func(g *flush.Engine[laxKey]) { g.Orphan() }, c.g)
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

// entry returns key's entry, validating the key when it is new.
func (c *laxCore) entry(key string) (*laxEntry, error) {
	if e := c.g.Lookup(key); e != nil {
		return e, nil
	}
	if err := validKey(key); err != nil {
		return nil, err
	}
	return c.g.Entry(key, func(e *laxEntry) { e.X.field = keyspace.CounterField(key) }), nil
}

// Inc adds delta to key's pending delta and returns the local view
// (remote as last seen + pending). It does no I/O; the background flusher
// sends the delta within about AllowedLag. It fails with distkit.ErrOverflow
// when the local view would leave the int64 range, and then changes
// nothing: the delta is checked before it becomes visible to the flusher.
//
// An Inc that races with Close and loses may return an error matching both
// distkit.ErrClosed and distkit.ErrIndeterminate: its delta was accepted as
// Close began and may or may not be in Close's final flush.
func (l *Lax) Inc(_ context.Context, key string, delta int64) (int64, error) {
	c := l.c
	// The warm path, one attempt: no call unless the key is not in the
	// address cache or joins the dirty set. incSlow handles everything
	// else (retries, overflow, new keys, Close).
	e := c.g.Cached(key)
	if e == nil {
		e = c.g.Lookup(key)
	}
	for try := 0; e != nil && try < 4 && !c.g.Closed(); try++ { // a few attempts under contention
		n := e.Added()
		v := e.X.base.Load() + n
		nv, nn := v+delta, n+delta
		if !((delta >= 0 && nv >= v && nn >= n) || (delta < 0 && nv < v && nn < n)) {
			break
		}
		if ok, dirty := e.TryAdd(n, nn); ok {
			if dirty {
				c.g.Dirty(e)
			}
			if c.g.Closed() {
				return 0, errLaxClosedRacing
			}
			runtime.KeepAlive(l) // l must not be collected (and orphaned) mid-call
			return nv, nil
		}
	}
	return l.incSlow(key, delta)
}

func (l *Lax) incSlow(key string, delta int64) (int64, error) {
	c := l.c
	if c.g.Closed() {
		return 0, errLaxClosed
	}
	e, err := c.entry(key) // the entry found, or a new one
	if err != nil {
		return 0, err
	}
	v, err := c.add(e, key, delta)
	runtime.KeepAlive(l)
	return v, err
}

// add is Inc's work on a found entry: check, then publish with one
// compare-and-swap.
func (c *laxCore) add(e *laxEntry, key string, delta int64) (int64, error) {
	for {
		n := e.Added()
		v := e.X.base.Load() + n // wrapping: exact while the view is in range
		nv := v + delta
		if (delta > 0 && nv < v) || (delta < 0 && nv > v) {
			return 0, fmt.Errorf("counter: inc %q by %d: %w", key, delta, distkit.ErrOverflow)
		}
		nn := n + delta
		if (delta > 0 && nn < n) || (delta < 0 && nn > n) {
			// The entry's sum of accepted deltas would leave int64 while
			// the view stays in range (huge deltas, overwritten by Set):
			// continue on a fresh entry; this one still flushes.
			e = c.retire(e, v)
			continue
		}
		if c.g.Accept(e, n, nn) {
			if c.g.Closed() {
				// Close began after this delta was accepted: it may or may
				// not be in the final flush.
				return 0, errLaxClosedRacing
			}
			return nv, nil
		}
	}
}

// retire replaces e, whose view is v, by a fresh entry with the same view.
func (c *laxCore) retire(e *laxEntry, v int64) *laxEntry {
	c.g.Retire(e)
	synced := e.X.synced.Load()
	return c.g.Entry(e.Key(), func(n *laxEntry) {
		n.X.field = e.X.field
		n.X.base.Store(v)
		n.X.synced.Store(synced)
	})
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
//
// When that refresh fails (the backend is unreachable, ctx ended while a
// flush held the backend), Get still returns the local view — the remote
// value as last seen plus this process's pending deltas — together with an
// error matching distkit.ErrStale and the cause (for example
// distkit.ErrNotApplied). A caller that accepts a stale value checks
// errors.Is(err, distkit.ErrStale); one that needs a fresh value treats any
// error as failure.
func (l *Lax) Get(ctx context.Context, key string) (int64, error) {
	c := l.c
	if c.g.Closed() {
		return 0, errLaxClosed
	}
	e, err := c.entry(key)
	if err != nil {
		return 0, err
	}
	c.g.Touch(e)
	if c.stale(e) {
		err = c.g.Do(ctx, flush.Resolve, func(ctx context.Context) error {
			if !c.stale(e) {
				return nil
			}
			v, err := c.b.EvalScript(ctx, counterscript.Get, c.k.hashKeys, e.X.field)
			if err != nil {
				return err
			}
			r, err := intValue(v)
			if err != nil {
				return err
			}
			c.g.WithLock(func() { c.setRemoteLocked(e, r) })
			return nil
		})
	}
	v := e.X.base.Load() + e.Added()
	runtime.KeepAlive(l)
	if err != nil {
		return v, fmt.Errorf("counter: get %q: %w: refreshing from the backend: %w", key, distkit.ErrStale, err)
	}
	return v, nil
}

func (c *laxCore) stale(e *laxEntry) bool {
	s := e.X.synced.Load()
	return s == 0 || time.Since(c.epoch)-time.Duration(s) > c.lag
}

// setRemoteLocked records that the backend holds r for e, which includes
// exactly e.Sent() of the local deltas. Called with the engine's lock.
func (c *laxCore) setRemoteLocked(e *laxEntry, r int64) { c.setRemoteAtLocked(e, r, c.clock()) }

func (c *laxCore) setRemoteAtLocked(e *laxEntry, r, at int64) {
	if b := r - e.Sent(); e.X.base.Load() != b { // unchanged when only this process moves the key: keep Inc's cache line clean
		e.X.base.Store(b)
	}
	e.X.synced.Store(at)
}

// clock is laxKey.synced's clock: ns since the core's epoch, never 0.
func (c *laxCore) clock() int64 { return max(int64(time.Since(c.epoch)), 1) }

// send runs one flush batch (the engine's Config.Send).
// newFlushObs returns the telemetry of c's flusher, nil when opts configure
// none. The pending-keys gauge reads c's engine through a weak pointer, so
// that a Lax collected without Close is not kept alive by the provider.
func newFlushObs(opts Options, prefix string, c *laxCore) *obs.Flusher {
	wc := weak.Make(c)
	return obs.NewFlusher(obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider},
		false, prefix, "", func() (int, bool) {
			if c := wc.Value(); c != nil && !c.g.Closed() {
				return len(c.g.Pending()), true
			}
			return 0, false
		})
}

// sendObserved is send, telling c.obs (if any) the outcome of each batch.
func (c *laxCore) sendObserved(ctx context.Context, b *flush.Batch[laxKey]) error {
	if c.obs == nil {
		return c.send(ctx, b)
	}
	err := c.send(ctx, b)
	applied, refusal := obs.BatchOutcome(b, err)
	c.obs.Sent(ctx, applied, refusal, err, func() bool { return obs.RefusedLeft(c.g, b) })
	return err
}

func (c *laxCore) send(ctx context.Context, b *flush.Batch[laxKey]) error {
	lb, _ := b.Ext.(*laxBatch)
	if lb == nil {
		lb = &laxBatch{}
		b.Ext = lb
	}
	if lb.seq != b.Seq || len(lb.vals) != len(b.Items) {
		c.encode(b, lb)
	}
	v, err := c.b.EvalScript(ctx, counterscript.Flush, c.flushKeys, lb.args...)
	if err != nil {
		return fmt.Errorf("counter: flush: %w", err)
	}
	arr, err := v.Array()
	if err != nil || len(arr) != len(b.Items)+1 {
		// The script ran, but what it did is unknown: resend.
		return fmt.Errorf("counter: flush: malformed reply %v: %w", v, backend.ErrIndeterminate)
	}
	status, err := arr[0].Int64()
	if err != nil || (status != 0 && status != 1) {
		return fmt.Errorf("counter: flush: malformed reply %v: %w", v, backend.ErrIndeterminate)
	}
	for i := range b.Items {
		it := &b.Items[i]
		lb.noval[i] = false
		s, err := arr[i+1].Text()
		if err != nil {
			return fmt.Errorf("counter: flush: malformed reply %v: %w", v, backend.ErrIndeterminate)
		}
		switch {
		case s == "!": // refused on the first run of this batch; the reason comes with the next one
		case strings.HasPrefix(s, "!"):
			it.Err = keyError(it.E.Key(), s[1:])
		default:
			r, err := strconv.ParseInt(s, 10, 64)
			switch {
			case err == nil:
				lb.vals[i], it.Applied = r, true
			case status == 0:
				// A resend: the first send applied the item, and the field
				// holds something else now (another process overwrote it).
				// Applied, with no value to learn: one key's value never
				// keeps the whole batch in flight.
				lb.noval[i], it.Applied = true, true
			default:
				return fmt.Errorf("counter: flush: malformed reply %v: %w", v, backend.ErrIndeterminate)
			}
		}
	}
	lastValues(b, lb.vals, lb.noval)
	lb.at = c.clock()
	return nil
}

// lastValues gives every applied item the value its field had at the end
// of the batch. A key has several items only when its entry was replaced
// (retired, or evicted while an Inc raced) with deltas still pending; then
// each entry's view must count the others' applied deltas as remote.
func lastValues(b *flush.Batch[laxKey], vals []int64, noval []bool) {
	dup := false
	for _, it := range b.Items {
		dup = dup || it.E.Unlinked()
	}
	if !dup {
		return
	}
	last := map[string]int64{}
	for i, it := range b.Items {
		if it.Applied && !noval[i] {
			last[it.E.X.field] = vals[i]
		}
	}
	for i, it := range b.Items {
		if v, ok := last[it.E.X.field]; ok && it.Applied && !noval[i] {
			vals[i] = v
		}
	}
}

// keyError is the error of a key whose delta the flush script refused.
func keyError(key, msg string) error {
	if msg == counterscript.CodeOverflow {
		return fmt.Errorf("counter: flush %q: %w", key, distkit.ErrOverflow)
	}
	return fmt.Errorf("counter: flush %q: %w", key, &backend.ScriptError{Script: counterscript.Flush.Name(), Msg: msg})
}

// encode builds the script arguments of b into lb, reusing its slices.
// Deltas in [0, 100) are strconv's constant strings; the digits of the
// others share one new string (never a reused buffer: a driver may still
// hold the arguments of a call it gave up on), so a batch allocates a
// handful of times whatever its size.
func (c *laxCore) encode(b *flush.Batch[laxKey], lb *laxBatch) {
	var buf []byte
	for _, it := range b.Items {
		if it.Delta < 0 || it.Delta >= 100 {
			if buf == nil {
				buf = make([]byte, 0, 8*len(b.Items))
			}
			buf = strconv.AppendInt(buf, it.Delta, 10)
		}
	}
	digits := unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is not written again
	clear(lb.args)
	args := append(lb.args[:0], strconv.FormatInt(b.Seq, 10), c.dedupTTL)
	pos := 0
	for _, it := range b.Items {
		var d string
		if it.Delta < 0 || it.Delta >= 100 {
			n := decimalLen(it.Delta)
			d, pos = digits[pos:pos+n], pos+n
		} else {
			d = strconv.FormatInt(it.Delta, 10) // no allocation below 100
		}
		args = append(args, it.E.X.field, d)
	}
	lb.seq, lb.args = b.Seq, args
	if cap(lb.vals) < len(b.Items) {
		lb.vals = make([]int64, len(b.Items))
		lb.noval = make([]bool, len(b.Items))
	}
	lb.vals, lb.noval = lb.vals[:len(b.Items)], lb.noval[:len(b.Items)]
}

// decimalLen is len(strconv.FormatInt(d, 10)).
func decimalLen(d int64) int {
	n := 1
	u := uint64(d)
	if d < 0 {
		n, u = 2, -u
	}
	for ; u >= 10; u /= 10 {
		n++
	}
	return n
}

// applied records the value the backend returned for an applied item (the
// engine's Config.Applied, called with its lock).
func (c *laxCore) applied(b *flush.Batch[laxKey], i int) {
	lb := b.Ext.(*laxBatch)
	if lb.noval[i] {
		return // the view (base + Added) already counts the delta: nothing to learn
	}
	c.setRemoteAtLocked(b.Items[i].E, lb.vals[i], lb.at)
}

// Flush sends every pending delta now, keys set aside by an earlier
// refusal included, and waits for the answer within ctx. It returns nil,
// or an *UnflushedError listing what is left: the keys the backend
// refused (Failed, for example matching distkit.ErrOverflow), or every
// pending key when a batch failed (Err matches distkit.ErrNotApplied or
// distkit.ErrIndeterminate) or ctx ended. It returns when ctx ends even if
// the backend does not answer; the batch then stays in flight and is
// resolved, exactly once, by a later flush. After Close it fails with
// distkit.ErrClosed (call Close again to retry the final flush).
func (l *Lax) Flush(ctx context.Context) error {
	if l.c.g.Closed() {
		return errLaxClosed
	}
	return unflushed(l.c.g.Flush(ctx))
}

// Pending returns the deltas accepted locally but not yet confirmed by
// the backend, per key. It reads local state only: it never waits for a
// flush in progress, even during an outage.
func (l *Lax) Pending() map[string]int64 { return l.c.g.Pending() }

// Failed returns the keys whose pending deltas the backend refused, with
// the reason: distkit.ErrOverflow (other processes moved the value so
// close to the int64 limit that this delta does not fit) or a script
// error (the stored value is not an integer). Such a key is retried with
// backoff (at once by Flush and Close) and leaves this list when a retry
// succeeds or when Set, Del or Clear overwrites it. It reads local state
// only.
func (l *Lax) Failed() map[string]error { return l.c.g.Failed() }

// Tracked returns how many keys the Lax holds local state for: keys with
// pending deltas and keys used within IdleAfter. Idle keys leave it, and
// their memory is freed, within about 1.5 × IdleAfter.
func (l *Lax) Tracked() int { return l.c.g.Len() }

// Close stops the flusher and flushes everything, retrying until ctx ends.
// It returns nil only when every accepted delta was confirmed by the
// backend; otherwise an *UnflushedError lists the remainder per key. It
// returns when ctx ends even while a flush hangs on a backend that does
// not answer. Close may be called again (for example with a longer
// deadline) to retry. Calls made after Close began fail with
// distkit.ErrClosed. It does not close the backend.
func (l *Lax) Close(ctx context.Context) error {
	err := unflushed(l.c.g.Close(ctx))
	l.c.obs.Close()
	return err
}

// UnflushedError is returned by Lax.Flush and Lax.Close when deltas
// remain unflushed. It matches (errors.Is) Err and every Failed error.
type UnflushedError struct {
	// Pending: key → delta accepted but not confirmed by the backend.
	Pending map[string]int64
	// Failed: the keys among Pending that the backend refused, with the
	// reason (see Lax.Failed).
	Failed map[string]error
	// Err is why the other keys were not flushed: the last backend error
	// or the context's; nil when only Failed keys remain.
	Err error
}

// Error lists up to ten unflushed keys with their deltas (and the reason
// of refused ones), then Err.
func (e *UnflushedError) Error() string {
	return "counter: " + (&flush.Error{Pending: e.Pending, Failed: e.Failed, Err: e.Err}).Error()
}

// Unwrap returns Err and every Failed error.
func (e *UnflushedError) Unwrap() []error {
	return (&flush.Error{Failed: e.Failed, Err: e.Err}).Unwrap()
}

func unflushed(err error) error {
	var fe *flush.Error
	if errors.As(err, &fe) {
		return &UnflushedError{Pending: fe.Pending, Failed: fe.Failed, Err: fe.Err}
	}
	return err
}

// flushFirst runs op after flushing pending deltas, with no flush in
// flight meanwhile.
func (l *Lax) flushFirst(ctx context.Context, op string, f func(ctx context.Context) error) error {
	c := l.c
	if c.g.Closed() {
		return errLaxClosed
	}
	ran := false
	err := c.g.Do(ctx, flush.FlushFirst, func(ctx context.Context) error {
		ran = true
		return f(ctx)
	})
	if err != nil && !ran {
		return fmt.Errorf("counter: %s: flushing first: %w", op, err)
	}
	return err
}

// refusedLocked returns an error when one of keys has pending deltas the
// backend refused: an operation that reads the key's value cannot include
// them. Called with the engine's lock.
func (c *laxCore) refusedLocked(op string, keys []string) error {
	for _, k := range keys {
		if err := c.g.RefusedLocked(k); err != nil {
			return fmt.Errorf("counter: %s %q: this process's pending delta of the key cannot be applied (Set, Del or Clear it): %w", op, k, err)
		}
	}
	return nil
}

// overwrittenLocked records that the backend now holds r for e after an
// operation that overwrote the key: a refused pending delta is dropped,
// also one held by a retired entry of the key.
func (c *laxCore) overwrittenLocked(e *laxEntry, r int64) {
	c.g.SupersedeKeyLocked(e.Key())
	c.setRemoteLocked(e, r)
}

// Set flushes pending deltas, then sets key to v like Strict.Set. A
// pending delta of key that the backend refused is superseded.
func (l *Lax) Set(ctx context.Context, key string, v int64) (int64, error) {
	c := l.c
	if c.g.Closed() {
		return 0, errLaxClosed
	}
	e, err := c.entry(key)
	if err != nil {
		return 0, err
	}
	c.g.Touch(e)
	err = l.flushFirst(ctx, "set", func(ctx context.Context) error {
		if _, err := c.b.EvalScript(ctx, counterscript.Set, c.k.hashKeys, e.X.field, strconv.FormatInt(v, 10)); err != nil {
			return wrapErr("set", key, err)
		}
		c.g.WithLock(func() { c.overwrittenLocked(e, v) })
		return nil
	})
	if err != nil {
		return 0, err
	}
	return v, nil
}

// Del flushes pending deltas, then removes key like Strict.Del and returns
// its old value. The key's local state goes too. A pending delta of key
// that the backend refused is superseded.
func (l *Lax) Del(ctx context.Context, key string) (int64, error) {
	c := l.c
	if err := validKey(key); err != nil {
		return 0, err
	}
	var out int64
	err := l.flushFirst(ctx, "del", func(ctx context.Context) error {
		r, err := c.b.EvalScript(ctx, counterscript.Del, c.k.hashKeys, keyspace.CounterField(key))
		if err != nil {
			return wrapErr("del", key, err)
		}
		if out, err = intValue(r); err != nil {
			return err
		}
		e := c.g.Lookup(key)
		c.g.WithLock(func() {
			c.g.SupersedeKeyLocked(key) // a retired entry's refused delta too
			if e != nil {
				c.setRemoteLocked(e, 0)
			}
		})
		if e != nil {
			c.g.Drop(e)
		}
		return nil
	})
	return out, err
}

// Clear flushes pending deltas, then removes every counter of the prefix
// and this Lax's local state of every key with nothing pending.
func (l *Lax) Clear(ctx context.Context) error {
	c := l.c
	err := l.flushFirst(ctx, "clear", func(ctx context.Context) error {
		if _, err := c.b.EvalScript(ctx, counterscript.Clear, c.k.hashKeys); err != nil {
			return wrapErr("clear", "", err)
		}
		c.g.WithLock(func() {
			c.g.EachLocked(func(e *laxEntry) { // every entry, retired ones in the working set too
				c.g.SupersedeLocked(e)
				c.setRemoteLocked(e, 0)
			})
		})
		return nil
	})
	if err == nil {
		c.g.DropIdle()
	}
	return err
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

// allIf runs a conditional batch after flushing. It fails, naming the
// key, when a key involved has a pending delta the backend refused: the
// comparison would miss this process's acknowledged deltas.
func (l *Lax) allIf(ctx context.Context, op, mode string, updates []Update) ([]Result, error) {
	c := l.c
	if c.g.Closed() {
		return nil, errLaxClosed
	}
	if len(updates) == 0 {
		return []Result{}, nil
	}
	if _, err := allIfArgs(mode, updates); err != nil { // fail before flushing
		return nil, err
	}
	keys := make([]string, len(updates))
	for i, u := range updates {
		keys[i] = u.Key
	}
	var out []Result
	err := l.flushFirst(ctx, op, func(ctx context.Context) error {
		var err error
		c.g.WithLock(func() { err = c.refusedLocked(op, keys) })
		if err != nil {
			return err
		}
		res, err := evalAllIf(ctx, c.b, c.k.hash, op, mode, updates)
		if err != nil {
			return err
		}
		c.g.WithLock(func() {
			for _, r := range res {
				if e := c.g.Lookup(r.Key); e != nil {
					c.setRemoteLocked(e, r.Cur)
				}
			}
		})
		out = res
		return nil
	})
	return out, err
}

// GetAll flushes pending deltas, then reads keys like Strict.GetAll. It
// fails, naming the key, when one of keys has a pending delta the backend
// refused.
func (l *Lax) GetAll(ctx context.Context, keys ...string) ([]int64, error) {
	c := l.c
	if c.g.Closed() {
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
	err := l.flushFirst(ctx, "getall", func(ctx context.Context) error {
		var err error
		c.g.WithLock(func() { err = c.refusedLocked("getall", keys) })
		if err != nil {
			return err
		}
		vals, err := evalGetAll(ctx, c.b, c.k.hash, keys)
		if err != nil {
			return err
		}
		c.g.WithLock(func() {
			for i, k := range keys {
				if e := c.g.Lookup(k); e != nil {
					c.setRemoteLocked(e, vals[i])
				}
			}
		})
		out = vals
		return nil
	})
	return out, err
}
