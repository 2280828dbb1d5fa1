package counter_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/counter"
)

// stepper is a backend whose every script call waits for the test to say
// what happens to it: run, fail before running, or run and then fail.
type stepper struct {
	backend.Backend
	calls chan *stepCall
}

type stepCall struct {
	name string
	args []string
	ctx  context.Context
	act  chan stepAct
}

type stepAct struct{ before, after error }

func newStepper() *stepper {
	return &stepper{Backend: memory.New(memory.Options{}), calls: make(chan *stepCall, 64)}
}

func (s *stepper) EvalScript(ctx context.Context, sc backend.Script, keys []string, args ...string) (backend.Value, error) {
	c := &stepCall{name: sc.Name(), args: args, ctx: ctx, act: make(chan stepAct, 1)}
	s.calls <- c
	var a stepAct
	select {
	case a = <-c.act:
	case <-ctx.Done():
		return backend.Value{}, driver.Indeterminate(ctx.Err()) // as a driver whose request was written
	}
	if a.before != nil {
		return backend.Value{}, a.before
	}
	v, err := s.Backend.EvalScript(context.Background(), sc, keys, args...)
	if a.after != nil {
		return backend.Value{}, a.after
	}
	return v, err
}

func (s *stepper) next(t *testing.T) *stepCall {
	t.Helper()
	select {
	case c := <-s.calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no script call")
		return nil
	}
}

func (s *stepper) none(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.calls:
		t.Fatalf("unexpected script call %s %q", c.name, c.args)
	case <-time.After(20 * time.Millisecond):
	}
}

func (c *stepCall) run()               { c.act <- stepAct{} }
func (c *stepCall) failBefore(e error) { c.act <- stepAct{before: e} }
func (c *stepCall) failAfter(e error)  { c.act <- stepAct{after: e} }

// pending is a call running in its own goroutine.
type pending struct {
	v    int64
	err  error
	done chan struct{}
}

func start(f func() (int64, error)) *pending {
	p := &pending{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.v, p.err = f()
	}()
	return p
}

func (p *pending) wait(t *testing.T) (int64, error) {
	t.Helper()
	select {
	case <-p.done:
		return p.v, p.err
	case <-time.After(5 * time.Second):
		t.Fatal("call did not return")
		return 0, nil
	}
}

func (p *pending) running(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("call returned early: %d, %v", p.v, p.err)
	case <-time.After(20 * time.Millisecond):
	}
}

func waitQueued(t *testing.T, c *counter.Strict, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); counter.Queued(c) != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", counter.Queued(c), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func field(k string) string { return keyspace.CounterField(k) }

// busy starts two calls that occupy both slots of the group and returns
// them with their script calls (held).
func busy(t *testing.T, s *stepper, c *counter.Strict) (a, b *pending, ca, cb *stepCall) {
	t.Helper()
	ctx := context.Background()
	a = start(func() (int64, error) { return c.Inc(ctx, "x", 1) })
	ca = s.next(t)
	b = start(func() (int64, error) { return c.Inc(ctx, "y", 1) })
	cb = s.next(t)
	if ca.name != "counter-inc" || cb.name != "counter-inc" {
		t.Fatalf("idle calls went out as %s and %s, want counter-inc each", ca.name, cb.name)
	}
	return a, b, ca, cb
}

