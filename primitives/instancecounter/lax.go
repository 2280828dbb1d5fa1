package instancecounter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/icscript"
)

// Lax is an instance-aware counter that buffers Inc and Dec in process
// (no I/O, no allocation on a warm key) and flushes them every
// FlushInterval in one exactly-once batch; every other call flushes first,
// then acts like Strict. It is safe for concurrent use.
type Lax struct {
	c  *core
	lx *laxState
}

type laxState struct {
	c        *core
	dedupTTL string
	seq      int64    // batches numbered (guarded by c.flushMu)
	inflight *icBatch // a batch whose outcome is unknown (guarded by c.flushMu)
}

type icBatch struct {
	seq    int64
	slots  []*slot
	snaps  []int64 // each slot's added when the batch was cut
	deltas []int64
	args   []string
}

// NewLax returns a Lax instance counter over b and starts its background
// goroutine, which registers the instance at once, heartbeats every
// DeadAfter/3 and flushes every FlushInterval; Close flushes and stops it.
// It does no I/O itself: invalid options fail with
// distkit.ErrInvalidOption, an invalid prefix with distkit.ErrInvalidKey.
func NewLax(b backend.Backend, opts Options) (*Lax, error) {
	c, err := newCore(b, opts)
	if err != nil {
		return nil, err
	}
	every := opts.FlushInterval
	switch {
	case every == 0:
		every = DefaultFlushInterval
	case every < time.Millisecond:
		return nil, fmt.Errorf("instancecounter: %w: FlushInterval %v is below 1ms", distkit.ErrInvalidOption, every)
	}
	ttl := opts.DedupTTL
	switch {
	case ttl == 0:
		ttl = DefaultDedupTTL
	case ttl < time.Second:
		return nil, fmt.Errorf("instancecounter: %w: DedupTTL %v is below 1s", distkit.ErrInvalidOption, ttl)
	}
	lx := &laxState{c: c, dedupTTL: driver.Millis(ttl)}
	c.lx = lx
	c.obs.newFlusher(opts, c)
	c.final = func(base context.Context) { // a collected Lax flushes once more; its slices expire with its heartbeat
		ctx, cancel := context.WithTimeout(base, 5*time.Second)
		defer cancel()
		if c.flushMu.LockCtx(ctx) == nil {
			c.closing = true
			lx.flushLocked(ctx)
			c.flushMu.Unlock()
		}
	}
	go c.run(every, func(base context.Context) {
		// A flush shares the goroutine with the heartbeat: it may not hold
		// it longer than a heartbeat period, or a live instance whose
		// flush hangs (a connection lost mid-request) would be declared
		// dead.
		fctx, cancel := context.WithTimeout(base, min(max(time.Second, 5*every), c.deadAfter/3))
		lx.flush(fctx)
		cancel()
	})
	l := &Lax{c: c, lx: lx}
	runtime.AddCleanup(l, func(c *core) { c.orphan() }, c)
	return l, nil
}

// InstanceID returns this instance's id.
func (l *Lax) InstanceID() string { return l.c.id }

// Inc adds delta to this instance's pending slice of key without I/O and
// returns the local view (cumulative and slice as last confirmed, plus
// pending). An Inc that races with Close and loses returns an error
// matching both distkit.ErrClosed and distkit.ErrIndeterminate.
func (l *Lax) Inc(_ context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	c := l.c
	if c.closed.Load() {
		return 0, 0, errClosed
	}
	s := (*c.slots.Load())[key]
	if s == nil {
		if err := distkit.ValidateKey("key", key); err != nil {
			return 0, 0, fmt.Errorf("instancecounter: %w", err)
		}
		s = c.slot(key)
	}
	n := s.added.Add(delta)
	if old := n - delta; (delta > 0 && n < old) || (delta < 0 && n > old) {
		s.added.Add(-delta)
		return 0, 0, fmt.Errorf("instancecounter: inc %q: %w", key, distkit.ErrOverflow)
	}
	if c.closed.Load() {
		// Close began after this delta was accepted: it may or may not be
		// in the final flush.
		return 0, 0, errClosedRacing
	}
	p := n - s.sent.Load()
	total, mineV := s.total.Load(), s.mine.Load()
	runtime.KeepAlive(l)
	return total + p, mineV + p, nil
}

// Dec subtracts delta; see Inc.
func (l *Lax) Dec(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	d, err := negate(key, delta)
	if err != nil {
		return 0, 0, err
	}
	return l.Inc(ctx, key, d)
}

