//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/parity"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *manualClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fuzzCorpus reads the committed FuzzRateLimit seed corpus.
func fuzzCorpus(t *testing.T) []parity.RLCase {
	dir := filepath.Join("..", "parity", "testdata", "fuzz", "FuzzRateLimit")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []parity.RLCase
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 6 {
			t.Fatalf("%s: %d lines", e.Name(), len(lines))
		}
		arg := func(i int, kind string) string {
			return strings.TrimSuffix(strings.TrimPrefix(lines[i], kind+"("), ")")
		}
		n, err1 := strconv.ParseUint(arg(1, "uint64"), 10, 64)
		pms, err2 := strconv.ParseUint(arg(2, "uint32"), 10, 32)
		buckets, err3 := strconv.Unquote(arg(3, "byte"))
		hlf, err4 := strconv.Unquote(arg(4, "byte"))
		seq, err5 := strconv.Unquote(arg(5, "[]byte"))
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out = append(out, parity.DecodeRL(n, uint32(pms), buckets[0], hlf[0], []byte(seq)))
	}
	return out
}

// TestRateLimitFuzzOnServer runs the fuzz corpus and seeded random cases
// on a real redis-server (the Lua script, real server time) and replays
// each decision on Local at the server's timestamp: the decisions must be
// the same, RetryAfter and ReleaseAfter included, and no window of the
// limit's period (server time) may admit more than the limit. Periods are
// capped at 500 ms and pauses cut to an eighth so that real time can pass.
func TestRateLimitFuzzOnServer(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	c := newClient(t, srv.Addr)
	cases := fuzzCorpus(t)
	r := rng(t)
	for range 12 {
		seq := make([]byte, 4*(8+r.IntN(24)))
		for i := range seq {
			seq[i] = byte(r.IntN(256))
		}
		ns := []uint64{5, 12, 50, 205, 700, 1e4, 1e6}
		cases = append(cases, parity.DecodeRL(ns[r.IntN(len(ns))], uint32(r.IntN(6000)), uint8(r.IntN(25)), uint8(r.IntN(40)), seq))
	}
	worst, total := 0.0, 0
	for i, rc := range cases {
		rc.Limit.Period = min(rc.Limit.Period, 500*time.Millisecond) // real time must pass
		if len(rc.Ops) > 32 {
			rc.Ops = rc.Ops[:32]
		}
		fill, n, err := replayOnServer(ctx, c.b, rc, fmt.Sprint("chaos-fz-", i))
		if err != nil {
			t.Fatalf("case %d (limit %v, buckets %d, factor %v): %v", i, rc.Limit, rc.Buckets, rc.HardLimitFactor, err)
		}
		worst, total = max(worst, fill), total+n
	}
	t.Logf("%d cases, %d decisions on redis-server replayed on Local at server time: identical; fullest window %.0f%% of its limit", len(cases), total, 100*worst)
}

// replayOnServer runs rc on the Redis provider over b and replays every
// decision on Local at the decision's server time. It returns the fullest
// window (admitted units / limit) and the number of decisions.
func replayOnServer(ctx context.Context, b backend.Backend, rc parity.RLCase, prefix string) (float64, int, error) {
	clk := &manualClock{}
	opts := rc.Options()
	opts.Prefix = prefix
	red, err := ratelimit.NewRedis(b, opts)
	if err != nil {
		return 0, 0, err
	}
	defer red.Close(ctx)
	opts.Clock = clk
	local, _ := ratelimit.NewLocal(opts)
	defer local.Close(ctx)
	adm := map[string][]parity.Admission{}
	supUsed := map[string]bool{}
	var lastLimit, capacity, hard int64
	for i, op := range rc.Ops {
		time.Sleep(min(op.Advance/8, 2*rc.Limit.Period)) // real time: shortened, the replay uses the server's
		if op.Kind != parity.RLDecide {
			continue // decisions only: Peek, SetIf and Reset are the fuzz target's
		}
		n := op.Resolve(lastLimit)
		supUsed[op.Key] = supUsed[op.Key] || op.Sup
		lim := rc.LimitOf(op)
		inc := func(abs *ratelimit.Absolute, sup *ratelimit.Suppressed) (ratelimit.Decision, error) {
			if op.Sup {
				return sup.Inc(ctx, op.Key, lim, n)
			}
			return abs.Inc(ctx, op.Key, lim, n)
		}
		d, err := inc(red.Absolute(), red.Suppressed())
		clk.set(d.At)
		ld, lerr := inc(local.Absolute(), local.Suppressed())
		rs, ls := parity.RenderRL(d, err), parity.RenderRL(ld, lerr)
		if err := ls.Same(rs, true); err != nil {
			return 0, i, fmt.Errorf("op %d (%+v, n=%d) at %v: Local vs redis-server: %v", i, op, n, d.At.Format("15:04:05.000"), err)
		}
		if rs.Err != "" {
			if i == 0 {
				return 0, 1, nil // an invalid rate for both
			}
			continue
		}
		if d.Allowed {
			adm[op.Key] = append(adm[op.Key], parity.Admission{At: d.At, N: n})
		}
		lastLimit = rs.Limit
		if op.Sup {
			hard = rs.Limit
		} else {
			capacity = rs.Limit
		}
	}
	fill := 0.0
	for key, a := range adm {
		limit := capacity
		if supUsed[key] {
			limit = max(capacity, hard)
		}
		if limit == 0 {
			continue
		}
		if err := parity.CheckRLBound(a, rc.Limit.Period, limit); err != nil {
			return 0, len(rc.Ops), fmt.Errorf("key %s: %v", key, err)
		}
		fill = max(fill, float64(maxUnits(a, rc.Limit.Period))/float64(limit))
	}
	return fill, len(rc.Ops), nil
}

