package parity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// lockScenario drives every lock script through the public API and, for
// the retry-after-unknown-outcome path the API only takes after a fault,
// through the scripts themselves. Tokens depend on server time, so they are
// rendered by their order, not their value.
var lockScenario = Scenario{Name: "Lock", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	var last int64
	token := func(g *lock.Guard, err error) *lock.Guard {
		if err != nil {
			out = append(out, Outcome(nil, err))
			return nil
		}
		out = append(out, fmt.Sprintf("token rises: %v, attempt %d", g.Token() > last, g.Attempt()))
		last = g.Token()
		return g
	}
	rel := func(g *lock.Guard) {
		if g == nil {
			out = append(out, "no guard")
			return
		}
		st, err := g.Release(ctx)
		out = append(out, Outcome(st, err))
	}
	// A TTL long enough that a loaded machine (renewals late by a few
	// hundred ms) does not lose a lease on one backend and not the other.
	opts := lock.Options{Prefix: p, TTL: 600 * time.Millisecond, RetryInterval: 5 * time.Millisecond}
	m1, _ := lock.NewMutex(b, "m", opts)
	m2, _ := lock.NewMutex(b, "m", opts)
	rw, _ := lock.NewRWMutex(b, "m", opts)
	g := token(m1.TryLock(ctx))
	_, err := m2.TryLock(ctx)
	out = append(out, Outcome(nil, err))
	_, err = rw.TryRLock(ctx)
	out = append(out, Outcome(nil, err))
	time.Sleep(250 * time.Millisecond) // one renewal (every TTL/3)
	out = append(out, Outcome(g.State(), nil))
	rel(g)
	r1 := token(rw.TryRLock(ctx))
	r2 := token(rw.TryRLock(ctx))
	_, err = rw.TryLockWithTimeout(ctx, 200*time.Millisecond) // marks a waiting writer, then removes the mark
	// Only the timeout is compared: whether it also carries the last
	// attempt's error (an attempt the wait's end cut short on a loaded
	// machine) depends on timing, not on the backend.
	out = append(out, fmt.Sprintf("writer timed out: %v", errors.Is(err, distkit.ErrTimeout)))
	// The writer's mark is gone once its clean-up ran, which a loaded
	// machine may delay past the writer's return: wait for it.
	r3, err := rw.TryRLockWithTimeout(ctx, 2*time.Second)
	if err != nil {
		out = append(out, Outcome(nil, err))
	} else {
		out = append(out, fmt.Sprintf("token rises: %v", r3.Token() > last))
		last = r3.Token()
	}
	time.Sleep(250 * time.Millisecond) // readers renew
	rel(r1)
	rel(r2)
	rel(r3)
	w := token(rw.TryLock(ctx))
	lk := keyspace.Lock(p, "m")
	b.EvalScript(ctx, testkit.DelKeyScript, []string{lk.Lock}) // someone deletes the lease
	rel(w)                                                     // ErrNotHeld
	r4 := token(rw.TryRLock(ctx))
	b.EvalScript(ctx, testkit.DelKeyScript, []string{lk.Readers})
	rel(r4)

	// Scripts directly: a retry with the same acquisition id finds its
	// own lease and returns the same token.
	ks := keyspace.Lock(p, "s")
	keys := []string{ks.Lock, ks.Readers, ks.WaitingWriter, ks.Fence}
	call := func(sc backend.Script, keys []string, args ...string) backend.Value {
		v, err := b.EvalScript(ctx, sc, keys, args...)
		if err != nil {
			out = append(out, Outcome(nil, err))
		}
		return v
	}
	t1 := call(lockscript.Acquire, keys, "o:1", "1000", "0")
	t2 := call(lockscript.Acquire, keys, "o:1", "1000", "0")
	t3 := call(lockscript.Acquire, keys, "o:2", "1000", "300")
	out = append(out, fmt.Sprintf("exclusive retry same token %v, other refused %v", t1.Equal(t2), t3.Equal(backend.Int(0))))
	out = append(out, Outcome(call(lockscript.ReleaseShared, []string{ks.Readers}, "o:1:", "ch"), nil)) // no read lease to release
	out = append(out, Outcome(call(lockscript.Release, []string{ks.Lock}, "o:2:", "ch"), nil))          // not the holder
	out = append(out, Outcome(call(lockscript.Unmark, []string{ks.WaitingWriter}, "o:2", "ch"), nil))   // removes o:2's mark
	out = append(out, Outcome(call(lockscript.Release, []string{ks.Lock}, "o:1:", "ch"), nil))
	r5 := call(lockscript.AcquireShared, keys, "o:3", "1000", "0")
	r6 := call(lockscript.AcquireShared, keys, "o:3", "1000", "1")
	out = append(out, fmt.Sprintf("shared retry same token %v", r5.Equal(r6)))
	out = append(out, Outcome(call(lockscript.RenewShared, []string{ks.Readers}, "o:3:x", "1000"), nil)) // unknown member

	// The waiters mark: set by a refused attempt that will wait, never
	// shortened by a later, shorter one, absent otherwise.
	kw := keyspace.Lock(p, "w")
	wkeys := []string{kw.Lock, kw.Readers, kw.WaitingWriter, kw.Fence, kw.Waiters}
	pttl := func() int64 {
		n, _ := call(pttlScript, []string{kw.Waiters}).Int64()
		return n
	}
	w1 := call(lockscript.Acquire, wkeys, "a:1", "1000", "0", "0")
	out = append(out, fmt.Sprintf("acquired %v, waiters %d", !w1.Equal(backend.Int(0)), pttl()))
	call(lockscript.Acquire, wkeys, "b:1", "1000", "0", "0")
	out = append(out, fmt.Sprintf("refused without mark: waiters %d", pttl()))
	call(lockscript.Acquire, wkeys, "b:1", "1000", "0", "5000")
	marked := pttl()
	call(lockscript.AcquireShared, wkeys, "c:1", "1000", "0", "100")
	out = append(out, fmt.Sprintf("marked %v, not shortened %v", marked > 4000, pttl() > 4000))
	out = append(out, Outcome(call(lockscript.Release, []string{kw.Lock, kw.Waiters}, "a:1:", "ch"), nil))

	// The FIFO queue and direct hand-off: waiters queue in arrival order,
	// a free lock goes only to the head, a release hands the lock to the
	// head (which claims it with its own id: the same token, extended),
	// a waiter that gives up (Release) leaves the line and passes on a
	// lock handed to it, and a lock is handed to a waiter only for what is
	// left of its mark.
	kq := keyspace.Lock(p, "q")
	qkeys := []string{kq.Lock, kq.Readers, kq.WaitingWriter, kq.Fence, kq.Waiters, kq.Queue, kq.QueueExpiry}
	rkeys := []string{kq.Lock, kq.Waiters, kq.Queue, kq.QueueExpiry, kq.Fence}
	qa := call(lockscript.Acquire, qkeys, "a:1", "1000", "0", "5000")
	qb := call(lockscript.Acquire, qkeys, "b:1", "1000", "0", "5000")
	qc := call(lockscript.Acquire, qkeys, "c:1", "1000", "5000", "5000") // a writer: marks wwait too
	qd := call(lockscript.Acquire, qkeys, "d:1", "1000", "0", "0")       // will not wait: not queued
	qb2 := call(lockscript.Acquire, qkeys, "b:1", "1000", "0", "5000")   // keeps its place
	line, _ := b.EvalScript(ctx, zrangeScript, []string{kq.Queue})
	// A queued refusal is −1 − the rank in line; one that does not wait, 0.
	out = append(out, fmt.Sprintf("a acquired %v, b c d refused %v %v %v, b again %v, line %v", !qa.Equal(backend.Int(0)),
		qb, qc, qd, qb2, line))
	out = append(out, Outcome(call(lockscript.Release, rkeys, "a:1:", "ch"), nil)) // hands to b
	holder, _ := b.EvalScript(ctx, getPrefixScript, []string{kq.Lock})
	qc2 := call(lockscript.Acquire, qkeys, "c:1", "1000", "5000", "5000")
	qb3 := call(lockscript.Acquire, qkeys, "b:1", "1000", "0", "5000") // claims
	qb4 := call(lockscript.Acquire, qkeys, "b:1", "1000", "0", "5000")
	ta, _ := qa.Int64()
	tb, _ := qb3.Int64()
	out = append(out, fmt.Sprintf("handed to %v, c refused %v, b claims a higher token %v, same on retry %v, pttl extended %v",
		holder, qc2, tb > ta, qb3.Equal(qb4), func() bool { n, _ := call(pttlScript, []string{kq.Lock}).Int64(); return n > 900 }()))
	out = append(out, Outcome(call(lockscript.Release, rkeys, "b:1:", "ch"), nil)) // hands to c
	out = append(out, Outcome(call(lockscript.Release, rkeys, "c:1:", "ch"), nil)) // c gives up before claiming: passes on (nobody left: free)
	line, _ = b.EvalScript(ctx, zrangeScript, []string{kq.Queue})
	holder, _ = b.EvalScript(ctx, getPrefixScript, []string{kq.Lock})
	out = append(out, fmt.Sprintf("after c gave up: holder %v, line %v", holder, line))
	call(lockscript.Acquire, qkeys, "e:1", "1000", "0", "0")
	call(lockscript.Acquire, qkeys, "f:1", "1000", "0", "150") // a short mark
	call(lockscript.Release, rkeys, "e:1:", "ch")              // hands to f for what is left of its mark
	holder, _ = b.EvalScript(ctx, getPrefixScript, []string{kq.Lock})
	short := call(pttlScript, []string{kq.Lock})
	n, _ := short.Int64()
	// (That it then lapses needs the server's clock to move, which
	// miniredis's does not by itself: TestHandoffToCrashedWaiterLapses.)
	out = append(out, fmt.Sprintf("handed to %v for at most its mark %v", holder, n > 0 && n <= 150))
	return out
}}

// zrangeScript lists a sorted set's members in order.
var zrangeScript = driver.NewScript("parity-zrange", `return table.concat(redis.call('ZRANGE', KEYS[1], 0, -1), ' ')`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		ms, err := st.ZRangeByScore(keys[0], -1e300, 1e300)
		var names []string
		for _, m := range ms {
			names = append(names, m.Member)
		}
		return backend.Str(strings.Join(names, " ")), err
	})

// getPrefixScript reads a lock value's holder (the value up to its last ':').
var getPrefixScript = driver.NewScript("parity-get-holder", `local v = redis.call('GET', KEYS[1])
if not v then return '' end
return string.match(v, '^(.*):[^:]*$')`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		v, _, err := st.Get(keys[0])
		if i := strings.LastIndexByte(v, ':'); i >= 0 {
			v = v[:i]
		}
		return backend.Str(v), err
	})

// pttlScript reads a key's PTTL (-2 when absent).
var pttlScript = driver.NewScript("parity-pttl", `return redis.call('PTTL', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		return backend.Int(st.PTTL(keys[0])), nil
	})