func newStepStrict(t *testing.T, s *stepper) *counter.Strict {
	t.Helper()
	c, err := counter.NewStrict(s, counter.Options{Prefix: "g"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGroupCommitLoneCallIsItsOwnScript(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	p := start(func() (int64, error) { return c.Inc(context.Background(), "k", 7) })
	call := s.next(t)
	if call.name != "counter-inc" || !slices.Equal(call.args, []string{field("k"), "7"}) {
		t.Fatalf("lone call sent as %s %q, want counter-inc [k 7]", call.name, call.args)
	}
	call.run()
	if v, err := p.wait(t); v != 7 || err != nil {
		t.Fatalf("Inc: %d, %v", v, err)
	}
	c.Close(context.Background())
}

func TestGroupCommitQueuedCallsShareOneBatch(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c)
	q := []*pending{
		start(func() (int64, error) { return c.Inc(ctx, "k", 2) }),
	}
	waitQueued(t, c, 1)
	q = append(q, start(func() (int64, error) { return c.Get(ctx, "k") }))
	waitQueued(t, c, 2)
	q = append(q, start(func() (int64, error) { return c.Set(ctx, "k", 10) }))
	waitQueued(t, c, 3)
	q = append(q, start(func() (int64, error) { return c.Dec(ctx, "k", 3) }))
	waitQueued(t, c, 4)
	q = append(q, start(func() (int64, error) { return c.Del(ctx, "k") }))
	waitQueued(t, c, 5)
	s.none(t)
	ca.run()
	if v, err := a.wait(t); v != 1 || err != nil {
		t.Fatalf("A: %d, %v", v, err)
	}
	bt := s.next(t)
	k := field("k")
	wantArgs := []string{"inc", k, "2", "get", k, "", "set", k, "10", "inc", k, "-3", "del", k, ""}
	if bt.name != "counter-batch" || !slices.Equal(bt.args, wantArgs) {
		t.Fatalf("queued calls sent as %s %q, want counter-batch %q", bt.name, bt.args, wantArgs)
	}
	for _, p := range q {
		p.running(t)
	}
	bt.run()
	for i, w := range []int64{2, 2, 10, 7, 7} {
		if v, err := q[i].wait(t); v != w || err != nil {
			t.Fatalf("queued call %d: %d, %v; want %d", i, v, err, w)
		}
	}
	cb.run()
	if v, err := b.wait(t); v != 1 || err != nil {
		t.Fatalf("B: %d, %v", v, err)
	}
	s.none(t)
	// Idle again: the next call is sent at once, alone.
	p := start(func() (int64, error) { return c.Get(ctx, "k") })
	if call := s.next(t); call.name != "counter-get" {
		t.Fatalf("call after the batch sent as %s", call.name)
	} else {
		call.run()
	}
	if v, err := p.wait(t); v != 0 || err != nil {
		t.Fatalf("Get after Del: %d, %v", v, err)
	}
	c.Close(ctx)
}

func TestGroupCommitCancelledBeforeSendIsNeverSent(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c)
	cctx, cancel := context.WithCancel(ctx)
	gone := start(func() (int64, error) { return c.Inc(cctx, "k", 100) })
	waitQueued(t, c, 1)
	stay := start(func() (int64, error) { return c.Inc(ctx, "k", 5) })
	waitQueued(t, c, 2)
	cancel()
	_, err := gone.wait(t)
	if !errors.Is(err, distkit.ErrNotApplied) || !errors.Is(err, context.Canceled) || errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("call cancelled while queued: %v, want ErrNotApplied and context.Canceled", err)
	}
	waitQueued(t, c, 1)
	ca.run()
	a.wait(t)
	call := s.next(t)
	if call.name != "counter-inc" || !slices.Equal(call.args, []string{field("k"), "5"}) {
		t.Fatalf("after the withdrawal the queue went out as %s %q, want counter-inc [k 5] alone", call.name, call.args)
	}
	call.run()
	if v, err := stay.wait(t); v != 5 || err != nil {
		t.Fatalf("remaining call: %d, %v", v, err)
	}
	cb.run()
	b.wait(t)
	// A context already done: not sent either, on both paths.
	if _, err := c.Inc(cctx, "k", 1); !errors.Is(err, distkit.ErrNotApplied) {
		t.Fatalf("Inc with a done context: %v", err)
	}
	c.Close(ctx)
}

func TestGroupCommitCancelledAfterSendIsIndeterminate(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c)
	cctx, cancel := context.WithCancel(ctx)
	left := start(func() (int64, error) { return c.Inc(cctx, "k", 100) })
	waitQueued(t, c, 1)
	stay := start(func() (int64, error) { return c.Inc(ctx, "k", 5) })
	waitQueued(t, c, 2)
	ca.run()
	a.wait(t)
	bt := s.next(t)
	if bt.name != "counter-batch" {
		t.Fatalf("queue sent as %s", bt.name)
	}
	cancel()
	if _, err := left.wait(t); !errors.Is(err, distkit.ErrIndeterminate) || !errors.Is(err, context.Canceled) {
		t.Fatalf("call cancelled once sent: %v, want ErrIndeterminate", err)
	}
	stay.running(t)
	select {
	case <-bt.ctx.Done():
		t.Fatal("the batch was cancelled while a caller still waits")
	default:
	}
	bt.run()
	// The truthful outcome for the caller that stayed: the other's
	// increment did apply.
	if v, err := stay.wait(t); v != 105 || err != nil {
		t.Fatalf("remaining call: %d, %v; want 105", v, err)
	}
	cb.run()
	b.wait(t)

	// When every caller of a batch has left, the batch is cancelled.
	a, b, ca, cb = busy(t, s, c)
	cctx, cancel = context.WithCancel(ctx)
	l1 := start(func() (int64, error) { return c.Inc(cctx, "k", 1) })
	l2 := start(func() (int64, error) { return c.Get(cctx, "k") })
	waitQueued(t, c, 2)
	ca.run()
	a.wait(t)
	bt = s.next(t)
	cancel()
	for _, p := range []*pending{l1, l2} {
		if _, err := p.wait(t); !errors.Is(err, distkit.ErrIndeterminate) {
			t.Fatalf("call cancelled once sent: %v", err)
		}
	}
	select {
	case <-bt.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a batch nobody waits for was not cancelled")
	}
	cb.run()
	b.wait(t)
	c.Close(ctx)
}

