package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

func runInstanceCounter(t *testing.T, newHarness NewHarness) {
	t.Run("SlicesAndCumulative", func(t *testing.T) { testICBasics(t, newHarness(t)) })
	t.Run("SetAndDelAreGlobal", func(t *testing.T) { testICGlobal(t, newHarness(t)) })
	t.Run("StaleEpochNoDoubleCount", func(t *testing.T) { testICEpoch(t, newHarness(t)) })
	t.Run("Conditionals", func(t *testing.T) { testICConditionals(t, newHarness(t)) })
	t.Run("DeadInstanceRemoved", func(t *testing.T) { testICDead(t, newHarness(t)) })
	t.Run("IdleInstanceKeepsSlice", func(t *testing.T) { testICIdle(t, newHarness(t)) })
	t.Run("ComebackContributesOnce", func(t *testing.T) { testICComeback(t, newHarness(t)) })
	t.Run("DataLossRecovery", func(t *testing.T) { testICDataLoss(t, newHarness(t)) })
	t.Run("CloseRemovesSlices", func(t *testing.T) { testICClose(t, newHarness(t)) })
	t.Run("Lax", func(t *testing.T) { testICLax(t, newHarness(t)) })
	t.Run("InvalidInput", func(t *testing.T) { testICInvalid(t, newHarness(t)) })
	t.Run("CloseWhileUnreachable", func(t *testing.T) { testICCloseDown(t, newHarness(t)) })
}

func newIC(t *testing.T, b backend.Backend, opts instancecounter.Options) *instancecounter.Strict {
	t.Helper()
	c, err := instancecounter.NewStrict(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Close(ctx)
	})
	return c
}

func pair(t *testing.T, what string, cum, mine int64, err error, wc, wm int64) {
	t.Helper()
	if err != nil || cum != wc || mine != wm {
		t.Fatalf("%s: got (%d, %d), %v; want (%d, %d)", what, cum, mine, err, wc, wm)
	}
}

func testICBasics(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a"})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b"})
	c, m, err := a.Inc(ctx, "conns", 5)
	pair(t, "A Inc 5", c, m, err, 5, 5)
	c, m, err = b.Inc(ctx, "conns", 3)
	pair(t, "B Inc 3", c, m, err, 8, 3)
	c, m, err = a.Get(ctx, "conns")
	pair(t, "A Get", c, m, err, 8, 5)
	c, m, err = a.SetOnInstance(ctx, "conns", 10)
	pair(t, "A SetOnInstance 10", c, m, err, 13, 10)
	c, m, err = b.DelOnInstance(ctx, "conns")
	pair(t, "B DelOnInstance", c, m, err, 10, 0)
	c, m, err = a.Dec(ctx, "conns", 4)
	pair(t, "A Dec 4", c, m, err, 6, 6)
	c, m, err = b.Get(ctx, "other")
	pair(t, "B Get of an unknown key", c, m, err, 0, 0)
}

func testICGlobal(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a"})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b"})
	a.Inc(ctx, "k", 5)
	b.Inc(ctx, "k", 3)
	c, m, err := b.Set(ctx, "k", 100)
	pair(t, "B Set 100", c, m, err, 100, 100)
	c, m, err = a.Get(ctx, "k")
	pair(t, "A after B's Set", c, m, err, 100, 0)
	c, m, err = a.Inc(ctx, "k", 1)
	pair(t, "A Inc 1", c, m, err, 101, 1)
	c, m, err = a.Del(ctx, "k")
	pair(t, "A Del returns the values before", c, m, err, 101, 1)
	c, m, err = b.Get(ctx, "k")
	pair(t, "B after Del", c, m, err, 0, 0)
	a.Inc(ctx, "x", 2)
	b.Inc(ctx, "y", 3)
	if err := a.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	c, m, err = b.Get(ctx, "y")
	pair(t, "after Clear", c, m, err, 0, 0)
	c, m, err = a.Inc(ctx, "x", 1)
	pair(t, "A Inc after Clear starts from 0", c, m, err, 1, 1)
}

