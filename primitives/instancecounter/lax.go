package instancecounter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/flush"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// Lax is an instance-aware counter that buffers Inc and Dec in process
// (no I/O, no allocation on a warm key) and flushes them every
// FlushInterval in exactly-once batches; every other call flushes first,
// then acts like Strict. It is safe for concurrent use.
//
// It runs on the flush engine counter.Lax uses: a flush costs what is
// pending, not every key ever seen; a key whose delta the server refuses
// (distkit.ErrOverflow, a value that is not an integer) is reported by
// Failed, Flush and Close and set aside, retried with backoff, while the
// other keys keep flushing; the local state of a key whose slice is 0 and
// that has nothing pending is dropped after IdleAfter without use. A
// comeback (see the package doc) reports only the keys with a slice or an
// epoch to report.
type Lax struct {
	c  *core
	lx *laxState
}

// laxEntry is Lax's state of one key in the flush engine: X is its slot.
type laxEntry = flush.Entry[slot]

type laxState struct {
	c        *core
	dedupTTL string
	g        *flush.Engine[slot]
}

// icBatch is a batch's encoded arguments and parsed reply (the engine
// keeps it across resends, and reuses it for later batches).
type icBatch struct {
	seq     int64
	args    []string
	version int64
	at      int64
	sts     []keyState
	settled bool // a rejoin settled the batch (and recorded the states)
}

// NewLax returns a Lax instance counter over b and starts its background
// goroutines: one registers the instance at once and heartbeats every
// DeadAfter/3, the other flushes every FlushInterval; Close flushes and
// stops them. It does no I/O itself: invalid options fail with
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
	idle := opts.IdleAfter
	switch {
	case idle == 0:
		idle = DefaultIdleAfter
	case idle < time.Millisecond:
		return nil, fmt.Errorf("instancecounter: %w: IdleAfter %v is below 1ms", distkit.ErrInvalidOption, idle)
	}
	lx := &laxState{c: c, dedupTTL: driver.Millis(ttl)}
	c.lx = lx
	lx.g = flush.New(flush.Config[slot]{
		Interval:  every,
		IdleAfter: idle,
		Send:      lx.sendObserved,
		Applied:   lx.applied,
		CanEvict:  lx.canEvict,
	})
	c.obs.newFlusher(opts, c)
	go c.run(0, nil)
	lx.g.Start()
	l := &Lax{c: c, lx: lx}
	// A collected Lax flushes once more (the engine's goroutine, which may
	// rejoin for it); its slices expire with its heartbeat.
	runtime.AddCleanup(l, func(c *core) {
		c.closing.Store(true)
		c.orphan()
		c.lx.g.Orphan()
	}, c)
	return l, nil
}

// entry returns key's entry, creating it when absent (the key is valid).
func (lx *laxState) entry(key string) *laxEntry {
	if e := lx.g.Lookup(key); e != nil {
		return e
	}
	return lx.g.Entry(key, func(e *laxEntry) {
		e.X.field = keyspace.InstanceKeyField(key)
		e.X.ent = e
	})
}

// canEvict lets the engine drop an idle entry only when this instance has
// nothing to remember of the key: no slice, no rejoined part, no epoch
// newer than the last Clear (the cleared time covers every key).
func (lx *laxState) canEvict(e *laxEntry) bool {
	s := &e.X
	if s.mine.Load() != 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejoined == 0 && s.epoch <= lx.c.cleared.Load()
}

// recordLocked records a reply's state st of e's key into e (see
// slot.record) and sets e's view from it; extra is the part of e's
// deltas st includes that the engine does not count as sent yet (a batch
// a rejoin settled). An entry the engine evicted or replaced while the
// reply was on its way passes the state on to the key's current entry,
// so that what this instance remembers of the key (its slice, for a
// comeback) is never lost with it. Called with the engine's lock.
func (lx *laxState) recordLocked(e *laxEntry, version, at int64, st keyState, extra int64) {
	e.X.record(version, at, st)
	e.X.rebase(e.Sent() + extra)
	if e.Unlinked() {
		n := lx.g.Lookup(e.Key())
		if n == nil && (st.mine != 0 || st.rejoined != 0 || st.epoch > lx.c.cleared.Load()) {
			n = lx.entry(e.Key())
		}
		if n != nil && n != e {
			n.X.record(version, at, st)
			n.X.rebase(n.Sent())
		}
	}
}

// cleared records a Clear of every key (stamp at, version) in every entry.
func (lx *laxState) cleared(version, at, cleared int64) {
	lx.g.WithLock(func() {
		lx.g.EachLocked(func(e *laxEntry) {
			e.X.record(version, at, keyState{epoch: cleared})
			e.X.rebase(e.Sent())
		})
	})
}

