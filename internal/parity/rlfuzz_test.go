package parity_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/distkit-go/distkit/backend"
	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/parity"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// FuzzRateLimit: for any rate, window, bucket, factor and sequence of
// requests (amounts up to MaxInt64, both strategies, two keys, the clock
// advancing by anything from 0 to many windows), Local, Redis on the memory
// backend (the Go twin), Redis on miniredis (the Lua script) and Hybrid
// (synced around each decision) make the same decisions: same error, same
// admission (unless Suppressed drew it at random), limit, remaining,
// suppression, and RetryAfter (Hybrid: whenever its last sync described
// enough buckets); and no window of length W, wherever it starts, admits
// more than the capacity (Absolute only) or the hard limit.
func FuzzRateLimit(f *testing.F) {
	f.Add(10.0, uint8(9), uint16(99), uint8(10), []byte{99, 0, 0, 0, 0, 200, 0, 0, 1, 0, 0, 0, 255, 1, 0, 0})
	f.Add(2.05, uint8(9), uint16(99), uint8(0), []byte{0, 205, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(0.7, uint8(0), uint16(999), uint8(0), []byte{5, 255, 2, 0, 5, 250, 2, 0, 201, 1, 3, 0, 240, 3, 1, 0})
	f.Add(1e9, uint8(23), uint16(7), uint8(39), []byte{1, 224, 2, 0, 1, 225, 0, 0, 1, 226, 2, 0, 1, 227, 0, 0, 1, 228, 3, 0})
	f.Add(0.01, uint8(5), uint16(9), uint8(0), []byte{1, 1, 0, 0})
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(mr.Close)
	lua, err := goredisbackend.FromURL("redis://" + mr.Addr())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { lua.Close() })
	var seq int
	f.Fuzz(func(t *testing.T, rate float64, nb uint8, bucketMs uint16, hlf uint8, raw []byte) {
		seq++
		c := parity.DecodeRL(rate, nb, bucketMs, hlf, raw)
		if err := runRL(c, fmt.Sprint("fz", seq), mr, lua); err != nil {
			t.Fatalf("rate %v window %v bucket %v factor %v: %v", c.Rate, c.Window, c.Bucket, c.HardLimitFactor, err)
		}
	})
}

type rlProvider struct {
	name   string
	abs    *ratelimit.Absolute
	sup    *ratelimit.Suppressed
	around func() error // Hybrid: called before and after each decision
	adm    map[string][]parity.Admission
}

func runRL(c parity.RLCase, prefix string, mr *miniredis.Miniredis, lua backend.Backend) error {
	ctx := context.Background()
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	mr.FlushAll() // one case at a time: FastForward stays cheap
	mr.SetTime(clk.Now())
	mem := memory.New(memory.Options{Clock: clk})
	opts := c.Options()
	opts.Clock = clk
	opts.Prefix = prefix
	local, err := ratelimit.NewLocal(opts)
	if err != nil {
		return err
	}
	defer local.Close(ctx)
	red, _ := ratelimit.NewRedis(mem, opts)
	defer red.Close(ctx)
	redLua, _ := ratelimit.NewRedis(lua, opts)
	defer redLua.Close(ctx)
	hopts := opts
	hopts.SyncInterval = time.Hour
	hopts.Prefix = prefix + "-hybrid"
	hyb, _ := ratelimit.NewHybrid(mem, hopts)
	defer hyb.Close(ctx)
	// Before a decision: two syncs without the key, so that its view is
	// stale and the decision pulls it (at the decision's time); after it: a
	// sync that pushes what it recorded, at the same time.
	var syncs int
	sync := func() error {
		syncs++
		if syncs%2 == 1 {
			if err := hyb.Sync(ctx); err != nil {
				return err
			}
		}
		return hyb.Sync(ctx)
	}
	ps := []*rlProvider{
		{name: "Local", abs: local.Absolute(), sup: local.Suppressed()},
		{name: "Redis/memory", abs: red.Absolute(), sup: red.Suppressed()},
		{name: "Redis/miniredis", abs: redLua.Absolute(), sup: redLua.Suppressed()},
		{name: "Hybrid", abs: hyb.Absolute(), sup: hyb.Suppressed(), around: sync},
	}
	for _, p := range ps {
		p.adm = map[string][]parity.Admission{}
	}
	lastLimit := int64(0)
	supUsed := map[string]bool{}
	maxN := map[string]int64{}
	var capacity, hard int64
	for i, op := range c.Ops {
		clk.advance(op.Advance)
		mr.SetTime(clk.Now())
		mr.FastForward(op.Advance)
		n := op.Resolve(lastLimit)
		supUsed[op.Key] = supUsed[op.Key] || op.Sup
		var ref parity.RLResult
		for j, p := range ps {
			if p.around != nil {
				if err := p.around(); err != nil {
					return fmt.Errorf("op %d: %s sync: %v", i, p.name, err)
				}
			}
			var d ratelimit.Decision
			var err error
			if op.Sup {
				d, err = p.sup.Inc(ctx, op.Key, c.Rate, n)
			} else {
				d, err = p.abs.Inc(ctx, op.Key, c.Rate, n)
			}
			if p.around != nil {
				if err := p.around(); err != nil {
					return fmt.Errorf("op %d: %s sync: %v", i, p.name, err)
				}
			}
			r := parity.RenderRL(d, err)
			if d.Allowed {
				p.adm[op.Key] = append(p.adm[op.Key], parity.Admission{At: clk.Now(), N: n})
			}
			if j == 0 {
				ref = r
				continue
			}
			// Hybrid's RetryAfter is exact when its last pull described
			// enough of the window, which it always does here: each
			// decision pulls, knowing its own request.
			exactRetry := true
			if err := ref.Same(r, exactRetry); err != nil {
				return fmt.Errorf("op %d (%+v, n=%d): Local vs %s: %v", i, op, n, p.name, err)
			}
			if !exactRetry && (ref.RetryAfter > 0) != (r.RetryAfter > 0) {
				return fmt.Errorf("op %d (%+v, n=%d): Local RetryAfter %v, %s %v", i, op, n, ref.RetryAfter, p.name, r.RetryAfter)
			}
		}
		if ref.Err != "" {
			if i == 0 {
				return nil // an invalid rate: every provider said so
			}
			continue
		}
		lastLimit = ref.Limit
		if op.Sup {
			hard = ref.Limit
		} else {
			capacity = ref.Limit
		}
		if n <= ref.Limit {
			maxN[op.Key] = max(maxN[op.Key], n)
		}
	}
	for _, p := range ps {
		for key, adm := range p.adm {
			limit := capacity
			if supUsed[key] {
				limit = max(capacity, hard)
			}
			if limit == 0 {
				continue
			}
			if err := parity.CheckRLBound(adm, c.Window, limit); err != nil {
				return fmt.Errorf("%s key %s: %v", p.name, key, err)
			}
		}
	}
	return nil
}