func TestGroupCommitBatchFailureIsEveryOperations(t *testing.T) {
	boom := &backend.ScriptError{Script: "counter-batch", Msg: "ERR boom"}
	cases := []struct {
		name  string
		act   func(*stepCall)
		check func(error) bool
	}{
		{"not applied", func(c *stepCall) { c.failBefore(driver.NotApplied(errors.New("refused"))) },
			func(err error) bool {
				return errors.Is(err, distkit.ErrNotApplied) && !errors.Is(err, distkit.ErrIndeterminate)
			}},
		{"indeterminate", func(c *stepCall) { c.failAfter(driver.Indeterminate(errors.New("reset"))) },
			func(err error) bool {
				return errors.Is(err, distkit.ErrIndeterminate) && !errors.Is(err, distkit.ErrNotApplied)
			}},
		{"script stopped midway", func(c *stepCall) { c.failAfter(boom) },
			func(err error) bool {
				return errors.Is(err, distkit.ErrIndeterminate) && !errors.Is(err, backend.ErrScript)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStepper()
			c := newStepStrict(t, s)
			ctx := context.Background()
			a, b, ca, cb := busy(t, s, c)
			q1 := start(func() (int64, error) { return c.Inc(ctx, "k", 1) })
			waitQueued(t, c, 1)
			q2 := start(func() (int64, error) { return c.Get(ctx, "k") })
			waitQueued(t, c, 2)
			ca.run()
			a.wait(t)
			bt := s.next(t)
			tc.act(bt)
			for i, p := range []*pending{q1, q2} {
				if _, err := p.wait(t); !tc.check(err) {
					t.Fatalf("operation %d: %v", i, err)
				}
			}
			cb.run()
			b.wait(t)
			c.Close(ctx)
		})
	}
}

func TestGroupCommitOperationErrorsStayPerOperation(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	p := start(func() (int64, error) { return c.Set(ctx, "k", math.MaxInt64-1) })
	s.next(t).run()
	p.wait(t)
	a, b, ca, cb := busy(t, s, c)
	var q []*pending
	for i, f := range []func() (int64, error){
		func() (int64, error) { return c.Inc(ctx, "k", 1) },
		func() (int64, error) { return c.Inc(ctx, "k", 1) }, // overflows
		func() (int64, error) { return c.Inc(ctx, "other", 1) },
		func() (int64, error) { return c.Dec(ctx, "k", 2) },
	} {
		q = append(q, start(f))
		waitQueued(t, c, i+1)
	}
	ca.run()
	a.wait(t)
	if bt := s.next(t); bt.name != "counter-batch" {
		t.Fatalf("sent as %s", bt.name)
	} else {
		bt.run()
	}
	for i, w := range []int64{math.MaxInt64, 0, 1, math.MaxInt64 - 2} {
		v, err := q[i].wait(t)
		if i == 1 {
			if !errors.Is(err, distkit.ErrOverflow) || errors.Is(err, distkit.ErrIndeterminate) || errors.Is(err, distkit.ErrNotApplied) {
				t.Fatalf("overflowing call: %v, want ErrOverflow alone", err)
			}
			continue
		}
		if v != w || err != nil {
			t.Fatalf("call %d: %d, %v; want %d", i, v, err, w)
		}
	}
	cb.run()
	b.wait(t)
	c.Close(ctx)
}

func TestGroupCommitCloseCancelsBatchesInFlight(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c)
	q := start(func() (int64, error) { return c.Inc(ctx, "k", 1) })
	waitQueued(t, c, 1)
	ca.run()
	a.wait(t)
	bt := s.next(t)
	behind := start(func() (int64, error) { return c.Inc(ctx, "k", 1) }) // queued behind two calls in flight
	waitQueued(t, c, 1)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- c.Close(cctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after its context ended")
	}
	select {
	case <-bt.ctx.Done():
	default:
		t.Fatal("Close returned with its batch still running")
	}
	if _, err := q.wait(t); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("caller of a batch cut by Close: %v, want ErrIndeterminate", err)
	}
	if _, err := behind.wait(t); !errors.Is(err, distkit.ErrNotApplied) || errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("call still queued when Close gave up: %v, want ErrNotApplied (never sent)", err)
	}
	if _, err := c.Inc(ctx, "k", 1); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Inc after Close: %v", err)
	}
	cb.run()
	b.wait(t)
	s.none(t)
}