// rejoinSlotsLocked lists, once per key, the slot a rejoin reports and
// the deltas of the batch in flight b (nil: none). A key with several
// entries (one evicted while an Inc raced) is reported on its current one
// with the deltas of all. Called with the engine's lock.
func (lx *laxState) rejoinSlotsLocked(b *flush.Batch[slot], add func(rejoinSlot)) {
	inflight := map[*laxEntry]int64{}
	perKey := map[string]int64{}
	if b != nil {
		for _, it := range b.Items {
			inflight[it.E] += it.Delta
			perKey[it.E.Key()] += it.Delta
		}
	}
	seen := map[string]bool{}
	visit := func(e *laxEntry) {
		k := e.Key()
		if seen[k] {
			return
		}
		if cur := lx.g.Lookup(k); cur != nil {
			e = cur
		}
		seen[k] = true
		add(rejoinSlot{s: &e.X, d: inflight[e], k: perKey[k]})
	}
	if b != nil {
		for _, it := range b.Items {
			visit(it.E)
		}
	}
	lx.g.EachLocked(visit)
}

// sendObserved is send, telling c.obs (if any) the outcome of each batch.
func (lx *laxState) sendObserved(ctx context.Context, b *flush.Batch[slot]) error {
	if lx.c.obs == nil {
		return lx.send(ctx, b)
	}
	err := lx.send(ctx, b)
	applied, refusal := obs.BatchOutcome(b, err)
	lx.c.obs.flushed(ctx, applied, refusal, err, func() bool { return obs.RefusedLeft(lx.g, b) })
	return err
}

// send runs one flush batch (the engine's Config.Send). When this
// instance is not registered, it rejoins with b as the batch in flight,
// which settles it (its deltas counted once, whether an earlier attempt
// applied it or not).
func (lx *laxState) send(ctx context.Context, b *flush.Batch[slot]) error {
	c := lx.c
	ib, _ := b.Ext.(*icBatch)
	if ib == nil {
		ib = &icBatch{}
		b.Ext = ib
	}
	if ib.seq != b.Seq || len(ib.args) != 5+2*len(b.Items) {
		lx.encode(b, ib)
	}
	ib.settled = false
	for attempt := 1; ; attempt++ {
		r, gen, err := lx.sendOnce(ctx, b, ib)
		if err != nil {
			return wrapErr("flush", "", err)
		}
		switch r.status {
		case icscript.StatusOK:
			return nil
		case icscript.StatusDup:
			return c.errDup()
		}
		// Not applied by this attempt; maybe by an earlier one: a rejoin
		// settles it.
		if attempt == maxAbsent {
			return c.errAbsent("flush")
		}
		settled, refused, err := c.rejoinLocked(ctx, gen, b)
		if err != nil {
			return wrapErr("flush", "", err)
		}
		if settled {
			// Applied, except the keys whose delta the server refused:
			// set aside, still pending.
			ib.settled = true
			for i := range b.Items {
				if rerr := refused[b.Items[i].E.Key()]; rerr != nil {
					b.Items[i].Err = rerr
				} else {
					b.Items[i].Applied = true
				}
			}
			return nil
		}
	}
}

// sendOnce runs the flush script once, inside the gate, and parses its
// reply into ib and b's items.
func (lx *laxState) sendOnce(ctx context.Context, b *flush.Batch[slot], ib *icBatch) (reply, uint64, error) {
	c := lx.c
	if err := c.gate.rlock(ctx); err != nil {
		return reply{}, 0, driver.NotApplied(err)
	}
	defer c.gate.runlock()
	gen := c.gen.Load()
	v, err := c.b.EvalScript(ctx, icscript.Flush, c.markerKeys, ib.args...)
	if err != nil {
		if i, kerr, ok := itemError(err, b); ok {
			// One pair refused; the script applied nothing, and found the
			// batch not applied before: set that key aside, send the others
			// again.
			b.Items[i].Err = kerr
			return reply{status: icscript.StatusOK}, gen, nil
		}
		return reply{}, gen, err
	}
	r, err := parseReply(v, true)
	if err != nil {
		return r, gen, driver.Indeterminate(err) // the script ran; what it did is unknown
	}
	if r.status != icscript.StatusOK {
		return r, gen, nil
	}
	sts, ref, err := r.refusals(len(b.Items))
	if err != nil {
		return reply{}, gen, driver.Indeterminate(err)
	}
	c.seen(r.version, r.cleared)
	ib.version, ib.at, ib.sts = r.version, r.now, sts
	for i := range b.Items {
		// A key a rejoin refused when it settled this batch (this is a
		// resend) was not applied: set aside, still pending.
		if why, no := ref[i]; no {
			b.Items[i].Err = refusal("flush", b.Items[i].E.Key(), icscript.Flush.Name(), why)
		} else {
			b.Items[i].Applied = true
		}
	}
	return r, gen, nil
}

