package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/ctxsync"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
)

// Quarantine backoff of a key the server rejects.
const (
	quarantineMin = time.Second
	quarantineMax = time.Minute
)

// hkey is one key's Hybrid state; every field is guarded by mu.
type hkey struct {
	name string
	mu   sync.Mutex
	dead bool // dropped from the key map: decisions look the key up again

	global   int64 // window total on the server at the last applied pull
	pending  int64 // recorded locally, not yet pushed
	inflight int64 // being pushed by the sync in progress
	synced   bool  // a pull has been applied
	seq      uint64

	dirty     bool   // queued for the next sync
	sentRound uint64 // the latest sync round that carried the key
	loading   chan struct{}

	err       error     // the outcome of the key's latest sync: nil or why decisions are degraded
	permanent bool      // err is the server rejecting the key: quarantined
	retryAt   time.Time // quarantined until
	backoff   time.Duration

	// The oldest buckets at the last pull, for RetryAfter.
	profile  []int64 // bucket, count, bucket, count, …
	serverMs int64
	pulledAt time.Time

	limit, maxN int64 // the latest limit decided against, the largest n (≤ limit) seen
	supLast     bool  // the latest decision was Suppressed
	lastUse     time.Time
	sup         suppression
}

// Hybrid decides locally against a cached view of the global count and
// synchronises every SyncInterval, in one round trip, the keys used since
// the previous sync.
type Hybrid struct {
	b      backend.Backend
	cfg    config
	ttl    string
	keys   *keyMap[hkey]
	jan    *janitor
	closed atomic.Bool
	round  atomic.Uint64 // rounds started

	// syncMu allows one round at a time (pushes are not idempotent). It is
	// held across a backend call, so a wait for it gives up when the
	// waiter's context ends.
	syncMu *ctxsync.Mutex

	queueMu    sync.Mutex
	dirty      []*hkey
	quarantine map[*hkey]struct{}

	lastSweep time.Time // janitor goroutine only
}

// syncTimeout bounds one sync round and one first-use pull.
func (h *Hybrid) syncTimeout() time.Duration { return max(time.Second, 10*h.cfg.sync) }

// NewHybrid returns a Hybrid provider over b and starts its sync loop
// (which also drops idle keys); Close stops it (so does the garbage
// collector, once h is unreachable, losing what was not pushed). OnError
// defaults to FailLocal.
func NewHybrid(b backend.Backend, opts Options) (*Hybrid, error) {
	if b == nil {
		return nil, invalid("backend is nil")
	}
	cfg, err := opts.config(FailLocal, true)
	if err != nil {
		return nil, err
	}
	h := &Hybrid{b: b, cfg: cfg, ttl: driver.Millis(cfg.window + cfg.bucket), keys: newKeyMap[hkey](),
		quarantine: map[*hkey]struct{}{}, syncMu: ctxsync.NewMutex()}
	h.lastSweep = cfg.clock.Now()
	wh := weak.Make(h) // the loop must not hold h: it ends when h is collected
	h.jan = startJanitor(cfg.sync, func(base context.Context) {
		h := wh.Value()
		if h == nil {
			return
		}
		ctx, cancel := context.WithTimeout(base, h.syncTimeout())
		h.sync(ctx, false, true)
		cancel()
		if now := h.cfg.clock.Now(); now.Sub(h.lastSweep) >= max(h.cfg.idle/2, h.cfg.sync) || now.Before(h.lastSweep) {
			h.lastSweep = now
			h.sweep(now)
		}
	})
	stopWhenCollected(h, h.jan)
	return h, nil
}

// Absolute returns the Absolute strategy on this provider.
func (h *Hybrid) Absolute() *Absolute { return &Absolute{p: h} }

// Suppressed returns the Suppressed strategy on this provider.
func (h *Hybrid) Suppressed() *Suppressed { return &Suppressed{p: h} }

// stale reports whether k's view of the global count is too old to decide
// on: never pulled (and never failed), or the key sat out the last two
// sync rounds; a quarantined key waits for its backoff.
func (h *Hybrid) stale(k *hkey) bool {
	switch {
	case k.permanent && h.cfg.clock.Now().Before(k.retryAt):
		return false
	case !k.synced && k.err == nil:
		return true
	}
	return k.sentRound+1 < h.round.Load()
}

