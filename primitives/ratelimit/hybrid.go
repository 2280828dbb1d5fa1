package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/ctxsync"
)

// hkey is one key's Hybrid state.
type hkey struct {
	mu       sync.Mutex
	synced   bool  // global has been read at least once
	global   int64 // window total on the server at the last sync
	pending  int64 // local increments not yet pushed
	inflight int64 // local increments being pushed
	lastUse  time.Time
	sup      suppression
}

// Hybrid decides locally against a cached view of the global count and
// synchronises every SyncInterval in one round trip for all active keys.
type Hybrid struct {
	b       backend.Backend
	cfg     config
	ttl     string
	keys    *keyMap[hkey]
	lastErr atomic.Pointer[error]
	jan     *janitor
	// syncMu allows one sync at a time (pushes are not idempotent). It is
	// held across a backend call, so a wait for it gives up when the
	// waiter's context ends.
	syncMu *ctxsync.Mutex
}

// NewHybrid returns a Hybrid provider over b and starts its sync loop
// (which also drops idle keys); Close stops it. OnError defaults to
// FailLocal.
func NewHybrid(b backend.Backend, opts Options) (*Hybrid, error) {
	if b == nil {
		return nil, invalid("backend is nil")
	}
	cfg, err := opts.config(FailLocal, true)
	if err != nil {
		return nil, err
	}
	h := &Hybrid{b: b, cfg: cfg, ttl: driver.Millis(cfg.window + cfg.bucket), keys: newKeyMap[hkey](), syncMu: ctxsync.NewMutex()}
	h.jan = startJanitor(cfg.sync, func(base context.Context) {
		ctx, cancel := context.WithTimeout(base, max(time.Second, 10*cfg.sync))
		h.Sync(ctx)
		cancel()
	})
	return h, nil
}

// Absolute returns the Absolute strategy on this provider.
func (h *Hybrid) Absolute() *Absolute { return &Absolute{p: h} }

// Suppressed returns the Suppressed strategy on this provider.
func (h *Hybrid) Suppressed() *Suppressed { return &Suppressed{p: h} }

func (h *Hybrid) decide(ctx context.Context, sup bool, key string, rate float64, n int64) (Decision, error) {
	k := h.keys.get(key, func() *hkey { return &hkey{} })
	k.mu.Lock()
	fresh := !k.synced
	k.mu.Unlock()
	if fresh { // first use: read the global count once, synchronously
		h.syncKeys(ctx, map[string]*hkey{key: k})
	}
	var syncErr error
	if p := h.lastErr.Load(); p != nil {
		syncErr = fmt.Errorf("ratelimit: key %q: %w", key, *p)
		switch h.cfg.onError {
		case FailClosed, FailOpen:
			return Decision{Allowed: h.cfg.onError == FailOpen, At: time.Now()}, syncErr
		}
	}
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lastUse = now
	d, record := judge(&h.cfg, sup, rate, n, k.global+k.inflight+k.pending, &k.sup, now)
	if record {
		k.pending += n
	}
	return d, syncErr
}

// Sync pushes local increments of every active key and pulls their global
// counts in one round trip. The background loop calls it every
// SyncInterval; call it to force one. It returns the backend's error.
func (h *Hybrid) Sync(ctx context.Context) error {
	cutoff := time.Now().Add(-h.cfg.idle)
	active := map[string]*hkey{}
	h.keys.sweep(func(k *hkey) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.lastUse.Before(cutoff) && k.pending == 0 && k.inflight == 0
	})
	h.keys.each(func(key string, k *hkey) { active[key] = k })
	return h.syncKeys(ctx, active)
}

func (h *Hybrid) syncKeys(ctx context.Context, keys map[string]*hkey) error {
	if len(keys) == 0 {
		return nil
	}
	if err := h.syncMu.LockCtx(ctx); err != nil { // one sync at a time: pushes are not idempotent
		return fmt.Errorf("ratelimit: sync: %w", err)
	}
	defer h.syncMu.Unlock()
	names := make([]string, 0, len(keys))
	calls := make([]backend.Call, 0, len(keys))
	for name, k := range keys {
		k.mu.Lock()
		k.inflight, k.pending = k.pending, 0
		push := k.inflight
		k.mu.Unlock()
		names = append(names, name)
		calls = append(calls, backend.Call{Script: windowScript, Keys: h.cfg.keys(name),
			Args: []string{"push", driver.Millis(h.cfg.bucket), fmt.Sprint(h.cfg.nb), "0", fmt.Sprint(push), h.ttl}})
	}
	var firstErr error
	for i, res := range h.b.EvalScripts(ctx, calls) {
		k := keys[names[i]]
		var w windowReply
		err := res.Err
		if err == nil {
			w, err = parseWindow(res.Value)
		}
		k.mu.Lock()
		if err != nil {
			// Keep the increments for the next sync. After an unknown
			// outcome they may be counted twice: stricter, never looser.
			k.pending += k.inflight
			k.inflight = 0
			if firstErr == nil {
				firstErr = err
			}
		} else {
			k.global, k.inflight, k.synced = w.total, 0, true
		}
		k.mu.Unlock()
	}
	if firstErr != nil {
		h.lastErr.Store(&firstErr)
		return firstErr
	}
	h.lastErr.Store(nil)
	return nil
}

// Close stops the sync loop and pushes the local increments not yet
// synced, all within ctx: it returns ctx's error if the loop or the push
// did not finish in time, or the backend's error from the push. It does
// not close the backend; decisions keep working afterwards (they are no
// longer synced in the background).
func (h *Hybrid) Close(ctx context.Context) error {
	if err := h.jan.close(ctx); err != nil {
		return err
	}
	err := h.Sync(ctx)
	if errors.Is(err, backend.ErrClosed) {
		return nil
	}
	return err
}