// itemError reads a refusal of one pair of b (icscript.CodeItem) from a
// flush error: the item's index and its error.
func itemError(err error, b *flush.Batch[slot]) (int, error, bool) {
	var se *backend.ScriptError
	if !errors.As(err, &se) || errors.Is(err, backend.ErrNotApplied) || se.Code() != icscript.CodeItem {
		return 0, nil, false
	}
	rest := strings.TrimPrefix(se.Msg, icscript.CodeItem+" ")
	n, msg, _ := strings.Cut(rest, " ")
	i, perr := strconv.Atoi(n)
	if perr != nil || i < 0 || i >= len(b.Items) {
		return 0, nil, false
	}
	key := b.Items[i].E.Key()
	if code, _, _ := strings.Cut(msg, " "); code == scriptlib.CodeOverflow {
		return i, fmt.Errorf("instancecounter: flush %q: %w", key, distkit.ErrOverflow), true
	}
	return i, fmt.Errorf("instancecounter: flush %q: %w", key, &backend.ScriptError{Script: se.Script, Msg: msg}), true
}

// encode builds b's script arguments into ib.
func (lx *laxState) encode(b *flush.Batch[slot], ib *icBatch) {
	c := lx.c
	clear(ib.args)
	args := append(ib.args[:0], c.nonce, c.me, c.daArg, strconv.FormatInt(b.Seq, 10), lx.dedupTTL)
	for _, it := range b.Items {
		args = append(args, it.E.X.field, strconv.FormatInt(it.Delta, 10))
	}
	ib.seq, ib.args, ib.sts = b.Seq, args, nil
}

// applied records the state the server returned for the applied item
// b.Items[i] (the engine's Config.Applied, called with its lock).
func (lx *laxState) applied(b *flush.Batch[slot], i int) {
	ib := b.Ext.(*icBatch)
	e := b.Items[i].E
	if ib.settled { // the rejoin recorded the states
		e.X.rebase(e.Sent())
		return
	}
	if ib.sts[i].unknown {
		return // the view (bases + Added) already counts the delta: nothing to learn
	}
	lx.recordLocked(e, ib.version, ib.at, ib.sts[i], 0)
}

// InstanceID returns this instance's id.
func (l *Lax) InstanceID() string { return l.c.id }

// Inc adds delta to this instance's pending slice of key without I/O and
// returns the local view (cumulative and slice as last confirmed, plus
// pending). It fails with distkit.ErrOverflow, changing nothing, when that
// view (cumulative or slice) would leave the int64 range: the delta is
// checked before the flusher can see it. The deltas flushed before are no
// limit: a key whose slice went back to 0 takes any delta that fits. An Inc that races with Close and
// loses returns an error matching both distkit.ErrClosed and
// distkit.ErrIndeterminate.
func (l *Lax) Inc(_ context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	c := l.c
	if c.closed.Load() {
		return 0, 0, errClosed
	}
	g := l.lx.g
	e := g.Cached(key)
	if e == nil {
		if e = g.Lookup(key); e == nil {
			if err := distkit.ValidateKey("key", key); err != nil {
				return 0, 0, fmt.Errorf("instancecounter: %w", err)
			}
			e = l.lx.entry(key)
		}
	}
	for {
		n := e.Added()
		// The views (wrapping: exact while in range) must stay in range.
		t, m := e.X.tb.Load()+n, e.X.mb.Load()+n
		nt, nm := t+delta, m+delta
		if (delta > 0 && (nt < t || nm < m)) || (delta < 0 && (nt > t || nm > m)) {
			return 0, 0, fmt.Errorf("instancecounter: inc %q by %d: %w", key, delta, distkit.ErrOverflow)
		}
		nn := n + delta
		if (delta > 0 && nn < n) || (delta < 0 && nn > n) {
			// The entry's sum of accepted deltas would leave int64 while
			// the views stay in range (deltas flushed long ago, a slice
			// overwritten since): go on with a fresh entry; this one
			// still flushes.
			e = l.lx.retire(e)
			continue
		}
		if g.Accept(e, n, nn) {
			if c.closed.Load() {
				// Close began after this delta was accepted: it may or may
				// not be in the final flush.
				return 0, 0, errClosedRacing
			}
			runtime.KeepAlive(l)
			return nt, nm, nil // the views the check saw, with this delta
		}
	}
}