func (h *Hybrid) decide(ctx context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	if h.closed.Load() {
		return Decision{}, errClosed(key)
	}
	lim, err := h.cfg.limitsFor(rate)
	if err != nil {
		return Decision{}, err
	}
	limit := lim.capacity
	if sup {
		limit = lim.hard
	}
	for {
		k := h.keys.get(key, func() *hkey { return &hkey{name: key} })
		k.mu.Lock()
		if k.dead {
			k.mu.Unlock()
			continue
		}
		k.limit, k.supLast = limit, sup // what a pull should describe (room)
		if n <= limit {
			k.maxN = max(k.maxN, n)
		}
		if h.stale(k) {
			if ch := k.loading; ch != nil { // another caller is pulling: wait for it
				k.mu.Unlock()
				select {
				case <-ch:
					continue
				case <-ctx.Done():
					return Decision{}, callerDone(ctx, key, nil)
				}
			}
			if ctx.Err() != nil {
				k.mu.Unlock()
				return Decision{}, callerDone(ctx, key, nil)
			}
			ch := make(chan struct{})
			k.loading = ch
			k.mu.Unlock()
			err := h.pull(ctx, k)
			k.mu.Lock()
			k.loading = nil
			close(ch)
			if err != nil {
				k.mu.Unlock()
				return Decision{}, err // the caller's context ended
			}
		}
		if h.closed.Load() { // checked under k.mu: Close's final push sees what was recorded before
			k.mu.Unlock()
			return Decision{}, errClosed(key)
		}
		d := h.decideLocked(k, sup, lim, n)
		k.mu.Unlock()
		return d, nil
	}
}

// decideLocked decides for k (locked) against its view.
func (h *Hybrid) decideLocked(k *hkey, sup bool, lim limits, n int64) Decision {
	now := h.cfg.clock.Now()
	k.lastUse = now
	if !k.dirty {
		k.dirty = true
		h.queueMu.Lock()
		h.dirty = append(h.dirty, k)
		h.queueMu.Unlock()
	}
	limit := lim.capacity
	if sup {
		limit = lim.hard
	}
	count := k.global + k.inflight + k.pending
	if k.err != nil && h.cfg.onError != FailLocal {
		d := Decision{Allowed: h.cfg.onError == FailOpen && n <= limit, Limit: limit, Degraded: k.err, At: now}
		if d.Allowed && n <= MaxCount-count {
			k.pending += n // counted once the backend is back
		}
		return d
	}
	d, record := judge(&h.cfg, sup, lim, n, count, &k.sup, now)
	if record {
		k.pending += n
	}
	d.Degraded = k.err
	if !d.Allowed && n <= d.Limit && (!sup || d.Suppression == 1) {
		after := count // the window after this decision, as the script computes it
		if record {
			after += n
		}
		d.RetryAfter = h.retryAfter(k, after+n-d.Limit, k.inflight+k.pending, now)
	}
	return d
}

// retryAfter is when need units will have left the window, by the oldest
// buckets of the last pull, then this instance's own unpushed increments
// (local), which the server will count from the bucket they are pushed in:
// the current one at the earliest. When neither holds enough (the pull
// described too little), a lower bound: the last bucket described, or
// else the next sync, which will describe more.
func (h *Hybrid) retryAfter(k *hkey, need, local int64, now time.Time) time.Duration {
	bucketMs := h.cfg.bucket.Milliseconds()
	serverNow := k.serverMs + now.Sub(k.pulledAt).Milliseconds()
	leave := func(b int64) time.Duration {
		return time.Duration(max((b+h.cfg.nb+1)*bucketMs-1-serverNow, 1)) * time.Millisecond
	}
	freed, last := int64(0), int64(-1)
	for i := 0; i+1 < len(k.profile); i += 2 {
		freed += k.profile[i+1]
		last = k.profile[i]
		if freed >= need {
			return leave(last)
		}
	}
	if described := len(k.profile) > 0 || k.global == 0; described && freed+local >= need && k.global <= freed {
		return leave(serverNow / bucketMs)
	}
	if last >= 0 {
		return leave(last)
	}
	return min(h.cfg.sync, h.cfg.window)
}

// room is how much the window may hold before a request as large as the
// largest seen on k (locked) no longer fits, given what k holds locally
// beyond push: a pull describes the oldest buckets that exceed it, for
// RetryAfter (a Suppressed request above the hard limit is counted too, so
// it needs twice its size to leave). MaxCount (nothing described) before
// any decision.
func (h *Hybrid) room(k *hkey, push int64) string {
	if k.limit == 0 {
		return strconv.FormatInt(MaxCount, 10)
	}
	need := max(k.maxN, 1)
	if k.supLast {
		need *= 2
	}
	local := k.inflight + k.pending - push
	return strconv.FormatInt(max(k.limit-need-local, 0), 10)
}

