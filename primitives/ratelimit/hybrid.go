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

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
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

	global int64 // window total on the server at the last applied pull
	// pending is what was recorded locally and not yet pushed, in the
	// buckets (of g, on the local clock) it was decided in: it leaves the
	// window with them, also while pushes fail, and only what is still in
	// the window is pushed.
	pending  buckets
	inflight int64 // being pushed (by the sync in progress, or Reset/SetIf)
	// taken is what inflight was taken from pending as, given back to
	// pending when the push fails.
	taken  []bucketCount
	takenG geometry
	synced bool // a pull has been applied
	seq    uint64

	dirty     bool   // queued for the next sync
	sentRound uint64 // the latest sync round that carried the key
	loading   chan struct{}

	err       error     // the outcome of the key's latest sync: nil or why decisions are degraded
	permanent bool      // err is the server rejecting the key: quarantined
	retryAt   time.Time // quarantined until
	backoff   time.Duration

	// The oldest buckets at the last pull (for RetryAfter, and to tell
	// what of global has left the window since), the server's time then
	// and the local time the reply was applied (zero: no server time
	// known).
	profile  []int64 // bucket, count, bucket, count, …
	serverMs int64
	pulledAt time.Time

	g           geometry // the window of the latest decision or SetIf: what pushes use
	vg          geometry // the window the view (global, profile) describes
	limit, maxN int64    // the latest limit decided against, the largest n (≤ limit) seen
	supLast     bool     // the latest decision was Suppressed
	lastUse     time.Time
	sup         suppression
}

// unpushed is what k (locked) recorded locally and has not pushed that is
// still in the window at now.
func (k *hkey) unpushed(now time.Time) int64 {
	if k.g.bucketMs == 0 {
		return k.pending.total
	}
	k.pending.at(k.g, k.pending.clock(now))
	return k.pending.total
}

// record counts n decided at now as not yet pushed.
func (k *hkey) record(now time.Time, n int64) {
	nowMs := k.pending.clock(now)
	k.pending.at(k.g, nowMs)
	k.pending.add(k.pending.bucketFor(now, nowMs), n)
}

// take moves what is unpushed and still in the window into flight and
// returns it: the amount a push carries.
func (k *hkey) take(now time.Time) int64 {
	push := k.unpushed(now)
	k.taken, k.takenG = k.pending.q, k.pending.g
	k.pending.q, k.pending.total = nil, 0
	k.inflight += push
	return push
}

// landed ends the flight of push: pushed when ok, else given back to
// pending (what has left the window meanwhile leaves it there).
func (k *hkey) landed(push int64, ok bool, now time.Time) {
	k.inflight -= push
	if !ok {
		k.pending.merge(k.takenG, k.taken, k.pending.clock(now))
	}
	k.taken = nil
}

// Hybrid decides locally against a cached view of the global count and
// synchronises every SyncInterval, in one round trip, the keys used since
// the previous sync.
type Hybrid struct {
	b      backend.Backend
	cfg    config
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
	cfg.obs = newRLObs(opts, "hybrid", cfg.prefix)
	h := &Hybrid{b: b, cfg: cfg, keys: newKeyMap[hkey](), quarantine: map[*hkey]struct{}{}, syncMu: ctxsync.NewMutex()}
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
	cfg.obs.registerSyncAge(h, cfg.prefix)
	return h, nil
}

// Absolute returns the Absolute strategy on this provider.
func (h *Hybrid) Absolute() *Absolute { return &Absolute{p: h} }

// Suppressed returns the Suppressed strategy on this provider.
func (h *Hybrid) Suppressed() *Suppressed { return &Suppressed{p: h} }

func (h *Hybrid) conf() *config { return &h.cfg }

// stale reports whether k's view of the global count is too old to decide
// on under geometry g: never pulled (and never failed), pulled under
// another geometry, or the key sat out the last two sync rounds; a
// quarantined key waits for its backoff.
func (h *Hybrid) stale(k *hkey, g geometry) bool {
	switch {
	case k.permanent && h.cfg.clock.Now().Before(k.retryAt):
		return false
	case !k.synced && k.err == nil, k.synced && k.vg != g:
		return true
	}
	return k.sentRound+1 < h.round.Load()
}

func (h *Hybrid) decide(ctx context.Context, sup bool, key string, lim limits, g geometry, n int64) (d Decision, err error) {
	err = h.view(ctx, sup, key, lim, g, n, func(k *hkey) { d = h.decideLocked(k, sup, lim, n) })
	return d, err
}

