package counter_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

// Review 21: Close whose context ends while the two calls in flight are
// direct ones (no batch, so no flusher) must still settle the calls queued
// behind them: they were never sent and Close promised they never will be
// (ErrNotApplied). Before, such a call stayed blocked after Close returned,
// for as long as the unrelated calls in flight took (for ever on a hung
// backend with context.Background()).
func TestReview21_CloseSettlesCallsQueuedBehindDirectCalls(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a, b, ca, cb := busy(t, s, c) // two direct calls in flight, held
	q := start(func() (int64, error) { return c.Inc(ctx, "k", 1) })
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
	case <-q.done:
		if !errors.Is(q.err, distkit.ErrNotApplied) || errors.Is(q.err, distkit.ErrIndeterminate) {
			t.Errorf("call queued when Close gave up: %d, %v; want ErrNotApplied (never sent)", q.v, q.err)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("call queued when Close gave up still blocked 2 s after Close returned")
	}
	ca.run()
	cb.run()
	a.wait(t)
	b.wait(t)
	if _, err := q.wait(t); !errors.Is(err, distkit.ErrNotApplied) {
		t.Errorf("queued call once the calls in flight returned: %v", err)
	}
	s.none(t) // never sent
}

// Review 21: two Close calls made while a call is in flight both return
// once it does. Before, the second replaced the first's wake-up channel,
// so the first waited for its context (for ever with Background).
func TestReview21_ConcurrentClosesBothReturn(t *testing.T) {
	s := newStepper()
	c := newStepStrict(t, s)
	ctx := context.Background()
	a := start(func() (int64, error) { return c.Inc(ctx, "x", 1) })
	ca := s.next(t)
	closed := make(chan error, 2)
	go func() { closed <- c.Close(ctx) }()
	go func() { closed <- c.Close(ctx) }()
	// Both Closes wait for the call in flight; give them time to begin.
	time.Sleep(50 * time.Millisecond)
	ca.run()
	if v, err := a.wait(t); v != 1 || err != nil {
		t.Fatalf("call in flight: %d, %v", v, err)
	}
	for i := range 2 {
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Close %d of 2 did not return after the call in flight did", i+1)
		}
	}
}

// Review 21: 256 goroutines on one key and 256 on many keys, each call with
// a deadline drawn from none to shorter than a round trip, batches whose
// reply is lost now and then, and Close racing the calls: no call hangs,
// every error is ErrNotApplied, ErrClosed or ErrIndeterminate, and each key's final
// value lies between what its calls reported applied and that plus the
// indeterminate ones (a call reported not applied was not).
func TestReview21_StressDeadlinesLostRepliesClose(t *testing.T) {
	for _, keys := range []int{1, 64} {
		mem := memory.New(memory.Options{})
		mem.Latency(200 * time.Microsecond)
		c, err := counter.NewStrict(mem, counter.Options{Prefix: "st"})
		if err != nil {
			t.Fatal(err)
		}
		const workers, each = 256, 20
		type tally struct{ n, ok, ind int64 }
		var mu sync.Mutex
		got := map[string]*tally{}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := rand.New(rand.NewPCG(uint64(w), uint64(keys)))
				for i := range each {
					key := "k" + strconv.Itoa(r.IntN(keys))
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					switch r.IntN(3) {
					case 0:
						ctx, cancel = context.WithTimeout(ctx, time.Duration(r.IntN(400))*time.Microsecond)
					case 1:
						ctx, cancel = context.WithCancel(ctx)
						if r.IntN(2) == 0 {
							cancel()
						}
					}
					if w%64 == 0 && i == 5 {
						mem.FailAfterApply(1) // a reply lost after the script ran
					}
					_, err := c.Inc(ctx, key, 1)
					cancel()
					mu.Lock()
					tl := got[key]
					if tl == nil {
						tl = &tally{}
						got[key] = tl
					}
					tl.n++
					switch {
					case err == nil:
						tl.ok++
					case errors.Is(err, distkit.ErrIndeterminate):
						tl.ind++
					case errors.Is(err, distkit.ErrNotApplied), errors.Is(err, distkit.ErrClosed):
					default:
						t.Errorf("Inc: %v (neither applied, not applied nor indeterminate)", err)
					}
					mu.Unlock()
				}
			}()
		}
		close(start)
		// Close races the calls once half of them returned.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			mu.Lock()
			n := 0
			for _, tl := range got {
				n += int(tl.n)
			}
			mu.Unlock()
			if n >= workers*each/2 || time.Now().After(deadline) {
				break
			}
		}
		cctx, ccancel := context.WithTimeout(context.Background(), time.Millisecond)
		c.Close(cctx)
		ccancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("keys=%d: calls still blocked 20 s after Close", keys)
		}
		mem.FailAfterApply(0)
		mem.Latency(0)
		plain, err := counter.NewStrict(mem, counter.Options{Prefix: "st", DisableGroupCommit: true})
		if err != nil {
			t.Fatal(err)
		}
		var ok, ind int64
		for _, tl := range got {
			ok, ind = ok+tl.ok, ind+tl.ind
		}
		t.Logf("keys=%d: %d applied, %d indeterminate", keys, ok, ind)
		for key, tl := range got {
			v, err := plain.Get(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if v < tl.ok || v > tl.ok+tl.ind {
				t.Errorf("keys=%d %s = %d; calls reported %d applied and %d indeterminate", keys, key, v, tl.ok, tl.ind)
			}
		}
	}
}
