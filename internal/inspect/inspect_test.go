package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	rd "github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

var env redistest.Env

func TestMain(m *testing.M) {
	code := m.Run()
	env.Stop()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// backends are the views' two implementations: the Go twins on the memory
// backend and the Lua scripts on a real redis-server.
func backends(t *testing.T) map[string]func(t *testing.T) backend.Backend {
	return map[string]func(t *testing.T) backend.Backend{
		"memory": func(t *testing.T) backend.Backend {
			b := memory.New(memory.Options{})
			t.Cleanup(func() { b.Close() })
			return b
		},
		"redis": func(t *testing.T) backend.Backend {
			s := env.Server(t)
			c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			b, err := rueidisbackend.New(c)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
	}
}

const odd = "\x00\xffa:b{c}%"

// state builds one of everything through the library and returns the
// guards it holds.
func state(t *testing.T, b backend.Backend, prefix string) (held *lock.Guard) {
	ctx := context.Background()
	c, err := counter.NewStrict(b, counter.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"orders": 42, "user:42": -7, odd: 1} {
		if _, err := c.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}

	m := testkit.NewMutex(t, b, "m", lock.Options{Prefix: prefix, Owner: "holder:1"})
	held, err = m.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Release(context.Background()) })
	for _, owner := range []string{"r1", odd} {
		rw := testkit.NewRWMutex(t, b, "rw", lock.Options{Prefix: prefix, Owner: owner})
		g, err := rw.TryRLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Release(context.Background()) })
	}
	w := testkit.NewRWMutex(t, b, "rw", lock.Options{Prefix: prefix, Owner: "w", RetryInterval: time.Second}) // its mark lives 3 s
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if g, err := w.Lock(wctx); err == nil { // once readers are gone: hold it until the test ends
			<-wctx.Done()
			g.Release(context.Background())
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, 5*time.Second, "a waiting writer", func() bool {
		l, err := inspect.ReadLock(ctx, b, prefix, "rw")
		return err == nil && len(l.Waiters) == 1
	})

	live := testkit.NewInstanceCounter(t, b, instancecounter.Options{Prefix: prefix, InstanceID: "live", DeadAfter: time.Minute})
	if _, _, err := live.Inc(ctx, "k", 4); err != nil {
		t.Fatal(err)
	}
	dead, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: prefix, InstanceID: odd,
		DeadAfter: 150 * time.Millisecond, KeepSlicesOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dead.Inc(ctx, "k", 3); err != nil {
		t.Fatal(err)
	}
	if err := dead.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "a dead instance", func() bool {
		is, err := inspect.ReadInstances(ctx, b, prefix)
		// Closed at once; dead (its heartbeat expired) after DeadAfter.
		return err == nil && len(is.List) == 2 && !is.List[0].Alive && is.List[0].Closed && !is.List[0].Expires.After(is.Now)
	})

	rl := testkit.NewRedisLimiter(t, b, ratelimit.Options{Prefix: prefix})
	for range 3 {
		if ok, err := rl.Absolute().Allow(ctx, "client:7", ratelimit.PerMinute(5)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	return held
}

func lease(l inspect.Lease, fence int64) string {
	return fmt.Sprintf("{%q %v %v %v %v}", l.Owner, l.Acquisition != "", l.Token > 0 && l.Token <= fence,
		!l.Acquired.IsZero() && time.Since(l.Acquired) < time.Minute, l.TTL > 0 && l.TTL <= 30*time.Second)
}

// views renders every view of the state built by state, with times
// reduced to what must hold on any backend.
func views(t *testing.T, b backend.Backend, prefix string) []string {
	ctx := context.Background()
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	cs, err := inspect.Counters(ctx, b, prefix, []string{"orders", "user:42", odd, "absent"})
	add("counters %+v %v", cs, err)
	for _, name := range []string{"m", "rw", "none"} {
		l, err := inspect.ReadLock(ctx, b, prefix, name)
		var rs, ws []string
		for _, r := range l.Readers {
			rs = append(rs, lease(r, l.Fence))
		}
		sort.Strings(rs) // by expiry, which may tie
		for _, w := range l.Waiters {
			ws = append(ws, fmt.Sprintf("{%s %q %v %v}", w.Kind, w.Owner, w.Acquisition != "", w.TTL > 0))
		}
		h := "nil"
		if l.Holder != nil {
			h = lease(*l.Holder, l.Fence)
		}
		add("lock %q %v %s holder=%s readers=%v waiters=%v fence>0=%v %v", name, l.Exists(), l.State(), h, rs, ws, l.Fence > 0, err)
	}
	is, err := inspect.ReadInstances(ctx, b, prefix)
	for _, i := range is.List {
		add("instance %q alive=%v closed=%v slices=%d expires-set=%v", i.ID, i.Alive, i.Closed, i.Slices, !i.Expires.IsZero())
	}
	add("instances %d %v", len(is.List), err)
	ics, _, err := inspect.ReadInstanceCounters(ctx, b, prefix, []string{"k", "absent"})
	add("icounters %+v %v", ics, err)
	for _, key := range []string{"client:7", "absent"} {
		l, err := inspect.ReadLimit(ctx, b, prefix, key)
		w := l.Window()
		add("limit %q exists=%v stored=%d count=%d buckets=%d geometry=%d/%d ttl=%v oldest-leaves-in-a-minute=%v %v", key, l.Exists, l.Stored, w.Count,
			len(l.Buckets), l.BucketMs, l.PerWindow, l.TTL > 59*time.Second, w.Oldest.Sub(l.Now) > 59*time.Second && w.Oldest.Sub(l.Now) <= 61*time.Second, err)
	}
	return out
}

var want = []string{
	`counters [{Key:orders Value:42 Exists:true} {Key:user:42 Value:-7 Exists:true} {Key:` + odd + ` Value:1 Exists:true} {Key:absent Value:0 Exists:false}] <nil>`,
	`lock "m" true held holder={"holder:1" true true true true} readers=[] waiters=[] fence>0=true <nil>`,
	`lock "rw" true read holder=nil readers=[{"\x00\xffa:b{c}%" true true true true} {"r1" true true true true}] waiters=[{writer "w" true true}] fence>0=true <nil>`,
	`lock "none" false free holder=nil readers=[] waiters=[] fence>0=false <nil>`,
	`instance "\x00\xffa:b{c}%" alive=false closed=true slices=1 expires-set=true`,
	`instance "live" alive=true closed=false slices=1 expires-set=true`,
	`instances 2 <nil>`,
	`icounters [{Key:k Exists:true Stored:7 Cumulative:4 Epoch:0 Slices:[{Instance:` + odd + ` Value:3 Registered:true Alive:false Closed:true} {Instance:live Value:4 Registered:true Alive:true Closed:false}]} {Key:absent Exists:false Stored:0 Cumulative:0 Epoch:0 Slices:[]}] <nil>`,
	`limit "client:7" exists=true stored=3 count=3 buckets=1 geometry=600/100 ttl=true oldest-leaves-in-a-minute=true <nil>`,
	`limit "absent" exists=false stored=0 count=0 buckets=0 geometry=0/0 ttl=false oldest-leaves-in-a-minute=false <nil>`,
}

// Every view reads the same state the same way through its Lua script on
// Redis and through its Go twin on the memory backend.
func TestViews(t *testing.T) {
	got := map[string][]string{}
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			b := open(t)
			prefix := testkit.Prefix(t)
			state(t, b, prefix)
			got[name] = views(t, b, prefix)
			for i := range max(len(want), len(got[name])) {
				var g, w string
				if i < len(got[name]) {
					g = got[name][i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Errorf("view %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

// BreakLock removes the leases it was shown and keeps the fence; a lease
// that changed since is left alone. (A window is reset by the limiter's
// own Reset.)
func TestRepairs(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := open(t)
			prefix := testkit.Prefix(t)
			held := state(t, b, prefix)
			before, err := inspect.ReadLock(ctx, b, prefix, "m")
			if err != nil {
				t.Fatal(err)
			}
			got, err := inspect.BreakLock(ctx, b, prefix, before)
			if err != nil || !got.Holder || got.Readers != 0 {
				t.Fatalf("BreakLock(m) = %+v, %v", got, err)
			}
			after, err := inspect.ReadLock(ctx, b, prefix, "m")
			if err != nil || after.Holder != nil || after.Fence != before.Fence || after.Fence != held.Token() {
				t.Fatalf("after break: %+v, %v; fence before %d, token %d", after, err, before.Fence, held.Token())
			}
			// The same snapshot again breaks nothing: the lease it names is gone.
			if got, err := inspect.BreakLock(ctx, b, prefix, before); err != nil || got.Holder || got.Readers != 0 {
				t.Fatalf("second BreakLock = %+v, %v", got, err)
			}
			m := testkit.NewMutex(t, b, "m", lock.Options{Prefix: prefix})
			g, err := m.TryLock(ctx)
			if err != nil || g.Token() <= before.Fence {
				t.Fatalf("TryLock after break: %v; token %d after fence %d", err, g.Token(), before.Fence)
			}
			// A snapshot of the old holder does not break the new one.
			if got, err := inspect.BreakLock(ctx, b, prefix, before); err != nil || got.Holder {
				t.Fatalf("stale BreakLock = %+v, %v", got, err)
			}
			testkit.Release(t, g)

			rw, err := inspect.ReadLock(ctx, b, prefix, "rw")
			if err != nil {
				t.Fatal(err)
			}
			if got, err := inspect.BreakLock(ctx, b, prefix, rw); err != nil || got.Holder || got.Readers != 2 {
				t.Fatalf("BreakLock(rw) = %+v, %v", got, err)
			}
			// The waiting writer is woken and gets the lock with a higher token.
			testkit.Eventually(t, 5*time.Second, "the writer to take rw", func() bool {
				l, err := inspect.ReadLock(ctx, b, prefix, "rw")
				if err != nil || len(l.Readers) != 0 || l.Fence < rw.Fence {
					t.Fatalf("rw after break: %+v, %v", l, err)
				}
				return l.Holder != nil && l.Holder.Owner == "w" && l.Holder.Token > rw.Fence && l.Fence == l.Holder.Token
			})

			rl := testkit.NewRedisLimiter(t, b, ratelimit.Options{Prefix: prefix})
			if err := rl.Reset(ctx, "client:7"); err != nil {
				t.Fatalf("Reset = %v", err)
			}
			if l, err := inspect.ReadLimit(ctx, b, prefix, "client:7"); err != nil || l.Exists {
				t.Fatalf("after reset: %+v, %v", l, err)
			}
		})
	}
}

// Stored values that are not what a primitive writes are reported as
// ErrLayout naming what is wrong, never decoded into nonsense.
func TestForeignData(t *testing.T) {
	ctx := context.Background()
	s := env.Server(t)
	prefix := testkit.Prefix(t)
	b := backends(t)["redis"](t)
	for _, tc := range []struct {
		cmd  []string
		read func() error
	}{
		{[]string{"SET", keyspace.Lock(prefix, "x").Lock, "garbage"}, func() error {
			_, err := inspect.ReadLock(ctx, b, prefix, "x")
			return err
		}},
		{[]string{"SET", keyspace.Lock(prefix, "y").Fence, "NaN"}, func() error {
			_, err := inspect.ReadLock(ctx, b, prefix, "y")
			return err
		}},
		{[]string{"HSET", keyspace.CounterHash(prefix), "c", "1.5"}, func() error {
			_, err := inspect.Counters(ctx, b, prefix, []string{"c"})
			return err
		}},
		{[]string{"HSET", keyspace.RateLimit(prefix, "l").Counts, "bucket", "1"}, func() error {
			_, err := inspect.ReadLimit(ctx, b, prefix, "l")
			return err
		}},
	} {
		if _, err := s.Do(tc.cmd...); err != nil {
			t.Fatal(err)
		}
		if err := tc.read(); !errors.Is(err, inspect.ErrLayout) {
			t.Errorf("after %s: %v, want ErrLayout", strings.Join(tc.cmd, " "), err)
		}
	}
}
