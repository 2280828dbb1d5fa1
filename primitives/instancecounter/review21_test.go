package instancecounter_test

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
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Review 21: Strict's group commit with 256 goroutines on one key and on
// many, deadlines down to below a round trip, cancellations, replies lost
// after the script ran, and Close racing the calls (KeepSlicesOnClose, so
// the slices stay readable): no call hangs, every error is not applied,
// closed or indeterminate, and each key's slice lies between what its
// calls reported applied and that plus the indeterminate ones.
func TestReview21_ICStressDeadlinesLostRepliesClose(t *testing.T) {
	for _, keys := range []int{1, 32} {
		mem := memory.New(memory.Options{})
		c, err := instancecounter.NewStrict(mem.Connect(), instancecounter.Options{Prefix: "st", InstanceID: "a", DeadAfter: time.Minute, KeepSlicesOnClose: true})
		if err != nil {
			t.Fatal(err)
		}
		mem.Latency(200 * time.Microsecond)
		const workers, each = 256, 10
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
						mem.FailAfterApply(1)
					}
					_, _, err := c.Inc(ctx, key, 1)
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
						t.Errorf("Inc: %v", err)
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
		// Close may not have finished (its ctx was short): close again.
		if err := c.Close(context.Background()); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		other, err := instancecounter.NewStrict(mem.Connect(), instancecounter.Options{Prefix: "st", InstanceID: "b", DeadAfter: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		var ok, ind int64
		for _, tl := range got {
			ok, ind = ok+tl.ok, ind+tl.ind
		}
		t.Logf("keys=%d: %d applied, %d indeterminate", keys, ok, ind)
		for key, tl := range got {
			v, _, err := other.Get(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			if v < tl.ok || v > tl.ok+tl.ind {
				t.Errorf("keys=%d %s = %d; calls reported %d applied and %d indeterminate", keys, key, v, tl.ok, tl.ind)
			}
		}
		other.Close(context.Background())
		mem.Close()
	}
}