func (h *Hybrid) peek(ctx context.Context, sup bool, key string, lim limits, g geometry) (st State, err error) {
	err = h.view(ctx, sup, key, lim, g, 0, func(k *hkey) { st = h.peekLocked(k, sup, lim) })
	return st, err
}

// view runs f on key's state (locked) once its view of the global count is
// fresh enough to decide on, pulling it first when stale. n is the amount
// of a decision (0 for a peek).
func (h *Hybrid) view(ctx context.Context, sup bool, key string, lim limits, g geometry, n int64, f func(k *hkey)) error {
	if h.closed.Load() {
		return errClosed(key)
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
		if n > 0 || k.g == (geometry{}) {
			k.g = g // a peek does not change what pushes use
		}
		if n > 0 {
			k.limit, k.supLast = limit, sup // what a pull should describe (room)
			if n <= limit {
				k.maxN = max(k.maxN, n)
			}
		} else if k.limit == 0 {
			k.limit, k.supLast = limit, sup
		}
		if h.stale(k, g) {
			if ch := k.loading; ch != nil { // another caller is pulling: wait for it
				k.mu.Unlock()
				select {
				case <-ch:
					continue
				case <-ctx.Done():
					return callerDone(ctx, key, nil)
				}
			}
			if ctx.Err() != nil {
				k.mu.Unlock()
				return callerDone(ctx, key, nil)
			}
			ch := make(chan struct{})
			k.loading = ch
			k.mu.Unlock()
			peek := int64(0) // a decision's pull writes (as a Redis decision would), a peek's reads
			if n == 0 {
				peek = limit
			}
			dropped, err := h.pull(ctx, k, g, peek)
			k.mu.Lock()
			k.loading = nil
			close(ch)
			if err != nil {
				k.mu.Unlock()
				return err // the caller's context ended
			}
			if dropped { // a newer view was applied, or a Reset/SetIf began: look again
				k.mu.Unlock()
				continue
			}
		}
		if h.closed.Load() { // checked under k.mu: Close's final push sees what was recorded before
			k.mu.Unlock()
			return errClosed(key)
		}
		f(k)
		k.mu.Unlock()
		return nil
	}
}

// peekLocked is k's (locked) State from its view.
func (h *Hybrid) peekLocked(k *hkey, sup bool, lim limits) State {
	now := h.cfg.clock.Now()
	local := k.inflight + k.unpushed(now)
	count := min(h.globalLive(k, now)+local, MaxCount)
	st := peekState(sup, lim, count, now)
	st.Degraded = k.err
	if count+1 > st.Limit {
		st.RetryAfter = h.retryAfter(k, count+1-st.Limit, local, now)
	}
	st.ReleaseAfter = h.releaseAfter(k, local, now)
	return st
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
	count := h.globalLive(k, now) + k.inflight + k.unpushed(now)
	if k.err != nil && h.cfg.onError != FailLocal {
		d := Decision{Allowed: h.cfg.onError == FailOpen && n <= limit, Limit: limit, Degraded: k.err, At: now}
		if d.Allowed && n <= MaxCount-count {
			k.record(now, n) // counted once the backend is back
		}
		return d
	}
	d, record := judge(&h.cfg, sup, lim, n, count, &k.sup, now)
	if record {
		k.record(now, n)
	}
	d.Degraded = k.err
	if !d.Allowed && n <= d.Limit && (!sup || d.Suppression == 1) {
		after := count // the window after this decision, as the script computes it
		if record {
			after += n
		}
		d.RetryAfter = h.retryAfter(k, after+n-d.Limit, k.inflight+k.pending.total, now)
	}
	d.ReleaseAfter = h.releaseAfter(k, k.inflight+k.pending.total, now)
	return d
}

// serverNow estimates the server's time now from k's last pull: never
// ahead of it (the server read its clock before the reply was applied),
// so that what the estimate sees leave the window has left.
func (h *Hybrid) serverNow(k *hkey, now time.Time) int64 {
	return k.serverMs + max(now.Sub(k.pulledAt).Milliseconds(), 0)
}

// globalLive is what of the global count of k's last pull is still in the
// window now: the buckets its profile describes leave with their end, and
// all of it has left once the bucket the server was in at the pull has
// (so that the view ages also while no pull succeeds). Never less than
// what the server still counts of it.
func (h *Hybrid) globalLive(k *hkey, now time.Time) int64 {
	B := k.vg.bucketMs
	if B == 0 || k.pulledAt.IsZero() || k.global == 0 {
		return k.global
	}
	oldest := (h.serverNow(k, now)+1)/B - k.vg.nb
	if k.serverMs/B < oldest {
		return 0
	}
	live := k.global
	for i := 0; i+1 < len(k.profile) && k.profile[i] < oldest; i += 2 {
		live -= k.profile[i+1]
	}
	return max(live, 0)
}