// Flush sends every pending delta now. An error leaves the deltas
// pending (see Pending); after Close it fails with distkit.ErrClosed.
func (l *Lax) Flush(ctx context.Context) error {
	if l.c.closed.Load() {
		return errClosed
	}
	return l.lx.flush(ctx)
}

// Pending returns the deltas accepted but not yet confirmed, per key. It
// does not wait for a flush in progress, whose deltas count as pending
// until the backend confirms them.
func (l *Lax) Pending() map[string]int64 {
	out := map[string]int64{}
	for k, s := range *l.c.slots.Load() {
		// sent first: it only grows towards a value added already had, so
		// a flush confirming meanwhile cannot make the difference negative.
		sent := s.sent.Load()
		if d := s.added.Load() - sent; d != 0 {
			out[k] = d
		}
	}
	return out
}

func (lx *laxState) flush(ctx context.Context) error {
	if err := lx.c.flushMu.LockCtx(ctx); err != nil {
		return wrapErr("flush", "", driver.NotApplied(err))
	}
	defer lx.c.flushMu.Unlock()
	return lx.flushLocked(ctx)
}

// flushLocked resends the batch in flight, if any, then sends what is
// pending (with c.flushMu held).
func (lx *laxState) flushLocked(ctx context.Context) error {
	c := lx.c
	if b := lx.inflight; b != nil {
		err := lx.send(ctx, b)
		c.obs.flushed(ctx, len(b.slots), err)
		if err != nil {
			return err
		}
	}
	keys := make([]string, 0)
	slots := *c.slots.Load()
	for k, s := range slots {
		if s.added.Load() != s.sent.Load() {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	lx.seq++
	b := &icBatch{seq: lx.seq, args: []string{c.nonce, c.me, c.daArg, strconv.FormatInt(lx.seq, 10), lx.dedupTTL}}
	for _, k := range keys {
		s := slots[k]
		a := s.added.Load()
		d := a - s.sent.Load()
		b.args = append(b.args, s.field, strconv.FormatInt(d, 10))
		b.slots, b.snaps, b.deltas = append(b.slots, s), append(b.snaps, a), append(b.deltas, d)
	}
	err := lx.send(ctx, b)
	c.obs.flushed(ctx, len(b.slots), err)
	return err
}

// send applies b once. When this instance is not registered, b becomes
// the batch in flight and a rejoin settles it (its deltas counted once,
// whether an earlier attempt applied it or not).
func (lx *laxState) send(ctx context.Context, b *icBatch) error {
	c := lx.c
	for attempt := 1; ; attempt++ {
		r, gen, err := lx.sendOnce(ctx, b)
		if err != nil {
			var se *backend.ScriptError
			switch {
			case errors.Is(err, backend.ErrIndeterminate):
				lx.inflight = b
			case errors.Is(err, backend.ErrNotApplied):
				// This attempt did not run (e.g. LOADING after a restart,
				// a ScriptError the server refused with): b keeps what it
				// was, in flight or new.
			case errors.As(err, &se):
				// The script ran and applied nothing (an overflow rolls
				// back before the marker is set), so no earlier attempt
				// applied b either (the marker would have stopped it).
				lx.inflight = nil
			}
			return wrapErr("flush", "", err)
		}
		switch r.status {
		case icscript.StatusOK:
			lx.inflight = nil
			return nil
		case icscript.StatusDup:
			return c.errDup()
		}
		lx.inflight = b // not applied by this attempt; maybe by an earlier one
		if attempt == maxAbsent {
			return c.errAbsent("flush")
		}
		if err := c.rejoinLocked(ctx, gen); err != nil {
			return wrapErr("flush", "", err)
		}
		if lx.inflight == nil { // the rejoin settled b
			return nil
		}
	}
}

// sendOnce runs the flush script once, inside the gate, and records its
// reply.
func (lx *laxState) sendOnce(ctx context.Context, b *icBatch) (reply, uint64, error) {
	c := lx.c
	if err := c.gate.rlock(ctx); err != nil {
		return reply{}, 0, driver.NotApplied(err)
	}
	defer c.gate.runlock()
	gen := c.gen.Load()
	v, err := c.b.EvalScript(ctx, icscript.Flush, c.markerKeys, b.args...)
	if err != nil {
		return reply{}, gen, err
	}
	r, err := parseReply(v, true)
	if err != nil || r.status != icscript.StatusOK {
		return r, gen, err
	}
	sts, err := r.states(len(b.slots))
	if err != nil {
		return reply{}, gen, err
	}
	c.seen(r.version, r.cleared)
	for i, s := range b.slots {
		s.sent.Store(b.snaps[i])
		s.record(r.version, r.now, sts[i])
	}
	return r, gen, nil
}

// flushFirst flushes, then runs f.
func (l *Lax) flushFirst(ctx context.Context, f func() (int64, int64, error)) (int64, int64, error) {
	if l.c.closed.Load() {
		return 0, 0, errClosed
	}
	if err := l.lx.flush(ctx); err != nil {
		return 0, 0, fmt.Errorf("instancecounter: flushing first: %w", err)
	}
	return f()
}

// Get returns the cumulative value and this instance's slice from the
// server, in one round trip: when key has pending deltas, the flush that
// sends them returns its state; otherwise a plain read does.
func (l *Lax) Get(ctx context.Context, key string) (cumulative, mine int64, err error) {
	if l.c.closed.Load() {
		return 0, 0, errClosed
	}
	s := (*l.c.slots.Load())[key]
	if s == nil || s.added.Load() == s.sent.Load() {
		return l.c.op(ctx, "get", key, distkit.Always(), 0)
	}
	if err := l.lx.flush(ctx); err != nil {
		return 0, 0, fmt.Errorf("instancecounter: get %q: flushing first: %w", key, err)
	}
	return s.total.Load(), s.mine.Load(), nil
}

// opFirst flushes pending deltas, then runs one operation like Strict.
func (l *Lax) opFirst(ctx context.Context, mode, key string, cmp distkit.Comparator, n int64) (int64, int64, error) {
	return l.flushFirst(ctx, func() (int64, int64, error) { return l.c.op(ctx, mode, key, cmp, n) })
}

// SetOnInstance flushes, then acts like Strict.SetOnInstance.
func (l *Lax) SetOnInstance(ctx context.Context, key string, v int64) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "setmine", key, distkit.Always(), v)
}