// retire replaces e by a fresh entry of its key that starts from e's
// views and remembers what e remembers of the key (its slice, epoch,
// rejoined part); e's pending deltas still flush, and their replies pass
// the key's state on to the new entry (recordLocked).
func (lx *laxState) retire(e *laxEntry) *laxEntry {
	var n *laxEntry
	lx.g.WithLock(func() {
		lx.g.Retire(e)
		n = lx.g.Entry(e.Key(), func(n *laxEntry) {
			s, d := &e.X, &n.X
			d.field, d.ent = s.field, n
			s.mu.Lock()
			d.version, d.epoch, d.at, d.rejoined = s.version, s.epoch, s.at, s.rejoined
			s.mu.Unlock()
			d.total.Store(s.total.Load())
			d.mine.Store(s.mine.Load())
			a := e.Added()
			d.tb.Store(s.tb.Load() + a)
			d.mb.Store(s.mb.Load() + a)
		})
	})
	return n
}

// Dec subtracts delta; see Inc.
func (l *Lax) Dec(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	d, err := negate(key, delta)
	if err != nil {
		return 0, 0, err
	}
	return l.Inc(ctx, key, d)
}

// Flush sends every pending delta now, keys set aside by an earlier
// refusal included, and waits for the answer within ctx. It returns nil,
// or an *UnflushedError listing what is left: the keys the server
// refused (Failed, for example matching distkit.ErrOverflow), or every
// pending key when a batch failed (Err matches distkit.ErrNotApplied or
// distkit.ErrIndeterminate) or ctx ended. It returns when ctx ends even
// if the backend does not answer; a batch whose outcome is unknown stays
// in flight and is resolved, exactly once, by a later flush. After Close
// it fails with distkit.ErrClosed.
func (l *Lax) Flush(ctx context.Context) error {
	if l.c.closed.Load() {
		return errClosed
	}
	return unflushed(l.lx.g.Flush(ctx))
}

// Pending returns the deltas accepted but not yet confirmed, per key. It
// reads local state only: it never waits for a flush in progress, whose
// deltas count as pending until the backend confirms them.
func (l *Lax) Pending() map[string]int64 { return l.lx.g.Pending() }

// Failed returns the keys whose pending deltas the server refused, with
// the reason: distkit.ErrOverflow (the cumulative value or the slice
// would leave the int64 range) or a script error. Such a key is retried
// with backoff (at once by Flush and Close) and leaves this list when a
// retry succeeds or when Set, SetOnInstance, Del, DelOnInstance or Clear
// overwrites it. It reads local state only.
func (l *Lax) Failed() map[string]error { return l.lx.g.Failed() }

// Tracked returns how many keys the Lax holds local state for: keys with
// pending deltas, a non-zero slice, a Set or Del to report on a comeback,
// or a use within IdleAfter. The others leave it, and their memory is
// freed, within about 1.5 × IdleAfter.
func (l *Lax) Tracked() int { return l.lx.g.Len() }

// keyCheck fails when key has a pending delta the server refused (an
// operation reading the key would miss it), unless overwrite.
func (l *Lax) keyCheck(op, key string) error {
	var err error
	l.lx.g.WithLock(func() {
		if rerr := l.lx.g.RefusedLocked(key); rerr != nil { // a retired entry's refused delta too
			err = fmt.Errorf("instancecounter: %s %q: this instance's pending delta of the key cannot be applied (Set, SetOnInstance, Del, DelOnInstance or Clear it): %w", op, key, rerr)
		}
	})
	return err
}

// flushFirst flushes pending deltas, then runs f with the flush token
// held (no batch in flight meanwhile: a retry of a refused delta cannot
// land between f's script and what f records), with ctx marking the token
// as held (a rejoin f needs runs at once).
func (l *Lax) flushFirst(ctx context.Context, f func(ctx context.Context) (int64, int64, error)) (int64, int64, error) {
	if l.c.closed.Load() {
		return 0, 0, errClosed
	}
	var total, mine int64
	ran := false
	err := l.lx.g.Do(ctx, flush.FlushFirst, func(ctx context.Context) error {
		ran = true
		var err error
		total, mine, err = f(ctx)
		return err
	})
	if err != nil && !ran {
		return 0, 0, fmt.Errorf("instancecounter: flushing first: %w", err)
	}
	return total, mine, err
}

