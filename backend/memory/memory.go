// Package memory is a pure-Go distkit backend: no network, atomic script
// execution over an in-process Redis-like store, an injectable clock and
// fault hooks for tests.
//
// It is the backend for unit tests, examples and single-process programs.
// Every primitive behaves on it exactly as on Redis: each Script carries a
// Go twin of its Lua source and the conformance suite proves they agree.
// It has no replicas, so it is not a backend.Replicator: a lock with
// Options.MinReplicas refuses it (distkit.ErrInvalidOption).
//
//	b := memory.New(memory.Options{})
//	defer b.Close()
//	b.FailNext(1, nil)     // the next operation fails with ErrNotApplied
//	b.FailAfterApply(1)    // the next one applies, then reports ErrIndeterminate
//	b.Advance(time.Minute) // server time jumps: leases and heartbeats expire
package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Options configure a memory Backend. The zero value is ready to use.
type Options struct {
	// Clock is the source of server time; default backend.SystemClock.
	// Advance shifts whatever it reports.
	Clock backend.Clock
}

// server is the shared state several Backends (clients) may see.
type server struct {
	clock backend.Clock

	mu     sync.Mutex
	data   *data
	offset time.Duration

	subMu sync.Mutex
	subs  map[string]map[*subscription]struct{}
}

// Backend is the in-memory backend: one client of an in-process server.
// It is safe for concurrent use; each script call runs atomically under the
// server's lock. Connect returns further clients of the same server, each
// with its own fault hooks and Close, as separate processes would have.
type Backend struct {
	srv    *server
	closed atomic.Bool

	faultMu        sync.Mutex
	failNext       int
	failErr        error
	failAfterApply int
	latency        time.Duration
	hasFaults      atomic.Bool
}

var (
	_ backend.Backend  = (*Backend)(nil)
	_ backend.Notifier = (*Backend)(nil)
)

// New returns an empty memory backend.
func New(opts Options) *Backend {
	if opts.Clock == nil {
		opts.Clock = backend.SystemClock{}
	}
	return &Backend{srv: &server{clock: opts.Clock, data: newData(), subs: map[string]map[*subscription]struct{}{}}}
}

// Connect returns a new client of the same in-memory server: it sees the
// same keys and time, but has its own fault hooks and its own Close.
func (b *Backend) Connect() *Backend {
	return &Backend{srv: b.srv}
}

// Now returns the backend's server time: the clock's time plus every Advance.
func (b *Backend) Now() time.Time {
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	return b.srv.clock.Now().Add(b.srv.offset)
}

// Advance moves server time forward by d, expiring leases, heartbeats and
// TTL'd keys as if d had passed.
func (b *Backend) Advance(d time.Duration) {
	b.srv.mu.Lock()
	b.srv.offset += d
	b.srv.mu.Unlock()
}

// FailNext makes the next n operations fail without applying. err is the
// error they return; nil means an error matching ErrNotApplied. An err that
// matches neither ErrNotApplied nor ErrIndeterminate is wrapped to match
// ErrNotApplied, since the operation really was not applied. Each call of an
// EvalScripts batch counts as one operation.
func (b *Backend) FailNext(n int, err error) {
	if err == nil {
		err = errors.New("memory: injected failure")
	}
	if !errors.Is(err, backend.ErrIndeterminate) {
		err = driver.NotApplied(err)
	}
	b.faultMu.Lock()
	b.failNext, b.failErr = n, err
	b.faultMu.Unlock()
	b.hasFaults.Store(true)
}

// FailAfterApply makes the next n operations apply and then report an
// error matching ErrIndeterminate, as a connection lost after the server
// executed a request would.
func (b *Backend) FailAfterApply(n int) {
	b.faultMu.Lock()
	b.failAfterApply = n
	b.faultMu.Unlock()
	b.hasFaults.Store(true)
}

// Latency makes every operation wait d before running (0 turns it off). A
// context done during the wait fails the operation with ErrNotApplied.
func (b *Backend) Latency(d time.Duration) {
	b.faultMu.Lock()
	b.latency = d
	b.faultMu.Unlock()
	b.hasFaults.Store(true)
}

var errInjectedIndeterminate = errors.New("memory: injected failure after apply")