// Set flushes, then acts like Strict.Set.
func (l *Lax) Set(ctx context.Context, key string, v int64) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "set", key, distkit.Always(), v)
}

// DelOnInstance flushes, then acts like Strict.DelOnInstance.
func (l *Lax) DelOnInstance(ctx context.Context, key string) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "delmine", key, distkit.Always(), 0)
}

// Del flushes, then acts like Strict.Del.
func (l *Lax) Del(ctx context.Context, key string) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "del", key, distkit.Always(), 0)
}

// Clear flushes, then acts like Strict.Clear.
func (l *Lax) Clear(ctx context.Context) error {
	_, _, err := l.flushFirst(ctx, func() (int64, int64, error) { return 0, 0, l.c.clear(ctx) })
	return err
}

// IncIf flushes, then acts like Strict.IncIf.
func (l *Lax) IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "incif", key, cmp, delta)
}

// SetIf flushes, then acts like Strict.SetIf.
func (l *Lax) SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "setif", key, cmp, v)
}

// SetOnInstanceIf flushes, then acts like Strict.SetOnInstanceIf.
func (l *Lax) SetOnInstanceIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error) {
	return l.opFirst(ctx, "setmineif", key, cmp, v)
}

// Close stops the background goroutine, flushes pending deltas (retrying
// until ctx ends), waits for the calls in flight and, unless
// KeepSlicesOnClose, removes this instance's slices, all within ctx. When
// deltas could not be flushed it returns an error listing them (they stay
// in Pending, and Close may be called again to retry). Later calls fail
// with distkit.ErrClosed. It does not close the backend.
func (l *Lax) Close(ctx context.Context) error {
	c := l.c
	c.closed.Store(true)
	if err := c.stopLoop(ctx); err != nil {
		return err
	}
	if err := c.flushMu.LockCtx(ctx); err != nil {
		return fmt.Errorf("instancecounter: close: unflushed %v: %w", l.Pending(), err)
	}
	c.closing = true // this flush may rejoin
	c.flushMu.Unlock()
	var ferr error
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		if ferr = within(ctx, func() error { return l.lx.flush(ctx) }); ferr == nil {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("instancecounter: close: unflushed %v: %w", l.Pending(), ferr)
		case <-t.C:
		}
	}
	return c.remove(ctx)
}

func negate(key string, delta int64) (int64, error) {
	if delta == math.MinInt64 {
		return 0, fmt.Errorf("instancecounter: dec %q by %d: %w", key, delta, distkit.ErrOverflow)
	}
	return -delta, nil
}
