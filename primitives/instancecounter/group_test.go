package instancecounter_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// icStepper runs the heartbeat and rejoin scripts at once and holds every
// Op and OpBatch call until the test says what happens to it.
type icStepper struct {
	backend.Backend
	calls   chan *icCall
	rejoins atomic.Int64
}

type icCall struct {
	name    string
	args    []string
	ctx     context.Context
	act     chan error // nil: run; errHold: run, reply once release closes; else fail before running with it
	release chan struct{}
	ran     chan struct{} // closed once the script ran
	done    chan struct{}
}

var errHold = errors.New("run, hold the reply")

func (s *icStepper) EvalScript(ctx context.Context, sc backend.Script, keys []string, args ...string) (backend.Value, error) {
	if sc.Name() == icscript.Rejoin.Name() {
		defer s.rejoins.Add(1)
	}
	if sc.Name() != icscript.Op.Name() && sc.Name() != icscript.OpBatch.Name() {
		return s.Backend.EvalScript(ctx, sc, keys, args...)
	}
	c := &icCall{name: sc.Name(), args: args, ctx: ctx, act: make(chan error, 1), release: make(chan struct{}), ran: make(chan struct{}), done: make(chan struct{})}
	defer close(c.done)
	s.calls <- c
	var err error
	select {
	case err = <-c.act:
	case <-ctx.Done():
		return backend.Value{}, driver.Indeterminate(ctx.Err())
	}
	if err != nil && err != errHold {
		return backend.Value{}, err
	}
	v, rerr := s.Backend.EvalScript(context.Background(), sc, keys, args...)
	close(c.ran)
	if err == errHold {
		<-c.release
	}
	return v, rerr
}

func (s *icStepper) next(t *testing.T) *icCall {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no script call came")
		return nil
	}
}

func (s *icStepper) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.calls:
		t.Fatalf("unexpected script call %s %q", c.name, c.args)
	case <-time.After(20 * time.Millisecond):
	}
}

// icPending is a call running in its own goroutine.
type icPending struct {
	cum, mine int64
	err       error
	done      chan struct{}
}

func icStart(f func() (int64, int64, error)) *icPending {
	p := &icPending{done: make(chan struct{})}
	go func() { p.cum, p.mine, p.err = f(); close(p.done) }()
	return p
}

func (p *icPending) wait(t *testing.T) *icPending {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("call did not return")
	}
	return p
}

func waitICQueued(t *testing.T, c *instancecounter.Strict, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); instancecounter.Queued(c) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d, want %d", instancecounter.Queued(c), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func newICStepper(t *testing.T) (*icStepper, *memory.Backend, *instancecounter.Strict) {
	mem := memory.New(memory.Options{})
	s := &icStepper{Backend: mem, calls: make(chan *icCall, 64)}
	c, err := instancecounter.NewStrict(s, instancecounter.Options{Prefix: "p", InstanceID: "a", DeadAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Close(ctx)
	})
	// Registered (the first heartbeat's rejoin) before the test's calls.
	for deadline := time.Now().Add(5 * time.Second); s.rejoins.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the instance did not register")
		}
		time.Sleep(time.Millisecond)
	}
	return s, mem, c
}

// TestICGroupCommit: a lone call goes out at once as its own Op; calls
// made while two are in flight are queued and share one OpBatch, each
// getting its own reply in order; a queued call whose context ends is
// never sent (ErrNotApplied); a batch whose outcome is unknown gives each
// of its calls ErrIndeterminate; an overflow fails its own call only.
func TestICGroupCommit(t *testing.T) {
	s, _, c := newICStepper(t)
	ctx := context.Background()
	lone := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 7) })
	call := s.next(t)
	if call.name != icscript.Op.Name() {
		t.Fatalf("lone call sent as %s", call.name)
	}
	call.act <- nil
	if p := lone.wait(t); p.err != nil || p.cum != 7 || p.mine != 7 {
		t.Fatalf("lone Inc: (%d, %d), %v", p.cum, p.mine, p.err)
	}

	// Two in flight, then a queue: one increment overflowing, one
	// cancelled while queued.
	busy1 := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 1) })
	c1 := s.next(t)
	busy2 := icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c2 := s.next(t)
	q1 := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 2) })
	waitICQueued(t, c, 1)
	cctx, cancel := context.WithCancel(ctx)
	gone := icStart(func() (int64, int64, error) { return c.Inc(cctx, "k", 100) })
	waitICQueued(t, c, 2)
	q2 := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 1<<62) })
	waitICQueued(t, c, 3)
	q3 := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 1<<62) })
	waitICQueued(t, c, 4)
	q4 := icStart(func() (int64, int64, error) { return c.SetOnInstance(ctx, "k", 3) })
	waitICQueued(t, c, 5)
	cancel()
	if p := gone.wait(t); !errors.Is(p.err, distkit.ErrNotApplied) || errors.Is(p.err, distkit.ErrIndeterminate) {
		t.Fatalf("call cancelled while queued: %v, want ErrNotApplied", p.err)
	}
	waitICQueued(t, c, 4)
	s.none(t)
	c1.act <- nil
	if p := busy1.wait(t); p.err != nil || p.mine != 8 {
		t.Fatalf("busy Inc: (%d, %d), %v", p.cum, p.mine, p.err)
	}
	bt := s.next(t)
	if bt.name != icscript.OpBatch.Name() || len(bt.args) != 3+5*4 {
		t.Fatalf("queue sent as %s %q, want one OpBatch of 4", bt.name, bt.args)
	}
	bt.act <- nil
	for i, w := range []struct {
		mine     int64
		overflow bool
	}{{10, false}, {10 + 1<<62, false}, {0, true}, {3, false}} {
		p := []*icPending{q1, q2, q3, q4}[i].wait(t)
		if w.overflow {
			if !errors.Is(p.err, distkit.ErrOverflow) {
				t.Fatalf("queued call %d: %v, want ErrOverflow", i, p.err)
			}
			continue
		}
		if p.err != nil || p.mine != w.mine || p.cum != w.mine {
			t.Fatalf("queued call %d: (%d, %d), %v; want (%d, %d)", i, p.cum, p.mine, p.err, w.mine, w.mine)
		}
	}
	c2.act <- nil
	if p := busy2.wait(t); p.err != nil {
		t.Fatalf("busy Get: %v", p.err)
	}

	// A batch whose outcome is unknown: each of its calls is told so.
	busy1 = icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c1 = s.next(t)
	busy2 = icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c2 = s.next(t)
	q1 = icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 1) })
	waitICQueued(t, c, 1)
	q2 = icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	waitICQueued(t, c, 2)
	c1.act <- nil
	busy1.wait(t)
	bt = s.next(t)
	bt.act <- driver.Indeterminate(errors.New("connection reset"))
	for i, p := range []*icPending{q1, q2} {
		if p.wait(t); !errors.Is(p.err, distkit.ErrIndeterminate) || errors.Is(p.err, distkit.ErrNotApplied) {
			t.Fatalf("call %d of a failed batch: %v, want ErrIndeterminate", i, p.err)
		}
	}
	c2.act <- nil
	busy2.wait(t)
}

