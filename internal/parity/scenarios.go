package parity

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit-go/distkit/backend"
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
	opts := lock.Options{Prefix: p, TTL: 150 * time.Millisecond, RetryInterval: 5 * time.Millisecond}
	m1, _ := lock.NewMutex(b, "m", opts)
	m2, _ := lock.NewMutex(b, "m", opts)
	rw, _ := lock.NewRWMutex(b, "m", opts)
	g := token(m1.TryLock(ctx))
	_, err := m2.TryLock(ctx)
	out = append(out, Outcome(nil, err))
	_, err = rw.TryRLock(ctx)
	out = append(out, Outcome(nil, err))
	time.Sleep(70 * time.Millisecond) // one renewal (every TTL/3)
	out = append(out, Outcome(g.State(), nil))
	rel(g)
	r1 := token(rw.TryRLock(ctx))
	r2 := token(rw.TryRLock(ctx))
	_, err = rw.TryLockWithTimeout(ctx, 20*time.Millisecond) // marks a waiting writer, then removes the mark
	out = append(out, Outcome(nil, err))
	r3 := token(rw.TryRLock(ctx))
	time.Sleep(70 * time.Millisecond) // readers renew
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
	out = append(out, Outcome(call(lockscript.Unmark, []string{ks.WaitingWriter}, "o:2"), nil))         // removes o:2's mark
	out = append(out, Outcome(call(lockscript.Release, []string{ks.Lock}, "o:1:", "ch"), nil))
	r5 := call(lockscript.AcquireShared, keys, "o:3", "1000", "0")
	r6 := call(lockscript.AcquireShared, keys, "o:3", "1000", "1")
	out = append(out, fmt.Sprintf("shared retry same token %v", r5.Equal(r6)))
	out = append(out, Outcome(call(lockscript.RenewShared, []string{ks.Readers}, "o:3:x", "1000"), nil)) // unknown member
	return out
}}