func (h *Hybrid) call(k *hkey, push int64) backend.Call {
	return backend.Call{Script: ratelimitscript.Window, Keys: h.cfg.keys(k.name),
		Args: []string{"sync", driver.Millis(h.cfg.bucket), strconv.FormatInt(h.cfg.nb, 10),
			strconv.FormatInt(push, 10), h.ttl, h.room(k, push), strconv.Itoa(ratelimitscript.ProfileMax)}}
}

// syncReply is the answer of the window script's sync mode.
type syncReply struct {
	total, nowMs int64
	profile      []int64
}

func parseSync(v backend.Value) (syncReply, error) {
	a, err := v.Int64s()
	if err != nil || len(a) < 2 || len(a)%2 != 0 {
		return syncReply{}, fmt.Errorf("ratelimit: malformed sync reply %v", v)
	}
	return syncReply{total: a[0], nowMs: a[1], profile: a[2:]}, nil
}

// apply takes a successful pull into k (locked).
func (h *Hybrid) apply(k *hkey, r syncReply) {
	k.global, k.synced = r.total, true
	k.seq++
	k.err, k.permanent, k.backoff = nil, false, 0
	k.profile, k.serverMs, k.pulledAt = r.profile, r.nowMs, h.cfg.clock.Now()
}

// pull reads k's global count for a decision, under the caller's ctx
// bounded by the sync timeout. It returns an error only when the caller's
// ctx ended; a backend failure is recorded on the key (its decisions are
// degraded until a sync succeeds). The reply is dropped when a sync round
// applied a newer one meanwhile.
func (h *Hybrid) pull(ctx context.Context, k *hkey) error {
	pctx, cancel := context.WithTimeout(ctx, h.syncTimeout())
	defer cancel()
	k.mu.Lock()
	c := h.call(k, 0)
	seq := k.seq
	k.mu.Unlock()
	res := h.b.EvalScripts(pctx, []backend.Call{c})[0]
	var r syncReply
	err := res.Err
	if err == nil {
		r, err = parseSync(res.Value)
	}
	if err != nil && ctx.Err() != nil {
		return callerDone(ctx, k.name, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sentRound = h.round.Load() // fresh, or failed just now: no second attempt before the next rounds
	if err != nil {
		h.fail(k, err)
		if k.permanent {
			h.queueMu.Lock()
			h.quarantine[k] = struct{}{}
			h.queueMu.Unlock()
		}
		return nil
	}
	if k.seq == seq {
		h.apply(k, r)
	}
	return nil
}

// permanentErr reports whether err is the server rejecting the key's
// script (wrong type, corrupt value, malformed reply) rather than the
// backend being unreachable or refusing every command for a while: a
// reply the server gives before running the script (LOADING, BUSY,
// READONLY, TRYAGAIN, CLUSTERDOWN: a ScriptError that is also
// ErrNotApplied) says nothing about the key.
func permanentErr(err error) bool {
	return !(errors.Is(err, backend.ErrNotApplied) || errors.Is(err, backend.ErrIndeterminate) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, backend.ErrClosed))
}

// fail records a failed sync of k (locked): its decisions are degraded
// until a sync succeeds; a key the server rejects is quarantined.
func (h *Hybrid) fail(k *hkey, err error) {
	k.err = fmt.Errorf("ratelimit: key %q: %w", k.name, err)
	k.permanent = permanentErr(err)
	if k.permanent {
		k.backoff = min(max(2*k.backoff, quarantineMin), quarantineMax)
		k.retryAt = h.cfg.clock.Now().Add(k.backoff)
	}
}

// Sync pushes the increments of the keys used since the previous sync and
// pulls their global counts, in one round trip; the background loop calls
// it every SyncInterval, call it to force one. Keys whose sync fails keep
// their increments for the next one (until the key has been unused for
// Window + Bucket: then they have left the window and are dropped) and
// have their decisions degraded until then. The error says how many keys
// failed and the first reason; a ctx that ends (also while waiting for
// the round in progress) is the caller's error, not recorded on any key.
func (h *Hybrid) Sync(ctx context.Context) error {
	if h.closed.Load() {
		return fmt.Errorf("ratelimit: sync: %w", backend.ErrClosed)
	}
	return h.sync(ctx, false, false)
}

// sync runs one round: the queued keys, the quarantined ones whose backoff
// is over (all: every key with increments, for Close). ownCtx: ctx is the
// loop's own bounded context, so its deadline is the backend's failure.
func (h *Hybrid) sync(ctx context.Context, all, ownCtx bool) error {
	if err := h.syncMu.LockCtx(ctx); err != nil {
		return fmt.Errorf("ratelimit: sync: %w", err)
	}
	defer h.syncMu.Unlock()
	round := h.round.Add(1)
	now := h.cfg.clock.Now()
	h.queueMu.Lock()
	batch := h.dirty
	h.dirty = nil
	for k := range h.quarantine { // the loop below puts back those not due
		batch = append(batch, k)
	}
	clear(h.quarantine)
	h.queueMu.Unlock()
	if all {
		h.keys.each(func(_ string, k *hkey) {
			k.mu.Lock()
			if k.pending > 0 && !k.dirty {
				k.dirty = true
				batch = append(batch, k)
			}
			k.mu.Unlock()
		})
	}
	var keys []*hkey
	var calls []backend.Call
	for _, k := range batch {
		k.mu.Lock()
		k.dirty = false
		// A key unused for Window + Bucket (its pushes failed meanwhile):
		// what it holds was decided by lastUse and would have left the
		// window by now had it been pushed then; pushed now, it would count
		// again as if just admitted.
		idle := now.Sub(k.lastUse) >= h.cfg.window+h.cfg.bucket
		if idle {
			k.pending = 0
		}
		switch {
		case k.dead, k.sentRound == round: // gone, or listed twice (queued and quarantined)
		case idle && k.err != nil:
			// Failing and idle, nothing to push: no retries (no I/O, and the
			// sweep may drop it); its next decision pulls first.
			k.sentRound = 0
		case k.permanent && now.Before(k.retryAt) && !all:
			h.queueMu.Lock()
			h.quarantine[k] = struct{}{}
			h.queueMu.Unlock()
		default:
			k.sentRound = round
			k.inflight, k.pending = k.pending, 0
			keys = append(keys, k)
			calls = append(calls, h.call(k, k.inflight))
		}
		k.mu.Unlock()
	}
	if len(calls) == 0 {
		return nil
	}
	var failed int
	var first error
	for i, res := range h.b.EvalScripts(ctx, calls) {
		k := keys[i]
		var r syncReply
		err := res.Err
		if err == nil {
			r, err = parseSync(res.Value)
		}
		k.mu.Lock()
		if err == nil {
			h.apply(k, r)
			k.inflight = 0
			k.mu.Unlock()
			continue
		}
		// Keep the increments for the next sync. After an unknown outcome
		// they may be counted twice: stricter, never looser.
		k.pending += k.inflight
		k.inflight = 0
		callerEnded := ctx.Err() != nil && !(ownCtx && errors.Is(ctx.Err(), context.DeadlineExceeded))
		if !callerEnded {
			h.fail(k, err) // a key the server rejects goes (back) into quarantine
		}
		h.queueMu.Lock()
		switch {
		case k.permanent:
			h.quarantine[k] = struct{}{}
		case k.pending > 0 && !k.dirty: // retried next round
			k.dirty = true
			h.dirty = append(h.dirty, k)
		}
		h.queueMu.Unlock()
		k.mu.Unlock()
		failed++
		if first == nil {
			first = fmt.Errorf("ratelimit: sync: key %q: %w", k.name, err)
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d more keys)", first, failed-1)
	}
	return first
}

// sweep drops keys unused for IdleAfter with nothing to push.
func (h *Hybrid) sweep(now time.Time) {
	cutoff := now.Add(-h.cfg.idle)
	h.keys.sweep(func(k *hkey) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.lastUse.Before(cutoff) || k.pending != 0 || k.inflight != 0 || k.loading != nil || k.dirty {
			return false
		}
		k.dead = true
		return true
	})
}

// Close stops the sync loop, then pushes every key's increments not yet
// pushed (quarantined keys included; not those of a key unused for
// Window + Bucket, which have left the window), all within ctx. It
// returns ctx's error if the loop or the push did not finish in time, or
// the push's error naming the keys left; Close may be called again to
// retry. It does not close the backend. Decisions after Close begins return an error
// wrapping distkit.ErrClosed, so nothing is admitted that no one pushes.
func (h *Hybrid) Close(ctx context.Context) error {
	h.closed.Store(true)
	if err := h.jan.close(ctx); err != nil {
		return err
	}
	return h.sync(ctx, true, false)
}