func maxUnits(a []parity.Admission, w time.Duration) int64 {
	best := int64(0)
	for i := range a {
		sum := int64(0)
		for j := range a {
			if !a[j].At.After(a[i].At) && a[j].At.After(a[i].At.Add(-w)) {
				sum += a[j].N
			}
		}
		best = max(best, sum)
	}
	return best
}

// TestHybridPartitionPerKey: a Hybrid instance partitioned from Redis
// (blackholed, then cut) keeps deciding locally with its decisions marked
// degraded and a nil error; once the connection is back, its keys recover
// within a few syncs, while a key the server rejects (WRONGTYPE) stays
// quarantined and degraded on its own without affecting the others.
func TestHybridPartitionPerKey(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	c := newClient(t, srv.Addr)
	admin := newClient(t, srv.Addr)
	const p = "chaos-hyb"
	h, err := ratelimit.NewHybrid(c.b, ratelimit.Options{Prefix: p, SyncInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	if _, err := admin.b.EvalScript(ctx, testkit.WrongTypeScript, []string{keyspace.RateLimit(p, "bad").Counts}); err == nil {
		t.Fatal("WRONGTYPE script succeeded")
	}
	keys := []string{"a", "b", "c"}
	decide := func(key string) ratelimit.Decision {
		d, err := h.Absolute().Inc(ctx, key, ratelimit.PerSecond(1000), 1)
		if err != nil {
			t.Fatalf("key %s: %v (a backend failure must not be the call's error)", key, err)
		}
		return d
	}
	for _, k := range keys {
		if d := decide(k); !d.Allowed || d.Degraded != nil {
			t.Fatalf("key %s before the partition: %+v", k, d)
		}
	}
	decide("bad")
	c.proxy.Blackhole(true)
	start := time.Now()
	testkit.Eventually(t, 5*time.Second, "degraded decisions under a blackhole", func() bool {
		return decide("a").Degraded != nil
	})
	noticed := time.Since(start)
	c.proxy.Cut()
	for range 20 {
		for _, k := range keys {
			if d := decide(k); !d.Allowed {
				t.Fatalf("FailLocal rejected key %s well below capacity: %+v", k, d)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.proxy.Restore()
	healed := time.Now()
	testkit.Eventually(t, 10*time.Second, "every key recovers", func() bool {
		ok := true
		for _, k := range keys {
			ok = decide(k).Degraded == nil && ok
		}
		return ok
	})
	recovered := time.Since(healed)
	if d := decide("bad"); d.Degraded == nil || !strings.Contains(d.Degraded.Error(), "WRONGTYPE") {
		t.Fatalf("the bad key after the heal: %+v; want it still reported on its own", d)
	}
	t.Logf("blackhole noticed after %v; 3 keys recovered %v after the heal; the WRONGTYPE key stays quarantined", noticed.Round(time.Millisecond), recovered.Round(time.Millisecond))
}