// expireA declares instance a dead behind its back (expireScript: review13_test.go).
func expireA(t *testing.T, mem *memory.Backend) {
	t.Helper()
	if _, err := mem.EvalScript(context.Background(), expireScript, keyspace.InstanceCounter("p").List()[:1], keyspace.InstanceMember("a")); err != nil {
		t.Fatal(err)
	}
}

// TestICGroupCommitComeback: the slot keeps the reply of the call that
// executed last even when it returned first (a batch executed after a
// direct call that returns later), so a comeback contributes that slice;
// and a batch that finds the instance absent makes its calls (and the
// direct ones) rejoin once, then retry, each getting what a sequential
// application gives.
func TestICGroupCommitComeback(t *testing.T) {
	s, mem, c := newICStepper(t)
	ctx := context.Background()
	first := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 5) })
	s.next(t).act <- nil
	first.wait(t)
	// c1 (Inc 1) executes first but returns last; the batch
	// (SetOnInstance 3) executes after it.
	busy1 := icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 1) })
	c1 := s.next(t)
	busy2 := icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c2 := s.next(t)
	q := icStart(func() (int64, int64, error) { return c.SetOnInstance(ctx, "k", 3) })
	waitICQueued(t, c, 1)
	q2 := icStart(func() (int64, int64, error) { return c.Get(ctx, "x") })
	waitICQueued(t, c, 2)
	c1.act <- errHold // executes now (mine 6), its reply held back
	<-c1.ran
	c2.act <- nil // the Get (mine 6) returns; the batch goes out
	if p := busy2.wait(t); p.err != nil || p.mine != 6 {
		t.Fatalf("Get: (%d, %d), %v", p.cum, p.mine, p.err)
	}
	bt := s.next(t)
	if bt.name != icscript.OpBatch.Name() {
		t.Fatalf("queue sent as %s", bt.name)
	}
	bt.act <- nil
	if p := q.wait(t); p.err != nil || p.mine != 3 {
		t.Fatalf("SetOnInstance: (%d, %d), %v", p.cum, p.mine, p.err)
	}
	q2.wait(t)
	close(c1.release) // the reply of the call executed first comes last
	if p := busy1.wait(t); p.err != nil || p.mine != 6 {
		t.Fatalf("Inc: (%d, %d), %v", p.cum, p.mine, p.err)
	}
	// A comeback contributes the slice of the call executed last: 3.
	rejoinsBefore := s.rejoins.Load()
	expireA(t, mem)
	busy1 = icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c1 = s.next(t)
	busy2 = icStart(func() (int64, int64, error) { return c.Get(ctx, "k") })
	c2 = s.next(t)
	q = icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 10) })
	waitICQueued(t, c, 1)
	q2 = icStart(func() (int64, int64, error) { return c.Inc(ctx, "k", 20) })
	waitICQueued(t, c, 2)
	c1.act <- nil // absent: its caller rejoins once the others are out
	bt = s.next(t)
	if bt.name != icscript.OpBatch.Name() {
		t.Fatalf("queue sent as %s", bt.name)
	}
	bt.act <- nil // absent as a whole
	c2.act <- nil // absent
	// Then each retries, after one rejoin: four retries, in any grouping.
	got := map[int64]bool{}
	for i := 0; i < 4; {
		select {
		case r := <-s.calls:
			r.act <- nil
			if r.name == icscript.OpBatch.Name() {
				i += (len(r.args) - 3) / 5
			} else {
				i++
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d retries came", i)
		}
	}
	for _, p := range []*icPending{busy1, busy2, q, q2} {
		if p.wait(t); p.err != nil || p.cum != p.mine {
			t.Fatalf("call after the comeback: (%d, %d), %v", p.cum, p.mine, p.err)
		}
		got[p.mine] = true
	}
	// The Incs applied once each, on top of the slice the comeback
	// contributed (3, not the 6 of the reply that came last): 13 then 33,
	// or 23 then 33.
	if !got[33] || !(got[13] || got[23]) {
		t.Fatalf("slices after the comeback: %v, want the Incs on top of 3 (13 or 23, then 33)", got)
	}
	if n := s.rejoins.Load() - rejoinsBefore; n != 1 {
		t.Fatalf("%d rejoins for one comeback, want 1", n)
	}
}
