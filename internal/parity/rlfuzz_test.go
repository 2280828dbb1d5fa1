package parity_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/distkit-go/distkit"
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

// FuzzRateLimit: for any limit (N and period, valid or not), number of
// buckets, factor and sequence of operations (Inc with amounts up to
// MaxInt64 on both strategies, Peek, SetIf with both histories and any
// comparator, Reset, two keys, the key switching between two periods, the
// clock advancing by anything from 0 to many windows), Local, Redis on the
// memory backend (the Go twin), Redis on miniredis (the Lua script) and
// Hybrid (synced around each operation) give the same outcomes: same
// error, same admission (unless Suppressed drew it at random), limit,
// remaining, counts, suppression, RetryAfter and ReleaseAfter; and on a
// key nobody set or reset, no window of length Period, wherever it
// starts, admits more than N (Absolute only) or the hard limit.
func FuzzRateLimit(f *testing.F) {
	f.Add(uint64(10), uint32(999), uint8(10), uint8(10), []byte{99, 0, 0, 0, 0, 200, 0, 0, 1, 0, 0, 0, 255, 1, 0, 0})
	f.Add(uint64(123), uint32(59999), uint8(0), uint8(0), []byte{0, 205, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 3, 20, 9, 0, 0, 28, 0})
	f.Add(uint64(7), uint32(999), uint8(1), uint8(11), []byte{5, 255, 2, 0, 5, 250, 2, 0, 201, 1, 3, 0, 240, 3, 1, 0, 1, 4, 36, 0, 1, 2, 0, 0})
	f.Add(uint64(1e9), uint32(167), uint8(24), uint8(39), []byte{1, 224, 2, 0, 1, 225, 0, 0, 1, 226, 2, 0, 1, 227, 0, 0, 1, 228, 3, 0})
	f.Add(uint64(0), uint32(5), uint8(5), uint8(0), []byte{1, 1, 0, 0})
	f.Add(uint64(1<<63), uint32(5), uint8(5), uint8(0), []byte{1, 1, 0, 0})
	f.Add(uint64(5), uint32(99), uint8(10), uint8(10), []byte{10, 3, 0, 0, 10, 2, 0, 0, 10, 1, 20, 12, 10, 6, 24, 0, 10, 1, 32, 0, 10, 1, 0, 0, 10, 2, 16, 0, 30, 5, 28, 0, 0, 0, 0, 0})
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
	f.Fuzz(func(t *testing.T, n uint64, periodMs uint32, buckets, hlf uint8, raw []byte) {
		seq++
		c := parity.DecodeRL(n, periodMs, buckets, hlf, raw)
		if err := runRL(c, fmt.Sprint("fz", seq), mr, lua); err != nil {
			t.Fatalf("limit %v buckets %d factor %v: %v", c.Limit, c.Buckets, c.HardLimitFactor, err)
		}
	})
}

type rlProvider struct {
	name   string
	abs    *ratelimit.Absolute
	sup    *ratelimit.Suppressed
	admin  admin
	around func() error // Hybrid: called before and after each operation
	adm    map[string][]parity.Admission
}

// admin is what every provider has besides its strategies.
type admin interface {
	Reset(context.Context, string) error
	SetIf(context.Context, string, ratelimit.Limit, distkit.Comparator, int64, ratelimit.History) (int64, int64, error)
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
	// Before an operation: two syncs without the key, so that its view is
	// stale and the operation pulls it (at the operation's time); after it:
	// a sync that pushes what it recorded, at the same time.
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
		{name: "Local", abs: local.Absolute(), sup: local.Suppressed(), admin: local},
		{name: "Redis/memory", abs: red.Absolute(), sup: red.Suppressed(), admin: red},
		{name: "Redis/miniredis", abs: redLua.Absolute(), sup: redLua.Suppressed(), admin: redLua},
		{name: "Hybrid", abs: hyb.Absolute(), sup: hyb.Suppressed(), admin: hyb, around: sync},
	}
	for _, p := range ps {
		p.adm = map[string][]parity.Admission{}
	}
	lastLimit := int64(0)
	supUsed := map[string]bool{}
	tampered := map[string]bool{} // set or reset: admissions before may leave early
	var capacity, hard int64
	for i, op := range c.Ops {
		clk.advance(op.Advance)
		mr.SetTime(clk.Now())
		mr.FastForward(op.Advance)
		n := op.Resolve(lastLimit)
		lim := c.LimitOf(op)
		var ref parity.RLResult
		for j, p := range ps {
			if p.around != nil {
				if err := p.around(); err != nil {
					return fmt.Errorf("op %d: %s sync: %v", i, p.name, err)
				}
			}
			var r parity.RLResult
			switch op.Kind {
			case parity.RLDecide:
				var d ratelimit.Decision
				var err error
				if op.Sup {
					d, err = p.sup.Inc(ctx, op.Key, lim, n)
				} else {
					d, err = p.abs.Inc(ctx, op.Key, lim, n)
				}
				r = parity.RenderRL(d, err)
				if d.Allowed {
					p.adm[op.Key] = append(p.adm[op.Key], parity.Admission{At: clk.Now(), N: n})
				}
			case parity.RLPeek:
				if op.Sup {
					r = parity.RenderRLState(p.sup.Peek(ctx, op.Key, lim))
				} else {
					r = parity.RenderRLState(p.abs.Peek(ctx, op.Key, lim))
				}
			case parity.RLSetKeep, parity.RLSetReplace:
				h := ratelimit.KeepHistory
				if op.Kind == parity.RLSetReplace {
					h = ratelimit.ReplaceHistory
				}
				r = parity.RenderRLSet(p.admin.SetIf(ctx, op.Key, lim, op.Cmp, n, h))
			case parity.RLReset:
				r = parity.RenderRLSet(0, 0, p.admin.Reset(ctx, op.Key))
			}
			if p.around != nil {
				if err := p.around(); err != nil {
					return fmt.Errorf("op %d: %s sync: %v", i, p.name, err)
				}
			}
			if j == 0 {
				ref = r
				continue
			}
			// Hybrid's RetryAfter and ReleaseAfter are exact when its last
			// pull described enough of the window, which it always does
			// here: each operation pulls, knowing its own request.
			if err := ref.Same(r, true); err != nil {
				return fmt.Errorf("op %d (%+v, n=%d): Local vs %s: %v", i, op, n, p.name, err)
			}
		}
		if op.Kind == parity.RLSetKeep || op.Kind == parity.RLSetReplace || op.Kind == parity.RLReset {
			if ref.Err == "" {
				tampered[op.Key] = true
			}
			continue
		}
		if ref.Err != "" {
			if i == 0 {
				return nil // an invalid limit: every provider said so
			}
			continue
		}
		if op.Kind != parity.RLDecide {
			continue
		}
		supUsed[op.Key] = supUsed[op.Key] || op.Sup
		lastLimit = ref.Limit
		if op.Sup {
			hard = ref.Limit
		} else {
			capacity = ref.Limit
		}
	}
	for _, p := range ps {
		for key, adm := range p.adm {
			limit := capacity
			if supUsed[key] {
				limit = max(capacity, hard)
			}
			if limit == 0 || tampered[key] {
				continue
			}
			// Under either period, every unit stays counted for at least
			// the shorter one (a switch re-dates, never drops).
			if err := parity.CheckRLBound(adm, c.Limit.Period, limit); err != nil {
				return fmt.Errorf("%s key %s: %v", p.name, key, err)
			}
		}
	}
	return nil
}
