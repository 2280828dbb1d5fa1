package counter_test

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
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// A key's refused delta is superseded by Set, Del and Clear (Lax docs),
// including the part held by an entry the Lax retired (its sum of
// accepted deltas left int64 while the view stayed in range): after the
// overwrite, that delta must neither stay in Failed/Pending nor be applied
// later on top of the overwritten value.
func TestReview14_OverwriteSupersedesRetiredRefusedDelta(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"Set", "Del", "Clear"} {
		t.Run(op, func(t *testing.T) {
			b := memory.New(memory.Options{})
			s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
			l := newLax(t, b, time.Hour)
			defer l.Close(ctx)
			if _, err := s.Set(ctx, "k", -math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			if v, err := l.Get(ctx, "k"); err != nil || v != -math.MaxInt64 {
				t.Fatalf("Get = %d, %v", v, err)
			}
			if v, err := l.Inc(ctx, "k", math.MaxInt64); err != nil || v != 0 {
				t.Fatalf("Inc = %d, %v", v, err)
			}
			// The entry's sum would leave int64; the view (1) does not.
			if v, err := l.Inc(ctx, "k", 1); err != nil || v != 1 {
				t.Fatalf("Inc = %d, %v", v, err)
			}
			// Another process makes room for the +1 only.
			if _, err := s.Set(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
				t.Fatalf("Flush = %v; want the +MaxInt64 refused", err)
			}
			switch op {
			case "Set":
				if _, err := l.Set(ctx, "k", -5); err != nil {
					t.Fatal(err)
				}
			case "Del":
				if _, err := l.Del(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			case "Clear":
				if err := l.Clear(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if f, p := l.Failed(), l.Pending(); len(f) != 0 || len(p) != 0 {
				t.Errorf("after %s: Failed %v, Pending %v; want both empty (the refused delta is superseded)", op, f, p)
			}
			if err := l.Flush(ctx); err != nil {
				t.Errorf("Flush after %s: %v", op, err)
			}
			want := int64(0)
			if op == "Set" {
				want = -5
			}
			if v, err := s.Get(ctx, "k"); err != nil || v != want {
				t.Fatalf("remote after %s and a flush = %d, %v; want %d (the superseded delta applied)", op, v, err, want)
			}
		})
	}
}

// Eviction racing Inc on many goroutines and keys: an entry evicted while
// an Inc holds it must never lose the delta. Every acknowledged delta is
// in the backend after Close, exactly once.
func TestReview14_EvictionRacingIncLosesNothing(t *testing.T) {
	for _, keys := range []int{64, 4096} {
		t.Run(fmt.Sprint(keys, "keys"), func(t *testing.T) { evictionRacingInc(t, keys) })
	}
}

func evictionRacingInc(t *testing.T, keys int) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := counter.NewLax(b, counter.Options{Prefix: "t", AllowedLag: time.Millisecond, IdleAfter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const workers = 32
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
				d := int64(i%5 - 1)
				if _, err := l.Inc(ctx, names[k], d); err != nil {
					t.Error(err)
					return
				}
				sums[k].Add(d)
				if i%64 == 0 {
					time.Sleep(time.Duration(i%3) * time.Millisecond) // let keys go idle
				}
			}
		}(w)
	}
	wg.Wait()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
	vals, err := s.GetAll(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for i := range names {
		if vals[i] != sums[i].Load() {
			t.Errorf("%s: remote %d, acknowledged %d", names[i], vals[i], sums[i].Load())
		}
	}
}

// Set, Del, Clear and GetAll "flush pending deltas, then act like
// Strict": every delta acknowledged before the call counts, including a
// pending amount beyond the int64 range (it takes two batches). None of
// it may be applied after the overwrite, nor missed by a read.
func TestReview14_FlushFirstSendsAmountsBeyondInt64(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"GetAll", "Set", "Del", "Clear"} {
		t.Run(op, func(t *testing.T) {
			b := memory.New(memory.Options{})
			s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
			l := newLax(t, b, time.Hour)
			defer l.Close(ctx)
			if _, err := l.Inc(ctx, "k", -math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			// Pending: 2 × MaxInt64 - 1 (view -MaxInt64 → MaxInt64 - 1).
			for _, d := range []int64{math.MaxInt64, math.MaxInt64 - 1} {
				if _, err := l.Inc(ctx, "k", d); err != nil {
					t.Fatal(err)
				}
			}
			want := int64(0)
			switch op {
			case "GetAll":
				v, err := l.GetAll(ctx, "k")
				if err != nil || v[0] != math.MaxInt64-1 {
					t.Fatalf("GetAll = %v, %v; want [%d]", v, err, int64(math.MaxInt64-1))
				}
				want = math.MaxInt64 - 1
			case "Set":
				if _, err := l.Set(ctx, "k", -5); err != nil {
					t.Fatal(err)
				}
				want = -5
			case "Del":
				if _, err := l.Del(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			case "Clear":
				if err := l.Clear(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if p := l.Pending(); len(p) != 0 {
				t.Errorf("Pending after %s = %v; want empty", op, p)
			}
			if err := l.Flush(ctx); err != nil {
				t.Errorf("Flush after %s: %v", op, err)
			}
			if v, err := s.Get(ctx, "k"); err != nil || v != want {
				t.Fatalf("remote after %s and a flush = %d, %v; want %d", op, v, err, want)
			}
		})
	}
}

// "Calls made after Close began fail with distkit.ErrClosed" (Lax.Close):
// Flush and Del too, as on instancecounter.Lax.
func TestReview14_FlushAfterCloseIsClosed(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrClosed) {
		t.Errorf("Flush after Close: %v, want ErrClosed", err)
	}
	if _, err := l.Del(ctx, "k"); !errors.Is(err, distkit.ErrClosed) {
		t.Errorf("Del after Close: %v, want ErrClosed", err)
	}
}

// Get during an outage returns the local view with ErrStale when ctx ends
// (Lax.Get doc), also when a batch with an unknown outcome must be resent
// first and the connection stopped answering (a client that does not
// honour deadlines: testkit.Held). Flush and Close already return at ctx
// end in that case; Get hung until the connection answered.
func TestReview14_GetReturnsWithinCtxWhileResendHangs(t *testing.T) {
	ctx := context.Background()
	mb := memory.New(memory.Options{})
	f := testkit.NewFaulty(mb)
	l, err := counter.NewLax(f, counter.Options{Prefix: "t", AllowedLag: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	l.Inc(ctx, "k", 2)
	mb.FailAfterApply(1) // applied, reply lost: the batch stays in flight
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("Flush = %v; want ErrIndeterminate", err)
	}
	hang := f.HangScript(counterscript.Flush.Name())
	defer hang.Release()
	type res struct {
		v   int64
		err error
	}
	got := make(chan res, 1)
	start := time.Now()
	go func() {
		gctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		v, err := l.Get(gctx, "k")
		got <- res{v, err}
	}()
	select {
	case r := <-got:
		if r.v != 2 || !errors.Is(r.err, distkit.ErrStale) {
			t.Errorf("Get = %d, %v; want the local view 2 and ErrStale", r.v, r.err)
		}
		t.Logf("Get returned after %v", time.Since(start))
	case <-time.After(2 * time.Second):
		t.Errorf("Get with a 50 ms context did not return within 2 s while the resend hung")
		hang.Release()
		<-got
	}
	hang.Release()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Get(ctx, "k"); err != nil || v != 2 {
		t.Fatalf("Get after the outage = %d, %v; want 2 (applied once)", v, err)
	}
}

// Close racing Inc and Flush on many goroutines: when Close returns nil,
// the backend holds every acknowledged delta, plus at most the deltas of
// Incs that reported the race (ErrClosed + ErrIndeterminate).
func TestReview14_CloseRacingIncAndFlush(t *testing.T) {
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		b := memory.New(memory.Options{})
		l, err := counter.NewLax(b, counter.Options{Prefix: "t", AllowedLag: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var acked, maybe atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					if w == 0 {
						l.Flush(ctx)
					}
					_, err := l.Inc(ctx, fmt.Sprint("k", i%8), 1)
					switch {
					case err == nil:
						acked.Add(1)
					case errors.Is(err, distkit.ErrIndeterminate):
						maybe.Add(1)
					case errors.Is(err, distkit.ErrClosed):
						return
					default:
						t.Error(err)
						return
					}
					select {
					case <-stop:
						return
					default:
					}
				}
			}(w)
		}
		time.Sleep(20 * time.Millisecond)
		cerr := l.Close(ctx)
		close(stop)
		wg.Wait()
		if cerr != nil {
			t.Fatalf("Close: %v", cerr)
		}
		s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
		var total int64
		for i := 0; i < 8; i++ {
			v, err := s.Get(ctx, fmt.Sprint("k", i))
			if err != nil {
				t.Fatal(err)
			}
			total += v
		}
		if total < acked.Load() || total > acked.Load()+maybe.Load() {
			t.Fatalf("remote total %d; acknowledged %d, indeterminate %d", total, acked.Load(), maybe.Load())
		}
	}
}

// 256 goroutines Inc one key while the flusher runs: with no other
// writer, the views Inc returns are exactly 1…N (each once: the view is
// remote-as-last-seen + pending, which this process's own flushed deltas
// do not change), and the backend ends at N.
func TestReview14_ViewsExactUnder256Goroutines(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := counter.NewLax(b, counter.Options{Prefix: "t", AllowedLag: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	const workers, each = 256, 100
	seen := make([]atomic.Int32, workers*each+1)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				v, err := l.Inc(ctx, "k", 1)
				if err != nil || v < 1 || v > workers*each {
					t.Errorf("Inc = %d, %v", v, err)
					return
				}
				seen[v].Add(1)
			}
		}()
	}
	wg.Wait()
	for v := 1; v <= workers*each; v++ {
		if n := seen[v].Load(); n != 1 {
			t.Fatalf("view %d returned %d times", v, n)
		}
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := l.Get(ctx, "k"); err != nil || v != workers*each {
		t.Fatalf("Get = %d, %v", v, err)
	}
}

// One key must not block every key (issue 14). A batch whose reply was
// lost is resent; if meanwhile another process wrote a value that is not
// an integer into one of its keys, the resend's reply carries that value
// for an item the first send applied. That key is no reason to keep the
// whole batch in flight forever: the others must flush, Close succeed.
func TestReview14_ResendWithNonIntegerValueDoesNotBlockAll(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l := newLax(t, b, time.Hour)
	l.Inc(ctx, "a", 1)
	l.Inc(ctx, "k", 1)
	b.FailAfterApply(1) // applied, reply lost
	if err := l.Flush(ctx); !errors.Is(err, distkit.ErrIndeterminate) {
		t.Fatalf("Flush = %v; want ErrIndeterminate", err)
	}
	if _, err := b.EvalScript(ctx, testkit.HSetScript, []string{keyspace.CounterHash("t")}, keyspace.CounterField("k"), "not a number"); err != nil {
		t.Fatal(err)
	}
	l.Inc(ctx, "other", 5)
	if err := l.Flush(ctx); err != nil {
		t.Errorf("Flush after the resend: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := l.Close(cctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
	if v, err := s.GetAll(ctx, "a", "other"); err != nil || v[0] != 1 || v[1] != 5 {
		t.Fatalf("remote a, other = %v, %v; want [1 5]", v, err)
	}
}