func TestGroupCommitCloseWaitsForCallsMade(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c)
	q := start(func() (int64, error) { return c.Inc(ctx, "k", 4) })
	waitQueued(t, c, 1)
	closed := make(chan error, 1)
	go func() { closed <- c.Close(ctx) }()
	select {
	case <-closed:
		t.Fatal("Close returned while calls were in flight")
	case <-time.After(20 * time.Millisecond):
	}
	ca.run()
	cb.run()
	a.wait(t)
	b.wait(t)
	s.next(t).run() // the queued call still goes out
	if v, err := q.wait(t); v != 4 || err != nil {
		t.Fatalf("queued call: %d, %v", v, err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

func TestGroupCommitDisabled(t *testing.T) {
	s := newStepper()
	c, err := counter.NewStrict(s, counter.Options{Prefix: "g", DisableGroupCommit: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ps []*pending
	var calls []*stepCall
	for i := range 4 {
		ps = append(ps, start(func() (int64, error) { return c.Inc(ctx, "k", int64(i+1)) }))
		calls = append(calls, s.next(t)) // every call goes out at once, alone
	}
	for _, call := range calls {
		if call.name != "counter-inc" {
			t.Fatalf("sent as %s", call.name)
		}
		call.run()
	}
	for _, p := range ps {
		if _, err := p.wait(t); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(ctx)
}

// counting counts script calls by name.
type counting struct {
	backend.Backend
	mu    sync.Mutex
	calls map[string]int
	ops   int // operations carried by batches
}

func (b *counting) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	b.mu.Lock()
	b.calls[s.Name()]++
	if s.Name() == "counter-batch" {
		b.ops += len(args) / 3
	}
	b.mu.Unlock()
	return b.Backend.EvalScript(ctx, s, keys, args...)
}

// TestGroupCommitLinearizable: many goroutines increment one key (each by
// a delta of its own, so that every result names one increment) and read
// it, through a backend slow enough that batches form. The results must be
// one sequential history that respects real time: the increments, ordered
// by result, each add their delta to the one before; a call that returned
// before another began comes before it; a read sees a value of that
// history.
func TestGroupCommitLinearizable(t *testing.T) {
	mem := memory.New(memory.Options{})
	mem.Latency(300 * time.Microsecond)
	b := &counting{Backend: mem, calls: map[string]int{}}
	c, err := counter.NewStrict(b, counter.Options{Prefix: "lin"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	type rec struct {
		inc        bool
		delta, v   int64
		call, retn int64
	}
	const workers, each = 24, 40
	var mu sync.Mutex
	var hist []rec
	var seq atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 21))
			for i := range each {
				var e rec
				e.call = int64(time.Since(t0))
				var err error
				if r.IntN(3) > 0 {
					e.inc, e.delta = true, int64(w*each+i+1)
					e.v, err = c.Inc(ctx, "k", e.delta)
				} else {
					e.v, err = c.Get(ctx, "k")
				}
				e.retn = int64(time.Since(t0))
				seq.Add(1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				hist = append(hist, e)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.Close(ctx)
	if t.Failed() {
		return
	}
	// The increments, ordered by result, form one chain from 0.
	var incs []rec
	pos := map[int64]int{0: 0} // value → position in the chain
	for _, e := range hist {
		if e.inc {
			incs = append(incs, e)
		}
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].v < incs[j].v })
	prev := int64(0)
	for i, e := range incs {
		if e.v-e.delta != prev {
			t.Fatalf("increment %d by %d returned %d, but the one before it left %d", i, e.delta, e.v, prev)
		}
		prev = e.v
		pos[e.v] = i + 1
	}
	// Real time: whatever returned before a call began is not after it.
	for _, e := range hist {
		p, ok := pos[e.v]
		if !ok {
			t.Fatalf("a read returned %d, a value no prefix of the increments gives", e.v)
		}
		for _, f := range hist {
			if f.retn < e.call && pos[f.v] > p {
				t.Fatalf("a call that returned %d began after one that returned %d had returned", e.v, f.v)
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Logf("%d operations: %d batches carrying %d operations, %v", len(hist), b.calls["counter-batch"], b.ops, b.calls)
	if b.calls["counter-batch"] == 0 || b.ops < 2*b.calls["counter-batch"] {
		t.Fatalf("no batching happened (%v): the test proves nothing", b.calls)
	}
}