func testICEpoch(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a"})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b"})
	b.Inc(ctx, "k", 3)
	a.Set(ctx, "k", 10) // B's slice and epoch are now stale
	c, m, err := b.Inc(ctx, "k", 1)
	pair(t, "stale B increments", c, m, err, 11, 1)
	c, m, err = a.Get(ctx, "k")
	pair(t, "A", c, m, err, 11, 10)
}

func testICConditionals(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a"})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b"})
	a.Inc(ctx, "k", 4)
	b.Inc(ctx, "k", 6) // cumulative 10
	c, m, err := a.IncIf(ctx, "k", distkit.Lt(10), 1)
	pair(t, "IncIf Lt(10) on 10", c, m, err, 10, 4)
	c, m, err = a.IncIf(ctx, "k", distkit.Ge(10), 1)
	pair(t, "IncIf Ge(10) on 10", c, m, err, 11, 5)
	c, m, err = a.SetOnInstanceIf(ctx, "k", distkit.Eq(4), 0)
	pair(t, "SetOnInstanceIf Eq(4) on slice 5", c, m, err, 11, 5)
	c, m, err = a.SetOnInstanceIf(ctx, "k", distkit.Eq(5), 0)
	pair(t, "SetOnInstanceIf Eq(5) on slice 5", c, m, err, 6, 0)
	c, m, err = b.SetIf(ctx, "k", distkit.Gt(100), 1)
	pair(t, "SetIf Gt(100) on 6", c, m, err, 6, 6)
	c, m, err = b.SetIf(ctx, "k", distkit.Eq(6), 50)
	pair(t, "SetIf Eq(6) on 6", c, m, err, 50, 50)
	if _, _, err := a.IncIf(ctx, "k", distkit.Comparator{Op: 9}, 1); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("bad comparator: %v", err)
	}
}

const icDeadAfter = 300 * time.Millisecond

func testICDead(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	dying := h.NewBackend(t)
	a := newIC(t, dying, instancecounter.Options{Prefix: p, InstanceID: "a", DeadAfter: icDeadAfter, KeepSlicesOnClose: true})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b", DeadAfter: icDeadAfter})
	a.Inc(ctx, "k", 5)
	b.Inc(ctx, "k", 2)
	dying.Close() // A's process is gone: no more heartbeats
	pass(t, h, icDeadAfter+2*icDeadAfter/3)
	c, m, err := b.Get(ctx, "k")
	pair(t, "after A died", c, m, err, 2, 2)
}

func testICIdle(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a", DeadAfter: icDeadAfter})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b", DeadAfter: icDeadAfter})
	a.Inc(ctx, "k", 5)
	pass(t, h, 3*icDeadAfter) // A does nothing; its heartbeat keeps it alive
	c, m, err := b.Inc(ctx, "k", 1)
	pair(t, "B after A idled 3×DeadAfter", c, m, err, 6, 1)
}

var expireInstanceScript = driver.NewScript("conf-ic-expire", `return redis.call('ZADD', KEYS[1], 0, ARGV[1])`,
	func(st driver.Store, keys, args []string) (backend.Value, error) {
		return backend.Int(0), st.ZAdd(keys[0], 0, args[0])
	})

var wipeScript = driver.NewScript("conf-wipe", `return redis.call('DEL', unpack(KEYS))`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		return backend.Int(int64(st.Del(keys...))), nil
	})

func icKeys(p string) []string { return keyspace.InstanceCounter(p).List() }

func testICComeback(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	admin := open(t, h)
	newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a", DeadAfter: icDeadAfter}).Inc(ctx, "k", 5)
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b", DeadAfter: icDeadAfter})
	b.Inc(ctx, "k", 2)
	// Declare A dead behind its back (as a long pause would).
	if _, err := admin.EvalScript(ctx, expireInstanceScript, icKeys(p)[:1], "a"); err != nil {
		t.Fatal(err)
	}
	c, _, err := b.Get(ctx, "k")
	pair(t, "B right after A was declared dead", c, 0, err, 2, 0)
	// A's next heartbeat (within DeadAfter/3) brings its slice back, once.
	eventually(t, 3*time.Second, "A re-contributes", func() bool {
		c, _, err := b.Get(ctx, "k")
		return err == nil && c == 7
	})
	pass(t, h, icDeadAfter) // several more heartbeats
	c, m, err := b.Get(ctx, "k")
	pair(t, "no double contribution", c, m, err, 7, 2)
}