// leave is how long from now until bucket b leaves k's window (≥ 1 ms).
func (h *Hybrid) leave(k *hkey, b int64, now time.Time) time.Duration {
	return time.Duration(max((b+k.vg.nb+1)*k.vg.bucketMs-1-h.serverNow(k, now), 1)) * time.Millisecond
}

// releaseAfter is when k's window next counts less, by the oldest bucket
// of the last pull still in the window, else this instance's own unpushed
// increments (the current bucket at the earliest); 0 when neither holds
// anything.
func (h *Hybrid) releaseAfter(k *hkey, local int64, now time.Time) time.Duration {
	if k.vg.bucketMs == 0 || !k.synced {
		return 0
	}
	oldest := (h.serverNow(k, now)+1)/k.vg.bucketMs - k.vg.nb
	for i := 0; i+1 < len(k.profile); i += 2 {
		if k.profile[i] >= oldest && k.profile[i+1] > 0 {
			return h.leave(k, k.profile[i], now)
		}
	}
	if local > 0 {
		return h.leave(k, h.serverNow(k, now)/k.vg.bucketMs, now)
	}
	return 0
}

// retryAfter is when need units will have left the window, by the oldest
// buckets of the last pull, then this instance's own unpushed increments
// (local), which the server will count from the bucket they are pushed in:
// the current one at the earliest. When neither holds enough (the pull
// described too little), a lower bound: the last bucket described, or
// else the next sync, which will describe more.
func (h *Hybrid) retryAfter(k *hkey, need, local int64, now time.Time) time.Duration {
	bucketMs := k.vg.bucketMs
	if bucketMs == 0 || !k.synced {
		return min(h.cfg.sync, time.Duration(k.g.ttlMs())*time.Millisecond)
	}
	serverNow := h.serverNow(k, now)
	oldest := (serverNow+1)/bucketMs - k.vg.nb
	global := h.globalLive(k, now)
	leave := func(b int64) time.Duration { return h.leave(k, b, now) }
	freed, last := int64(0), int64(-1)
	for i := 0; i+1 < len(k.profile) && global > 0; i += 2 {
		if k.profile[i] < oldest { // left: no longer counted
			continue
		}
		freed += k.profile[i+1]
		last = k.profile[i]
		if freed >= need {
			return leave(last)
		}
	}
	if described := last >= 0 || global == 0; described && freed+local >= need && global <= freed {
		return leave(serverNow / bucketMs)
	}
	if last >= 0 {
		return leave(last)
	}
	return min(h.cfg.sync, time.Duration(k.vg.nb*bucketMs)*time.Millisecond)
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
	local := k.inflight + k.pending.total - push
	return strconv.FormatInt(max(k.limit-need-local, 0), 10)
}