// Get returns the cumulative value and this instance's slice from the
// server, in one round trip: when key has pending deltas, the flush that
// sends them returns its state; otherwise a plain read does. It fails,
// naming the key, when the server refused the key's pending delta.
func (l *Lax) Get(ctx context.Context, key string) (cumulative, mine int64, err error) {
	c := l.c
	if c.closed.Load() {
		return 0, 0, errClosed
	}
	g := l.lx.g
	if !g.PendingKey(key) { // any entry of the key: a replaced one may hold a delta
		return c.op(ctx, "get", key, distkit.Always(), 0)
	}
	for try := 0; try < 3 && g.PendingKey(key); try++ { // the key may wait for a refused one batched with it
		if err := g.Do(ctx, flush.FlushFirst, func(context.Context) error { return nil }); err != nil {
			return 0, 0, fmt.Errorf("instancecounter: get %q: flushing first: %w", key, err)
		}
		if err := l.keyCheck("get", key); err != nil {
			return 0, 0, err
		}
	}
	e := g.Lookup(key) // the flush replies recorded the key's state in its current entry
	if e == nil {
		return c.op(ctx, "get", key, distkit.Always(), 0)
	}
	return e.X.total.Load(), e.X.mine.Load(), nil
}

// opFirst flushes pending deltas, then runs one operation like Strict. An
// operation that overwrites the key's slice supersedes a pending delta
// the server refused; one that reads it fails instead.
func (l *Lax) opFirst(ctx context.Context, mode, key string, cmp distkit.Comparator, n int64) (int64, int64, error) {
	return l.flushFirst(ctx, func(ctx context.Context) (int64, int64, error) {
		overwrite := mode == "set" || mode == "setmine" || mode == "del" || mode == "delmine"
		if !overwrite {
			if err := l.keyCheck(mode, key); err != nil {
				return 0, 0, err
			}
		}
		total, mine, err := l.c.op(ctx, mode, key, cmp, n)
		if err == nil && overwrite {
			e := l.lx.g.Lookup(key)
			l.lx.g.WithLock(func() {
				l.lx.g.SupersedeKeyLocked(key) // a retired entry's refused delta too
				if e != nil {
					e.X.rebase(e.Sent())
				}
			})
		}
		return total, mine, err
	})
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

// Clear flushes, then acts like Strict.Clear. Pending deltas the server
// refused are superseded.
func (l *Lax) Clear(ctx context.Context) error {
	_, _, err := l.flushFirst(ctx, func(ctx context.Context) (int64, int64, error) {
		if err := l.c.clear(ctx); err != nil {
			return 0, 0, err
		}
		g := l.lx.g
		g.WithLock(func() {
			g.EachLocked(func(e *laxEntry) {
				g.SupersedeLocked(e)
				e.X.rebase(e.Sent())
			})
		})
		return 0, 0, nil
	})
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

// Close stops the background goroutines, flushes pending deltas (retrying
// until ctx ends), waits for the calls in flight and, unless
// KeepSlicesOnClose, removes this instance's slices, all within ctx. When
// deltas could not be flushed it returns an error wrapping an
// *UnflushedError that lists them (they stay in Pending, and Close may be
// called again to retry). Later calls fail with distkit.ErrClosed. It does
// not close the backend.
func (l *Lax) Close(ctx context.Context) error {
	c := l.c
	c.closed.Store(true)
	herr := c.stopLoop(ctx)
	c.closing.Store(true) // the final flush may rejoin
	// The flusher stops (and its goroutine ends) even when the heartbeat
	// did not stop within ctx.
	ferr := l.lx.g.Close(ctx)
	if herr != nil {
		return herr
	}
	if ferr != nil {
		return fmt.Errorf("instancecounter: close: %w", unflushed(ferr))
	}
	return c.remove(ctx)
}

// UnflushedError is returned by Lax.Flush and Lax.Close when deltas
// remain unflushed. It matches (errors.Is) Err and every Failed error.
type UnflushedError struct {
	// Pending: key → delta accepted but not confirmed by the server.
	Pending map[string]int64
	// Failed: the keys among Pending that the server refused, with the
	// reason (see Lax.Failed).
	Failed map[string]error
	// Err is why the other keys were not flushed: the last backend error
	// or the context's; nil when only Failed keys remain.
	Err error
}

// Error lists up to ten unflushed keys with their deltas (and the reason
// of refused ones), then Err.
func (e *UnflushedError) Error() string {
	return "instancecounter: " + (&flush.Error{Pending: e.Pending, Failed: e.Failed, Err: e.Err}).Error()
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

func negate(key string, delta int64) (int64, error) {
	if delta == math.MinInt64 {
		return 0, fmt.Errorf("instancecounter: dec %q by %d: %w", key, delta, distkit.ErrOverflow)
	}
	return -delta, nil
}
