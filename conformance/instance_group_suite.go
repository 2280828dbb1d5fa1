package conformance

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// slowICBatches delays every script call a little, so that concurrent
// instance-counter calls queue up and go out in group-commit batches on
// every backend, and counts the batches.
type slowICBatches struct {
	backend.Backend
	mu      sync.Mutex
	batches int
	ops     int
	absent  int // batches that found the instance absent
	rejoins int
}

func (b *slowICBatches) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == "instancecounter-opbatch" {
		b.mu.Lock()
		b.batches++
		b.ops += (len(args) - 3) / 5
		b.mu.Unlock()
	}
	time.Sleep(500 * time.Microsecond)
	v, err := b.Backend.EvalScript(ctx, s, keys, args...)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s.Name() {
	case "instancecounter-rejoin":
		b.rejoins++
	case "instancecounter-opbatch":
		if arr, _ := v.Array(); len(arr) == 1 {
			if st, _ := arr[0].Text(); st == "absent" {
				b.absent++
			}
		}
	}
	return v, err
}

// testICGroupCommit: concurrent Strict calls of one instance that share
// batches give what one call per operation gives, also across a comeback
// in the middle (the instance declared dead: a batch finds it absent,
// every call in it rejoins, once, and retries): this instance's slice
// forms one chain of increments (each by a delta of its own) ordered by
// result, every reply's cumulative is that slice plus the other
// instance's, reads see values of the chain, increments past the int64
// limit fail alone with ErrOverflow while the others apply, and a total
// that is not an integer fails its own calls only.
func testICGroupCommit(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	admin := open(t, h)
	sb := &slowICBatches{Backend: open(t, h)}
	a := newIC(t, sb, instancecounter.Options{Prefix: p, InstanceID: "a", DeadAfter: time.Minute})
	b := newIC(t, open(t, h), instancecounter.Options{Prefix: p, InstanceID: "b", DeadAfter: time.Minute})
	const other = 1000
	c, m, err := b.Inc(ctx, "hot", other)
	pair(t, "B Inc hot", c, m, err, other, other)
	c, m, err = a.SetOnInstance(ctx, "edge", math.MaxInt64-10)
	pair(t, "A SetOnInstance edge", c, m, err, math.MaxInt64-10, math.MaxInt64-10)
	if _, err := admin.EvalScript(ctx, testkit.HSetScript, []string{keyspace.InstanceCounter(p).Total}, keyspace.InstanceKeyField("text"), "not a number"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 12
	type rec struct {
		inc            bool
		delta, cum, mn int64
	}
	var mu sync.Mutex
	var hist []rec
	var edgeOK, edgeOverflow int
	var edgeVals []int64
	var wg sync.WaitGroup
	var done atomic.Int64
	half := make(chan struct{})
	var halfOnce sync.Once
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if done.Add(1) == workers*each/2 {
					halfOnce.Do(func() { close(half) })
				}
				var e rec
				var err error
				if (w+i)%3 == 0 {
					e.cum, e.mn, err = a.Get(ctx, "hot")
				} else {
					e.inc, e.delta = true, int64(w*each+i+1)
					e.cum, e.mn, err = a.Inc(ctx, "hot", e.delta)
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
					_, v, err := a.Inc(ctx, "edge", 1)
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
					_, _, err := a.Inc(ctx, "text", 1)
					if !errors.Is(err, backend.ErrScript) || errors.Is(err, distkit.ErrIndeterminate) {
						errs <- err
					}
				}
			}
		}()
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	expired := false
	select {
	case <-half:
		expire(t, admin, p, "a") // A is declared dead midway
		expired = true
	case <-all:
	}
	<-all
	close(errs)
	for err := range errs {
		t.Fatalf("unexpected outcome: %v", err)
	}
	if !expired {
		t.Fatal("the workers ended before half their calls")
	}
	var incs []rec
	seen := map[int64]bool{0: true}
	for _, e := range hist {
		if e.cum != e.mn+other {
			t.Fatalf("a reply gave cumulative %d for a slice of %d, but B's slice is %d", e.cum, e.mn, other)
		}
		if e.inc {
			incs = append(incs, e)
		}
	}
	sort.Slice(incs, func(i, j int) bool { return incs[i].mn < incs[j].mn })
	prev := int64(0)
	for _, e := range incs {
		if e.mn-e.delta != prev {
			t.Fatalf("an increment by %d returned slice %d, but the one before it left %d", e.delta, e.mn, prev)
		}
		prev = e.mn
		seen[e.mn] = true
	}
	for _, e := range hist {
		if !seen[e.mn] {
			t.Fatalf("a read returned slice %d, which no prefix of the increments gives", e.mn)
		}
	}
	c, m, err = a.Get(ctx, "hot")
	pair(t, "A Get hot", c, m, err, prev+other, prev)
	c, _, err = b.Get(ctx, "hot")
	if err != nil || c != prev+other {
		t.Fatalf("B Get hot: %d, %v; want %d", c, err, prev+other)
	}
	sort.Slice(edgeVals, func(i, j int) bool { return edgeVals[i] < edgeVals[j] })
	if edgeOK != 10 || edgeOverflow != workers*each/4-10 || edgeVals[0] != math.MaxInt64-9 || edgeVals[9] != math.MaxInt64 {
		t.Fatalf("edge: %d applied %v, %d overflowed; want 10 applied up to MaxInt64, the rest overflowed", edgeOK, edgeVals, edgeOverflow)
	}
	c, m, err = a.Get(ctx, "edge")
	pair(t, "A Get edge", c, m, err, math.MaxInt64, math.MaxInt64)
	sb.mu.Lock()
	defer sb.mu.Unlock()
	t.Logf("%d batches carried %d operations; %d found the instance absent; %d rejoins", sb.batches, sb.ops, sb.absent, sb.rejoins)
	if sb.rejoins < 2 { // the registration, then the comeback
		t.Fatalf("%d rejoins: the comeback midway did not happen, the test proves less than it says", sb.rejoins)
	}
	if sb.batches == 0 || sb.ops < 2*sb.batches {
		t.Fatalf("no batching happened (%d batches, %d operations): the test proves nothing", sb.batches, sb.ops)
	}
}
