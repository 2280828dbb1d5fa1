package conformance

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
)

// slowBatches delays every script call a little, so that concurrent
// Strict calls queue up and go out in group-commit batches on every
// backend, and counts the batches.
type slowBatches struct {
	backend.Backend
	mu      sync.Mutex
	batches int
	ops     int
}

func (b *slowBatches) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == "counter-batch" {
		b.mu.Lock()
		b.batches++
		b.ops += len(args) / 3
		b.mu.Unlock()
	}
	time.Sleep(500 * time.Microsecond)
	return b.Backend.EvalScript(ctx, s, keys, args...)
}

// testStrictGroupCommit: concurrent Strict calls that share batches give
// what one call per operation gives: increments (each by a delta of its
// own) form one chain from 0 ordered by result, reads see values of that
// chain, increments past the int64 limit fail alone with ErrOverflow while
// the others apply, and a field that is not an integer fails its own
// calls only.
func testStrictGroupCommit(t *testing.T, h Harness) {
	ctx := context.Background()
	sb := &slowBatches{Backend: open(t, h)}
	p := prefix(t)
	c := newStrict(t, sb, p)
	n, err := c.Set(ctx, "edge", math.MaxInt64-10)
	want(t, "Set edge", n, err, math.MaxInt64-10)
	if _, err := sb.Backend.EvalScript(ctx, testkit.HSetScript, []string{keyspace.CounterHash(p)}, keyspace.CounterField("text"), "not a number"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 12
	type rec struct {
		inc      bool
		delta, v int64
	}
	var mu sync.Mutex
	var hist []rec
	var edgeOK, edgeOverflow, textFailed int
	var edgeVals []int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				var e rec
				var err error
				if (w+i)%3 == 0 {
					e.v, err = c.Get(ctx, "hot")
				} else {
					e.inc, e.delta = true, int64(w*each+i+1)
					e.v, err = c.Inc(ctx, "hot", e.delta)
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				hist = append(hist, e)
				mu.Unlock()
				switch i % 4 {
				case 0:
					v, err := c.Inc(ctx, "edge", 1)
					mu.Lock()
					switch {
					case err == nil:
						edgeOK++
						edgeVals = append(edgeVals, v)
					case errors.Is(err, distkit.ErrOverflow):
						edgeOverflow++
					default:
						errs <- err
					}
					mu.Unlock()
				case 2:
					_, err := c.Inc(ctx, "text", 1)
					if !errors.Is(err, backend.ErrScript) || errors.Is(err, distkit.ErrIndeterminate) {
						errs <- err
					}
					mu.Lock()
					textFailed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("unexpected outcome: %v", err)
	}
	var incs []rec
	seen := map[int64]bool{0: true}
	for _, e := range hist {
		if e.inc {
			incs = append(incs, e)
		}
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].v < incs[j].v })
	prev := int64(0)
	for _, e := range incs {
		if e.v-e.delta != prev {
			t.Fatalf("an increment by %d returned %d, but the one before it left %d", e.delta, e.v, prev)
		}
		prev = e.v
		seen[e.v] = true
	}
	for _, e := range hist {
		if !seen[e.v] {
			t.Fatalf("a read returned %d, which no prefix of the increments gives", e.v)
		}
	}
	n, err = c.Get(ctx, "hot")
	want(t, "hot", n, err, prev)
	sort.Slice(edgeVals, func(i, j int) bool { return edgeVals[i] < edgeVals[j] })
	if edgeOK != 10 || edgeOverflow != workers*each/4-10 || edgeVals[0] != math.MaxInt64-9 || edgeVals[9] != math.MaxInt64 {
		t.Fatalf("edge: %d applied %v, %d overflowed; want 10 applied up to MaxInt64, the rest overflowed", edgeOK, edgeVals, edgeOverflow)
	}
	n, err = c.Get(ctx, "edge")
	want(t, "edge", n, err, math.MaxInt64)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	t.Logf("%d batches carried %d operations; %d calls on a non-integer failed alone", sb.batches, sb.ops, textFailed)
	if sb.batches == 0 || sb.ops < 2*sb.batches {
		t.Fatalf("no batching happened (%d batches, %d operations): the test proves nothing", sb.batches, sb.ops)
	}
}