// before runs the pre-apply fault hooks; a non-nil error means "do not apply".
// after reports whether to fail the applied operation.
func (b *Backend) before(ctx context.Context) (failAfter bool, err error) {
	if b.closed.Load() {
		return false, driver.NotApplied(backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return false, driver.NotApplied(err)
	}
	if !b.hasFaults.Load() {
		return false, nil
	}
	b.faultMu.Lock()
	lat := b.latency
	if b.failNext > 0 {
		b.failNext--
		err = b.failErr
	} else if b.failAfterApply > 0 {
		b.failAfterApply--
		failAfter = true
	}
	b.faultMu.Unlock()
	if lat > 0 {
		t := time.NewTimer(lat)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, driver.NotApplied(ctx.Err())
		}
	}
	return failAfter, err
}

func (b *Backend) run(s backend.Script, keys, args []string) (backend.Value, error) {
	r, ok := s.(driver.Runner)
	if !ok {
		// Not applied: there is nothing to run.
		return backend.Value{}, driver.NotApplied(fmt.Errorf("memory: script %s has no Go implementation (declare it with driver.NewScript)", s.Name()))
	}
	srv := b.srv
	srv.mu.Lock()
	defer srv.mu.Unlock()
	now := srv.clock.Now().Add(srv.offset)
	srv.data.sweep(now)
	st := store{d: srv.data, now: now, publish: srv.publish}
	return r.Run(&st, keys, args)
}

func (b *Backend) eval(ctx context.Context, s backend.Script, keys, args []string) (backend.Value, error) {
	failAfter, err := b.before(ctx)
	if err != nil {
		return backend.Value{}, err
	}
	v, err := b.run(s, keys, args)
	if failAfter {
		return backend.Value{}, driver.Indeterminate(errInjectedIndeterminate)
	}
	return v, err
}

// EvalScript runs the Go twin of s atomically.
func (b *Backend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	return b.eval(ctx, s, keys, args)
}

// EvalScripts runs each call atomically, in order.
func (b *Backend) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	out := make([]backend.Result, len(calls))
	for i, c := range calls {
		out[i].Value, out[i].Err = b.eval(ctx, c.Script, c.Keys, c.Args)
	}
	return out
}

// Heartbeat implements backend.Backend.
func (b *Backend) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) error {
	return driver.EvalHeartbeat(ctx, b, group, member, ttl)
}

// AcquireLease implements backend.Backend.
func (b *Backend) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return driver.EvalLease(ctx, b, driver.AcquireLeaseScript, key, owner, ttl)
}

// RenewLease implements backend.Backend.
func (b *Backend) RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return driver.EvalLease(ctx, b, driver.RenewLeaseScript, key, owner, ttl)
}

// ReleaseLease implements backend.Backend.
func (b *Backend) ReleaseLease(ctx context.Context, key, owner string) (bool, error) {
	return driver.EvalLease(ctx, b, driver.ReleaseLeaseScript, key, owner, 0)
}

// Close makes every later call of this client fail with ErrClosed; other
// clients of the same server are unaffected. It never fails.
func (b *Backend) Close() error {
	b.closed.Store(true)
	return nil
}

// FlushAll deletes every key, like Redis FLUSHALL.
func (b *Backend) FlushAll() {
	b.srv.mu.Lock()
	b.srv.data = newData()
	b.srv.mu.Unlock()
}

type subscription struct {
	ch chan struct{}
}

// Subscribe implements backend.Notifier with Go channels.
func (b *Backend) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	if b.closed.Load() {
		return nil, nil, driver.NotApplied(backend.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, driver.NotApplied(err)
	}
	s := &subscription{ch: make(chan struct{}, 1)}
	srv := b.srv
	srv.subMu.Lock()
	m := srv.subs[channel]
	if m == nil {
		m = map[*subscription]struct{}{}
		srv.subs[channel] = m
	}
	m[s] = struct{}{}
	srv.subMu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			srv.subMu.Lock()
			delete(srv.subs[channel], s)
			if len(srv.subs[channel]) == 0 {
				delete(srv.subs, channel)
			}
			srv.subMu.Unlock()
		})
	}, nil
}

// publish is called by scripts (with b.mu held).
func (srv *server) publish(channel, _ string) int {
	srv.subMu.Lock()
	defer srv.subMu.Unlock()
	n := 0
	for s := range srv.subs[channel] {
		select {
		case s.ch <- struct{}{}:
		default: // one pending notification is enough
		}
		n++
	}
	return n
}