func (h *Hybrid) call(k *hkey, mode string, g geometry, push int64, room string) backend.Call {
	return backend.Call{Script: ratelimitscript.Window, Keys: h.cfg.keys(k.name),
		Args: windowArgs(mode, g, strconv.FormatInt(push, 10), room, strconv.Itoa(ratelimitscript.ProfileMax))}
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

// apply takes a successful pull under g into k (locked).
func (h *Hybrid) apply(k *hkey, g geometry, r syncReply) {
	k.global, k.synced, k.vg = r.total, true, g
	k.seq++
	k.err, k.permanent, k.backoff = nil, false, 0
	k.profile, k.serverMs, k.pulledAt = r.profile, r.nowMs, h.cfg.clock.Now()
}

// pull reads k's global count for a decision (peek 0: with the window
// script's sync mode, which re-dates a window kept under another
// geometry) or for a Peek under the limit peek (view mode: nothing
// written; the buckets a one-unit request needs to leave are described),
// under the caller's ctx
// bounded by the sync timeout. It returns an error only when the caller's
// ctx ended; a backend failure is recorded on the key (its decisions are
// degraded until a sync succeeds). The reply is dropped (dropped is true)
// when a sync round applied a newer one meanwhile, or a Reset or SetIf of
// the key began (the reply may predate it).
func (h *Hybrid) pull(ctx context.Context, k *hkey, g geometry, peek int64) (dropped bool, err error) {
	pctx, cancel := context.WithTimeout(ctx, h.syncTimeout())
	defer cancel()
	k.mu.Lock()
	c := h.call(k, ratelimitscript.ModeSync, g, 0, h.room(k, 0))
	if peek > 0 {
		room := max(peek-1-(k.inflight+k.pending.total), 0)
		c = h.call(k, ratelimitscript.ModeView, g, 0, strconv.FormatInt(room, 10))
	}
	seq := k.seq
	k.mu.Unlock()
	res := h.b.EvalScripts(pctx, []backend.Call{c})[0]
	var r syncReply
	failed := res.Err
	if failed == nil {
		r, failed = parseSync(res.Value)
	}
	if failed != nil && ctx.Err() != nil {
		return false, callerDone(ctx, k.name, failed)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.sentRound = h.round.Load() // fresh, or failed just now: no second attempt before the next rounds
	if failed != nil {
		h.fail(k, failed)
		if k.permanent {
			h.queueMu.Lock()
			h.quarantine[k] = struct{}{}
			h.queueMu.Unlock()
		}
		return false, nil
	}
	if k.seq != seq {
		return true, nil
	}
	h.apply(k, g, r)
	return false, nil
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
// their increments for the next one (each until its bucket leaves the
// window: what has left is dropped, never pushed) and have their
// decisions degraded until then. The error says how many keys
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
			if k.unpushed(now) > 0 && !k.dirty {
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
		// What was decided so long ago that it has left the window (its
		// pushes failed meanwhile) is dropped, never pushed: pushed now, it
		// would count again as if just admitted. A key unused for its window
		// + a bucket holds nothing to push.
		k.unpushed(now)
		idle := now.Sub(k.lastUse) >= time.Duration(k.g.ttlMs())*time.Millisecond
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
			push := k.take(now)
			keys = append(keys, k)
			calls = append(calls, h.call(k, ratelimitscript.ModeSync, k.g, push, h.room(k, push)))
		}
		k.mu.Unlock()
	}
	if len(calls) == 0 {
		h.cfg.obs.synced(ctx, 0, 0, nil, h.quarantined())
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
			h.apply(k, k.g, r)
			k.landed(k.inflight, true, now)
			k.mu.Unlock()
			continue
		}
		// Keep the increments for the next sync (those still in the window
		// then). After an unknown outcome they may be counted twice:
		// stricter, never looser.
		k.landed(k.inflight, false, h.cfg.clock.Now())
		callerEnded := ctx.Err() != nil && !(ownCtx && errors.Is(ctx.Err(), context.DeadlineExceeded))
		if !callerEnded {
			h.fail(k, err) // a key the server rejects goes (back) into quarantine
		}
		h.queueMu.Lock()
		switch {
		case k.permanent:
			h.quarantine[k] = struct{}{}
		case k.pending.total > 0 && !k.dirty: // retried next round
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
	h.cfg.obs.synced(ctx, len(calls), failed, first, failed == 0 && h.quarantined())
	if failed > 1 {
		return fmt.Errorf("%w (and %d more keys)", first, failed-1)
	}
	return first
}

// quarantined reports whether keys the server rejected wait for their
// retry (left out of this round, their decisions degraded); only
// computed when someone observes.
func (h *Hybrid) quarantined() bool {
	if h.cfg.obs == nil {
		return false
	}
	h.queueMu.Lock()
	defer h.queueMu.Unlock()
	return len(h.quarantine) > 0
}

// sweep drops keys unused for IdleAfter with nothing to push.
func (h *Hybrid) sweep(now time.Time) {
	cutoff := now.Add(-h.cfg.idle)
	h.keys.sweep(func(k *hkey) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.lastUse.Before(cutoff) || k.unpushed(now) != 0 || k.inflight != 0 || k.loading != nil || k.dirty {
			return false
		}
		k.dead = true
		return true
	})
}

// Reset deletes key's window on the backend and forgets this instance's
// increments of it not yet pushed: its next decision, on every provider
// sharing the prefix, starts from nothing (another Hybrid instance still
// pushes what it admitted and not yet pushed, and decides against its own
// view until its next sync; this instance keeps what it admits while the
// Reset is under way). It waits for a sync in progress; decisions on the
// key do not wait for it. The error is non-nil for invalid input, a closed
// provider, ctx ending or a backend failure (wrapping
// distkit.ErrNotApplied when the window was certainly not deleted,
// ErrIndeterminate when it may have been); this instance's state is then
// unchanged.
func (h *Hybrid) Reset(ctx context.Context, key string) error {
	if err := distkit.ValidateKey("key", key); err != nil {
		return fmt.Errorf("ratelimit: %w", err)
	}
	if h.closed.Load() {
		return errClosed(key)
	}
	return h.admin(ctx, key, nil, func(int64) backend.Call {
		return backend.Call{Script: ratelimitscript.Window, Keys: h.cfg.keys(key), Args: []string{ratelimitscript.ModeReset}}
	}, func(k *hkey, v backend.Value) error {
		if k != nil {
			now := h.cfg.clock.Now()
			k.global, k.synced, k.profile, k.vg = 0, true, nil, k.g
			k.serverMs, k.pulledAt = now.UnixMilli(), now
			k.err, k.permanent, k.backoff = nil, false, 0
		}
		return nil
	})
}

// SetIf sets key's window count (what Peek reports as Count) to value
// when cmp matches the current count, keeping or replacing the buckets it
// holds (History); it returns the count after and before: (value, prev)
// on a match, (prev, prev) otherwise. It acts on the server in one atomic
// script that first pushes this instance's increments of the key (so the
// comparison sees them), waiting for a sync in progress (decisions on the
// key do not wait for it: what they admit meanwhile is pushed by the next
// sync); other instances see the new count at their next sync. limit
// gives the window (only its Period matters). Errors as Redis.SetIf; on a
// backend failure this instance keeps its increments for the next sync.
func (h *Hybrid) SetIf(ctx context.Context, key string, limit Limit, cmp distkit.Comparator, value int64, hist History) (cur, prev int64, err error) {
	if err := checkSet(key, limit, cmp, value, hist); err != nil {
		return 0, 0, err
	}
	if h.closed.Load() {
		return 0, 0, errClosed(key)
	}
	g := geometryOf(limit, h.cfg.buckets)
	err = h.admin(ctx, key, &g, func(push int64) backend.Call {
		return backend.Call{Script: ratelimitscript.Window, Keys: h.cfg.keys(key), Args: setArgs(g, push, cmp, value, hist)}
	}, func(k *hkey, v backend.Value) error {
		r, err := parseSet(v)
		if err != nil {
			return err
		}
		cur, prev = r.cur, r.prev
		if k != nil {
			// The count is known, not where its buckets are: the next
			// decision or Peek pulls them (for RetryAfter, ReleaseAfter).
			k.global, k.synced, k.profile, k.vg = r.cur, false, nil, g
			k.serverMs, k.pulledAt = r.at.UnixMilli(), h.cfg.clock.Now() // all of it leaves within a window from now
			k.err, k.permanent, k.backoff = nil, false, 0
		}
		return nil
	})
	return cur, prev, err
}

// admin runs one administrative script for key between sync rounds (so no
// sync pushes the key meanwhile). The script gets push, this instance's
// increments of the key not yet pushed (SetIf pushes them, Reset forgets
// them); they are held in flight meanwhile, so that decisions, which do
// not wait for the script, still count them. apply takes a successful
// reply into key's local state (nil when this instance has none), locked;
// on a failure the increments go back to pending. g, when set, becomes the
// key's geometry. A pull that was under way is dropped (its reply may
// predate the script's effect).
func (h *Hybrid) admin(ctx context.Context, key string, g *geometry, call func(push int64) backend.Call, apply func(k *hkey, v backend.Value) error) error {
	if err := h.syncMu.LockCtx(ctx); err != nil {
		return fmt.Errorf("ratelimit: key %q: %w", key, err)
	}
	defer h.syncMu.Unlock()
	var push int64
	k := h.keys.lookup(key)
	if k != nil {
		k.mu.Lock()
		if k.dead {
			k.mu.Unlock()
			k = nil
		} else {
			if g != nil {
				k.g = *g
			}
			push = k.take(h.cfg.clock.Now()) // the sweep keeps a key with increments in flight
			k.seq++
			k.mu.Unlock()
		}
	}
	res := h.b.EvalScripts(ctx, []backend.Call{call(push)})[0]
	if k == nil {
		if res.Err != nil {
			return fmt.Errorf("ratelimit: key %q: %w", key, res.Err)
		}
		return apply(nil, res.Value)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.landed(push, res.Err == nil, h.cfg.clock.Now())
	if res.Err != nil {
		return fmt.Errorf("ratelimit: key %q: %w", key, res.Err)
	}
	k.sentRound = h.round.Load() // a fresh view
	k.seq++
	return apply(k, res.Value)
}

// Close stops the sync loop, then pushes every key's increments not yet
// pushed that are still in the window (quarantined keys included), all
// within ctx. It
// returns ctx's error if the loop or the push did not finish in time, or
// the push's error naming the keys left; Close may be called again to
// retry. It does not close the backend. Decisions after Close begins return an error
// wrapping distkit.ErrClosed, so nothing is admitted that no one pushes.
func (h *Hybrid) Close(ctx context.Context) error {
	h.closed.Store(true)
	h.cfg.obs.close()
	if err := h.jan.close(ctx); err != nil {
		return err
	}
	return h.sync(ctx, true, false)
}
