package instancecounter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Issue 14: a key must never be poisoned. Once this instance's slice of a
// key is back to 0 (DelOnInstance, Set, Del), a small Inc fits in int64
// and must be accepted, whatever deltas the Lax flushed before.
func TestReview14_IncAfterOverwriteNotPoisoned(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"DelOnInstance", "Del", "Set", "SetOnInstance"} {
		t.Run(op, func(t *testing.T) {
			b := memory.New(memory.Options{})
			l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(ctx)
			if _, _, err := l.Inc(ctx, "k", math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			switch op {
			case "DelOnInstance":
				_, _, err = l.DelOnInstance(ctx, "k")
			case "Del":
				_, _, err = l.Del(ctx, "k")
			case "Set":
				_, _, err = l.Set(ctx, "k", 0)
			case "SetOnInstance":
				_, _, err = l.SetOnInstance(ctx, "k", 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			c, m, err := l.Get(ctx, "k")
			if err != nil || c != 0 || m != 0 {
				t.Fatalf("Get after %s = %d, %d, %v; want 0, 0", op, c, m, err)
			}
			c, m, err = l.Inc(ctx, "k", 1)
			if err != nil {
				t.Fatalf("Inc(k, 1) with cumulative and slice 0 after %s: %v (the key is poisoned)", op, err)
			}
			if c != 1 || m != 1 {
				t.Fatalf("Inc view = %d, %d; want 1, 1", c, m)
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if c, m, err := l.Get(ctx, "k"); err != nil || c != 1 || m != 1 {
				t.Fatalf("Get = %d, %d, %v; want 1, 1", c, m, err)
			}
		})
	}
}

// Eviction racing Inc on many goroutines: slices that go back to 0 are
// evicted while Incs hold their entries; no acknowledged delta may be lost
// or doubled, and Pending drains.
func TestReview14_EvictionRacingIncLosesNothing(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a",
		FlushInterval: time.Millisecond, IdleAfter: time.Millisecond, DeadAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	const workers, keys = 16, 512
	sums := make([]atomic.Int64, keys)
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("k%d", i)
	}
	deadline := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				k := (i*7 + w) % keys
				d := int64(1 - 2*(i/keys%2)) // up, then back down: slices return to 0 and go idle
				if _, _, err := l.Inc(ctx, names[k], d); err != nil {
					t.Error(err)
					return
				}
				sums[k].Add(d)
				if i%64 == 0 {
					time.Sleep(time.Duration(i%3) * time.Millisecond)
				}
			}
		}(w)
	}
	wg.Wait()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if p := l.Pending(); len(p) != 0 {
		t.Fatalf("Pending after Flush: %v", p)
	}
	r, err := instancecounter.NewStrict(b.Connect(), instancecounter.Options{Prefix: "t", InstanceID: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	for i, k := range names {
		c, _, err := r.Get(ctx, k)
		if err != nil || c != sums[i].Load() {
			t.Errorf("%s: cumulative %d, %v; acknowledged %d", k, c, err, sums[i].Load())
		}
		if lc, lm, err := l.Get(ctx, k); err != nil || lc != sums[i].Load() || lm != sums[i].Load() {
			t.Errorf("%s: Lax Get %d, %d, %v; want %d, %d", k, lc, lm, err, sums[i].Load(), sums[i].Load())
		}
	}
}

// A key whose entry is replaced while it has a pending delta (its sum of
// accepted deltas would leave int64) flushes both entries' deltas; Get and
// the next Inc see the value of both.
func TestReview14_RetiredEntryViews(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, _, err := l.Inc(ctx, "k", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.DelOnInstance(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if c, m, err := l.Inc(ctx, "k", -5); err != nil || c != -5 || m != -5 {
		t.Fatalf("Inc -5 = %d, %d, %v", c, m, err)
	}
	if c, m, err := l.Inc(ctx, "k", 10); err != nil || c != 5 || m != 5 {
		t.Fatalf("Inc +10 = %d, %d, %v; want 5, 5", c, m, err)
	}
	if p := l.Pending(); p["k"] != 5 {
		t.Fatalf("Pending = %v; want k: 5", p)
	}
	if c, m, err := l.Get(ctx, "k"); err != nil || c != 5 || m != 5 {
		t.Fatalf("Get = %d, %d, %v; want 5, 5", c, m, err)
	}
	if c, m, err := l.Inc(ctx, "k", 1); err != nil || c != 6 || m != 6 {
		t.Fatalf("Inc +1 = %d, %d, %v; want 6, 6", c, m, err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cumulative(t, b); got != 6 {
		t.Fatalf("cumulative = %d, want 6", got)
	}
}

// As above, with the new entry's own deltas cancelling out: the key still
// has a pending delta (the replaced entry's), which Get must flush first.
func TestReview14_RetiredEntryPendingFlushedByGet(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, _, err := l.Inc(ctx, "k", math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.DelOnInstance(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []int64{-5, 10, -10} {
		if _, _, err := l.Inc(ctx, "k", d); err != nil {
			t.Fatal(err)
		}
	}
	if p := l.Pending(); p["k"] != -5 {
		t.Fatalf("Pending = %v; want k: -5", p)
	}
	if c, m, err := l.Get(ctx, "k"); err != nil || c != -5 || m != -5 {
		t.Fatalf("Get = %d, %d, %v; want -5, -5 (the pending delta flushed first)", c, m, err)
	}
}

// Close honours its context within a few hundred ms while a flush hangs on
// a connection that ignores deadlines (testkit.Held), and Pending answers
// at once meanwhile; once the connection answers, the deltas are applied
// once and every goroutine ends (goleak in TestMain).
func TestReview14_CloseWithinCtxWhileFlushHeld(t *testing.T) {
	ctx := context.Background()
	mb := memory.New(memory.Options{})
	f := testkit.NewFaulty(mb)
	l, err := instancecounter.NewLax(f, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(ctx, "k"); err != nil { // registered
		t.Fatal(err)
	}
	hang := f.HangScript(icscript.Flush.Name())
	defer hang.Release()
	l.Inc(ctx, "k", 3)
	select {
	case <-hang.Started():
	case <-time.After(5 * time.Second):
		t.Fatal("the background flush did not start")
	}
	start := time.Now()
	if p := l.Pending(); p["k"] != 3 {
		t.Errorf("Pending = %v", p)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Pending took %v while a flush hung", d)
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = l.Close(cctx)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close with a 100 ms context took %v while a flush hung", d)
	}
	var ue *instancecounter.UnflushedError
	if !errors.As(err, &ue) || ue.Pending["k"] != 3 {
		t.Errorf("Close = %v; want an UnflushedError with k: 3", err)
	}
	hang.Release()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := cumulative(t, mb); got != 0 { // Close removed the slice after flushing it
		t.Fatalf("cumulative after Close = %d, want 0 (slice removed)", got)
	}
}

// 256 goroutines Inc one key while the flusher runs: the views Inc
// returns (cumulative, slice) are exactly 1…N, each once.
func TestReview14_ViewsExactUnder256Goroutines(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	const workers, each = 256, 50
	seen := make([]atomic.Int32, workers*each+1)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c, m, err := l.Inc(ctx, "k", 1)
				if err != nil || c != m || c < 1 || c > workers*each {
					t.Errorf("Inc = %d, %d, %v", c, m, err)
					return
				}
				seen[c].Add(1)
			}
		}()
	}
	wg.Wait()
	for v := 1; v <= workers*each; v++ {
		if n := seen[v].Load(); n != 1 {
			t.Fatalf("view %d returned %d times", v, n)
		}
	}
	if c, m, err := l.Get(ctx, "k"); err != nil || c != workers*each || m != workers*each {
		t.Fatalf("Get = %d, %d, %v", c, m, err)
	}
}

// One key must not block every key: a batch whose reply was lost is
// resent; if meanwhile a value that is not an integer was written into one
// of its keys, the resend's reply carries it for an item the first send
// applied. The other keys must keep flushing and Close succeed.
func TestReview14_ResendWithNonIntegerValueDoesNotBlockAll(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Hour,
		KeepSlicesOnClose: true}) // removing the slices would trip over the bad value: not the point here
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(ctx, "x"); err != nil { // registered
		t.Fatal(err)
	}
	l.Inc(ctx, "a", 1)
	l.Inc(ctx, "k", 1)
	b.FailAfterApply(1) // applied, reply lost
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("Flush = %v; want ErrIndeterminate", err)
	}
	if _, err := b.EvalScript(ctx, testkit.HSetScript, []string{keyspace.InstanceCounter("t").Total},
		keyspace.InstanceKeyField("k"), "not a number"); err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, "other", 5)
	if err := l.Flush(ctx); err != nil {
		t.Errorf("Flush after the resend: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// orderer holds the Lax's Op calls until a flush has executed, and holds
// that flush's reply until released: the flush is applied on the server
// before the Op, its outcome recorded after.
type orderer struct {
	backend.Backend
	armed        atomic.Bool
	flushRan     chan struct{}
	releaseFlush chan struct{}
	once         sync.Once
}

func (o *orderer) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if !o.armed.Load() {
		return o.Backend.EvalScript(ctx, s, keys, args...)
	}
	switch s.Name() {
	case icscript.Op.Name():
		select { // a flush that can run meanwhile runs first
		case <-o.flushRan:
		case <-time.After(300 * time.Millisecond):
		}
	case icscript.Flush.Name():
		v, err := o.Backend.EvalScript(ctx, s, keys, args...)
		first := false
		o.once.Do(func() { first = true; close(o.flushRan) })
		if first {
			<-o.releaseFlush
		}
		return v, err
	}
	return o.Backend.EvalScript(ctx, s, keys, args...)
}

// Del supersedes a refused delta (Lax.Failed doc). When a background
// retry of that delta is applied on the server just before Del's own
// script (Del runs it outside the flush token) and its reply is recorded
// just after Del superseded the delta, the delta counted both as dropped
// and as applied: Pending goes negative and the next flush sends it back.
func TestReview14_DelRacingRetryOfRefusedDelta(t *testing.T) {
	ctx := context.Background()
	mb := memory.New(memory.Options{})
	o := &orderer{Backend: mb, flushRan: make(chan struct{}), releaseFlush: make(chan struct{})}
	other, err := instancecounter.NewStrict(mb.Connect(), instancecounter.Options{Prefix: "t", InstanceID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if _, _, err := other.Set(ctx, "k", math.MaxInt64-5); err != nil {
		t.Fatal(err)
	}
	l, err := instancecounter.NewLax(o, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, _, err := l.Get(ctx, "x"); err != nil { // registered
		t.Fatal(err)
	}
	l.Inc(ctx, "k", 10)
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
		t.Fatalf("Flush = %v; want k refused", err)
	}
	if _, _, err := other.Dec(ctx, "k", 100); err != nil { // the cause goes away
		t.Fatal(err)
	}
	o.armed.Store(true)
	done := make(chan error, 1)
	go func() {
		_, _, err := l.Del(ctx, "k") // its flush-first skips k (backoff); its Op waits for the retry
		done <- err
	}()
	var derr error
	select {
	case derr = <-done:
	case <-time.After(5 * time.Second):
		close(o.releaseFlush)
		t.Fatal("Del did not return")
	}
	close(o.releaseFlush)
	if derr != nil {
		t.Fatal(derr)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if p, f := l.Pending(), l.Failed(); len(p) != 0 || len(f) != 0 {
		t.Errorf("Pending %v, Failed %v after Del and a flush", p, f)
	}
	if c, _, err := other.Get(ctx, "k"); err != nil || c != 0 {
		t.Fatalf("cumulative after Del = %d, %v; want 0", c, err)
	}
}