func testICDataLoss(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	admin := open(t, h)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a", DeadAfter: icDeadAfter})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b", DeadAfter: icDeadAfter})
	a.Inc(ctx, "k", 5)
	b.Set(ctx, "k", 20) // epoch 1; A's slice wiped
	a.Inc(ctx, "k", 1)  // A: 1, B: 20
	reader := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "reader", DeadAfter: icDeadAfter})
	if _, err := admin.EvalScript(ctx, wipeScript, icKeys(p)); err != nil { // the server lost everything
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "instances re-register within a heartbeat", func() bool {
		c, _, err := reader.Get(ctx, "k")
		return err == nil && c == 21
	})
}

func testICClose(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	a := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "a"})
	keep := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "keep", KeepSlicesOnClose: true})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b"})
	a.Inc(ctx, "k", 5)
	keep.Inc(ctx, "k", 7)
	b.Inc(ctx, "k", 1)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := keep.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c, m, err := b.Get(ctx, "k")
	pair(t, "after A closed (removed) and keep closed (kept)", c, m, err, 8, 1)
	if _, _, err := a.Inc(ctx, "k", 1); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Inc after Close: %v", err)
	}
}

func testICLax(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	l1, err := instancecounter.NewLax(open(t, h), instancecounter.Options{Prefix: p, InstanceID: "l1", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := instancecounter.NewLax(open(t, h), instancecounter.Options{Prefix: p, InstanceID: "l2", FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "s"})
	for range 100 {
		l1.Inc(ctx, "k", 1)
		l2.Inc(ctx, "k", 2)
	}
	c, m, err := l1.Inc(ctx, "k", 0)
	pair(t, "l1's local view before any flush", c, m, err, 100, 100)
	if got := fmt.Sprint(l1.Pending()); got != "map[k:100]" {
		t.Fatalf("l1 pending %s", got)
	}
	eventually(t, 3*time.Second, "l2's background flush", func() bool {
		c, _, err := s.Get(ctx, "k")
		return err == nil && c == 200
	})
	c, m, err = l1.Get(ctx, "k") // flushes first
	pair(t, "l1 Get", c, m, err, 300, 100)
	c, m, err = l1.Set(ctx, "k", 1000)
	pair(t, "l1 Set", c, m, err, 1000, 1000)
	l2.Inc(ctx, "k", 5) // l2's epoch is stale: its slice restarts from 0
	if err := l2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c, m, err = s.Get(ctx, "k")
	pair(t, "after the stale instance flushed", c, m, err, 1005, 0)
	if err := l1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	c, m, err = s.Get(ctx, "k")
	pair(t, "after both Lax closed (slices removed)", c, m, err, 0, 0)
}

func testICInvalid(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	for _, o := range []instancecounter.Options{{DeadAfter: time.Millisecond}, {InstanceID: strings.Repeat("i", distkit.MaxKeyLen+1)}, {Prefix: strings.Repeat("p", distkit.MaxKeyLen+1)}} {
		if _, err := instancecounter.NewStrict(b, o); !errors.Is(err, distkit.ErrInvalidOption) && !errors.Is(err, distkit.ErrInvalidKey) {
			t.Errorf("NewStrict(%+v): %v", o, err)
		}
	}
	c := newIC(t, b, instancecounter.Options{Prefix: prefix(t)})
	if _, _, err := c.Inc(ctx, "", 1); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("bad key: %v", err)
	}
}

func testICCloseDown(t *testing.T, h Harness) {
	ctx := context.Background()
	b := h.NewBackend(t)
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: prefix(t), FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, "k", 3)
	b.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Close(cctx); err == nil || !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("Close with the backend down: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Close not bounded by its context")
	}
}
