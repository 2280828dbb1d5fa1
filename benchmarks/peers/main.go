// Command peers is distkit's benchmark report: every primitive through
// both Redis drivers next to its Go peers (redsync, bsm/redislock,
// rueidislock, go-redis/redis_rate), raw client calls as the floor and
// redis-benchmark -P 16 as the server's ceiling, all against one throwaway
// redis-server on a free loopback port, in one run. It prints a progress
// line per workload, then the table, and writes report.md and report.svg.
//
// It lives in its own module so that distkit's go.mod never depends on the
// peers.
//
//	go run . -out ../../bench                      (what `make bench` does)
//	go run . -only "counter inc, 64" -out ../../bench  (`make bench-ceiling`)
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redis/redis_rate/v10"
	"github.com/go-redsync/redsync/v4"
	rsgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// result is one row of the report.
type result struct {
	workload, impl string
	kind           string // "distkit", "peer", "floor", "ceiling", "baseline"
	ops            float64
	p50, p99       time.Duration
	allocs         float64
}

var (
	dur     = flag.Duration("d", 2*time.Second, "duration of each network workload")
	outDir  = flag.String("out", "bench", "where report.md and report.svg go")
	only    = flag.String("only", "", "run only workloads whose name contains this")
	results []result
	ctx     = context.Background()
)

func main() {
	flag.Parse()
	testing.Init()
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop()
	if err := run(srv); err != nil {
		srv.Stop()
		log.Fatal(err)
	}
	if err := write(srv); err != nil {
		srv.Stop()
		log.Fatal(err)
	}
}

func add(r result) {
	results = append(results, r)
	lat := ""
	if r.p50 > 0 {
		lat = fmt.Sprintf("  p50 %v p99 %v", r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
	fmt.Printf("  %-44s %-34s %14.0f ops/s%s\n", r.workload, r.impl, r.ops, lat)
}

func selected(workload string) bool { return strings.Contains(workload, *only) }

// measure runs op from conc goroutines for d and reports throughput,
// latency percentiles and allocations per op.
func measure(workload, impl, kind string, conc int, d time.Duration, op func() error) {
	if !selected(workload) {
		return
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	lats := make([][]time.Duration, conc)
	var firstErr atomic.Pointer[error]
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	start := time.Now()
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			for !stop.Load() {
				t0 := time.Now()
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					break
				}
				l = append(l, time.Since(t0))
			}
			lats[g] = l
		}()
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start)
	runtime.ReadMemStats(&ms1)
	if e := firstErr.Load(); e != nil {
		log.Printf("%s / %s: %v", workload, impl, *e)
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	add(result{workload: workload, impl: impl, kind: kind, ops: float64(len(all)) / el.Seconds(),
		p50: all[len(all)/2], p99: all[len(all)*99/100], allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(len(all))})
}

// inproc measures an in-process operation with testing.Benchmark.
func inproc(workload, impl, kind string, parallel bool, op func()) {
	if !selected(workload) {
		return
	}
	runtime.GC() // no collection of an earlier workload's garbage inside this one
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					op()
				}
			})
			return
		}
		for b.Loop() {
			op()
		}
	})
	add(result{workload: workload, impl: impl, kind: kind, ops: float64(r.N) / r.T.Seconds(), allocs: float64(r.AllocsPerOp())})
}

func run(srv *redistest.Server) error {
	// rueidis: the default client for latency (one goroutine) workloads; a
	// client with MaxFlushDelay 20µs, which batches more commands per
	// write, for the 64-goroutine throughput workloads.
	rcLat, err := rd.NewClient(rd.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
	if err != nil {
		return err
	}
	defer rcLat.Close()
	rcThr, err := rd.NewClient(rd.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true, MaxFlushDelay: 20 * time.Microsecond})
	if err != nil {
		return err
	}
	defer rcThr.Close()
	gc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, PoolSize: 128})
	defer gc.Close()
	type driver struct {
		name string
		b    backend.Backend
	}
	rbLat, err := rueidis.New(rcLat)
	if err != nil {
		return err
	}
	rbThr, err := rueidis.New(rcThr)
	if err != nil {
		return err
	}
	gb, err := goredis.New(gc)
	if err != nil {
		return err
	}
	defer gb.Close()
	drivers := []driver{{"distkit + rueidis", rbLat}, {"distkit + goredis", gb}}
	driversThr := []driver{{"distkit + rueidis (flush delay 20µs)", rbThr}, {"distkit + goredis", gb}}

	// Counters.
	inc := counterscript.Inc
	if _, err := srv.Do("SCRIPT", "LOAD", inc.Source()); err != nil {
		return err
	}
	// rueidis without MaxFlushDelay, to measure the driver tuning
	// (rueidisbackend.FromURL applies DefaultMaxFlushDelay).
	rbNoDelay := rbLat
	var ceiling float64
	for _, conc := range []int{1, 64, 256} {
		w := fmt.Sprintf("counter inc, %d goroutine(s)", conc)
		ds, rc := drivers, rcLat
		if conc > 1 {
			ds, rc = driversThr, rcThr
		}
		for _, d := range ds {
			c, _ := counter.NewStrict(d.b, counter.Options{Prefix: "bench"})
			measure(w, d.name+" (Strict)", "distkit", conc, *dur, func() error { _, err := c.Inc(ctx, "k", 1); return err })
		}
		if conc > 1 {
			c, _ := counter.NewStrict(rbNoDelay, counter.Options{Prefix: "bench"})
			measure(w, "distkit + rueidis, no flush delay (Strict)", "distkit", conc, *dur, func() error { _, err := c.Inc(ctx, "k", 1); return err })
		}
		nogc, _ := counter.NewStrict(ds[0].b, counter.Options{Prefix: "bench", DisableGroupCommit: true})
		measure(w, ds[0].name+" (Strict, group commit off)", "distkit", conc, *dur, func() error { _, err := nogc.Inc(ctx, "k", 1); return err })
		measure(w, "raw rueidis EVALSHA (floor)", "floor", conc, *dur, func() error {
			return rc.Do(ctx, rc.B().Evalsha().Sha1(inc.SHA()).Numkeys(1).Key("{bench}:counter").Arg("k", "1").Build()).Error()
		})
		measure(w, "raw rueidis HINCRBY (floor)", "floor", conc, *dur, func() error {
			return rc.Do(ctx, rc.B().Hincrby().Key("{bench}:counter").Field("k").Increment(1).Build()).Error()
		})
		if conc > 1 && selected(w) {
			if ceiling == 0 {
				if rps, err := redisBenchmark(srv, inc); err == nil {
					ceiling = rps
				} else {
					log.Print(err)
				}
			}
			if ceiling > 0 {
				add(result{workload: w, impl: "redis-benchmark -P 16 EVALSHA (ceiling)", kind: "ceiling", ops: ceiling})
			}
		}
	}
	lax, _ := counter.NewLax(memory.New(memory.Options{}), counter.Options{Prefix: "bench"})
	defer lax.Close(ctx)
	var m sync.Map
	m.Store("k", new(atomic.Int64))
	var bare atomic.Int64
	for _, par := range []bool{false, true} {
		w := "lax counter inc (in-process), 1 goroutine"
		if par {
			w = "lax counter inc (in-process), parallel"
		}
		inproc(w, "distkit Lax", "distkit", par, func() { lax.Inc(ctx, "k", 1) })
		inproc(w, "sync.Map.Load + atomic.Add (naive)", "baseline", par, func() { v, _ := m.Load("k"); v.(*atomic.Int64).Add(1) })
		inproc(w, "bare atomic.Add (floor)", "floor", par, func() { bare.Add(1) })
	}

	laxManyKeys()

	// Locks.
	rs := redsync.New(rsgoredis.NewPool(gc))
	rl := redislock.New(gc)
	locker, err := rueidislock.NewLocker(rueidislock.LockerOption{ClientOption: rd.ClientOption{InitAddress: []string{srv.Addr}}, KeyMajority: 1, NoLoopTracking: true}) // one key, as on a single server
	if err != nil {
		return err
	}
	defer locker.Close()
	type mutex struct {
		name string
		kind string
		mk   func(name string) func() (func(), error)
	}
	mutexes := []mutex{}
	for _, d := range drivers {
		mutexes = append(mutexes, mutex{d.name, "distkit", func(name string) func() (func(), error) {
			mu, _ := lock.NewMutex(d.b, name, lock.Options{})
			return func() (func(), error) {
				g, err := mu.Lock(ctx)
				if err != nil {
					return nil, err
				}
				return func() { g.Release(ctx) }, nil
			}
		}})
	}
	mutexes = append(mutexes,
		mutex{"redsync (go-redis)", "peer", func(name string) func() (func(), error) {
			mu := rs.NewMutex(name, redsync.WithTries(1000), redsync.WithRetryDelay(50*time.Millisecond))
			return func() (func(), error) {
				if err := mu.LockContext(ctx); err != nil {
					return nil, err
				}
				return func() { mu.UnlockContext(ctx) }, nil
			}
		}},
		mutex{"bsm/redislock (go-redis)", "peer", func(name string) func() (func(), error) {
			return func() (func(), error) {
				l, err := rl.Obtain(ctx, name, 30*time.Second, &redislock.Options{RetryStrategy: redislock.LinearBackoff(50 * time.Millisecond)})
				if err != nil {
					return nil, err
				}
				return func() { l.Release(ctx) }, nil
			}
		}},
		mutex{"rueidislock", "peer", func(name string) func() (func(), error) {
			return func() (func(), error) {
				// Bounded: rueidislock has been seen waiting forever in
				// WithContext in the hand-off workload (a lost wake-up), which
				// would hang the whole report.
				tctx, tcancel := context.WithTimeout(ctx, 10*time.Second)
				_, cancel, err := locker.WithContext(tctx, name)
				if err != nil {
					tcancel()
					return nil, err
				}
				return func() { cancel(); tcancel() }, nil
			}
		}},
	)
	for i, mu := range mutexes {
		acquire := mu.mk("bench-uncontended-" + strconv.Itoa(i))
		measure("mutex uncontended lock+release", mu.name, mu.kind, 1, *dur, func() error {
			release, err := acquire()
			if err != nil {
				return err
			}
			release()
			return nil
		})
	}
	for i, mu := range mutexes {
		name := "bench-handoff-" + strconv.Itoa(i)
		acquirers := make([]func() (func(), error), 8)
		for j := range acquirers {
			acquirers[j] = mu.mk(name)
		}
		handoff("mutex hand-off, 8 contenders", mu.name, mu.kind, acquirers)
	}

	// Semaphores: 8 contenders (each with its own Semaphore value, as
	// separate processes would have) on a capacity-4 semaphore; the
	// baseline is distkit's Mutex (capacity 1) through the same driver.
	for i, d := range drivers {
		w := "semaphore acquire/release, 8 contenders, cap 4"
		name := "bench-sem-" + strconv.Itoa(i)
		acquirers := make([]func() (func(), error), 8)
		base := make([]func() (func(), error), 8)
		for j := range acquirers {
			s, err := semaphore.New(d.b, name, 4, semaphore.Options{})
			if err != nil {
				return err
			}
			acquirers[j] = func() (func(), error) {
				p, err := s.Acquire(ctx, 1)
				if err != nil {
					return nil, err
				}
				return func() { p.Release(ctx) }, nil
			}
			mu, _ := lock.NewMutex(d.b, name+"-mutex", lock.Options{})
			base[j] = func() (func(), error) {
				g, err := mu.Lock(ctx)
				if err != nil {
					return nil, err
				}
				return func() { g.Release(ctx) }, nil
			}
		}
		handoff(w+" ("+d.name+")", "distkit Semaphore", "distkit", acquirers)
		handoff(w+" ("+d.name+")", "distkit Mutex (capacity 1)", "baseline", base)
	}

	// Election: time from a leader's end to a new leader, with a candidate
	// waiting (TTL 1 s, RetryInterval 50 ms): after Resign (woken by the
	// release message), and after the leader's process died (its lease
	// must expire).
	for i, d := range drivers {
		if err := electionFailover(d.name, d.b, "bench-elect-"+strconv.Itoa(i)); err != nil {
			return err
		}
	}

	// Rate limiting.
	limiter := redis_rate.NewLimiter(gc)
	rate := ratelimit.PerSecond(1_000_000_000)
	for _, d := range driversThr {
		r, _ := ratelimit.NewRedis(d.b, ratelimit.Options{Prefix: "bench"})
		defer r.Close(ctx)
		a := r.Absolute()
		measure("rate-limit decision, 64 goroutines", d.name+" (Redis provider)", "distkit", 64, *dur, func() error {
			_, err := a.Inc(ctx, "k", rate, 1)
			return err
		})
	}
	hy, _ := ratelimit.NewHybrid(driversThr[0].b, ratelimit.Options{Prefix: "bench"})
	defer hy.Close(ctx)
	ha := hy.Absolute()
	measure("rate-limit decision, 64 goroutines", "distkit + rueidis (Hybrid provider)", "distkit", 64, *dur, func() error {
		_, err := ha.Inc(ctx, "k", rate, 1)
		return err
	})
	loc, _ := ratelimit.NewLocal(ratelimit.Options{})
	defer loc.Close(ctx)
	la := loc.Absolute()
	measure("rate-limit decision, 64 goroutines", "distkit (Local provider)", "distkit", 64, *dur, func() error {
		_, err := la.Inc(ctx, "k", rate, 1)
		return err
	})
	measure("rate-limit decision, 64 goroutines", "go-redis/redis_rate", "peer", 64, *dur, func() error {
		_, err := limiter.Allow(ctx, "k", redis_rate.PerSecond(1_000_000_000))
		return err
	})

	// Instance counters.
	for _, d := range driversThr {
		ic, err := instancecounter.NewStrict(d.b, instancecounter.Options{Prefix: "bench"})
		if err != nil {
			return err
		}
		defer ic.Close(ctx)
		measure("instance counter inc, 64 goroutines", d.name+" (Strict)", "distkit", 64, *dur, func() error {
			_, _, err := ic.Inc(ctx, "k", 1)
			return err
		})
	}
	if selected("instance counter inc, 64 goroutines") {
		nogc, err := instancecounter.NewStrict(driversThr[0].b, instancecounter.Options{Prefix: "bench", DisableGroupCommit: true})
		if err != nil {
			return err
		}
		defer nogc.Close(ctx)
		measure("instance counter inc, 64 goroutines", driversThr[0].name+" (Strict, group commit off)", "distkit", 64, *dur, func() error {
			_, _, err := nogc.Inc(ctx, "k", 1)
			return err
		})
		if ceiling == 0 { // the counter rows did not run (-only)
			if rps, err := redisBenchmark(srv, inc); err == nil {
				ceiling = rps
			} else {
				log.Print(err)
			}
		}
	}
	if ceiling > 0 && selected("instance counter inc, 64 goroutines") {
		add(result{workload: "instance counter inc, 64 goroutines", impl: "redis-benchmark -P 16 EVALSHA of counter inc (ceiling)", kind: "ceiling", ops: ceiling})
	}
	icl, err := instancecounter.NewLax(drivers[0].b, instancecounter.Options{Prefix: "bench"})
	if err != nil {
		return err
	}
	defer icl.Close(ctx)
	inproc("instance counter inc (in-process)", "distkit Lax", "distkit", true, func() { icl.Inc(ctx, "k", 1) })
	return nil
}

// laxManyKeys: Lax Inc rotating over 1 k and 1 M distinct warm keys next
// to the naive sync.Map + atomic baseline on the same keys in the same
// order, measured in alternating chunks so that both see the same
// background load (the Lax flushes every 20 ms to a backend that
// acknowledges at once, testkit.AckBackend: its flusher does its real
// work, the backend costs nothing), and one flush of one pending key among
// 0 and 1 M idle keys on the memory backend.
func laxManyKeys() {
	for _, n := range []int{1000, 1_000_000} {
		w := fmt.Sprintf("lax counter inc (in-process), %s distinct keys, 1 goroutine", map[int]string{1000: "1 k", 1_000_000: "1 M"}[n])
		if !selected(w) {
			continue
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:%d:requests", i)
		}
		r := rand.New(rand.NewPCG(14, uint64(n)))
		r.Shuffle(n, func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		l, _ := counter.NewLax(testkit.NewAckBackend(), counter.Options{Prefix: "bench-keys"})
		for range 2 {
			for _, k := range keys {
				l.Inc(ctx, k, 1)
			}
		}
		l.Flush(ctx)
		var m sync.Map
		for _, k := range keys {
			m.Store(k, new(atomic.Int64))
		}
		il, in := 0, 0
		interleaved(w, 2*time.Second,
			result{impl: "distkit Lax", kind: "distkit"}, func() {
				l.Inc(ctx, keys[il], 1)
				if il++; il == n {
					il = 0
				}
			},
			result{impl: "sync.Map.Load + atomic.Add (naive)", kind: "baseline"}, func() {
				v, _ := m.Load(keys[in])
				v.(*atomic.Int64).Add(1)
				if in++; in == n {
					in = 0
				}
			})
		l.Close(ctx)
	}
	const w = "lax counter flush of 1 pending key (memory backend)"
	if !selected(w) {
		return
	}
	for _, idle := range []int{0, 1_000_000} {
		l, _ := counter.NewLax(memory.New(memory.Options{}), counter.Options{Prefix: "bench-flush", AllowedLag: time.Hour})
		for i := range idle {
			l.Inc(ctx, "idle:"+strconv.Itoa(i), 1)
		}
		l.Flush(ctx)
		impl, kind := "distkit Lax, 1 M idle keys", "distkit"
		if idle == 0 {
			impl, kind = "distkit Lax, no idle keys (reference)", "baseline"
		}
		inproc(w, impl, kind, false, func() {
			l.Inc(ctx, "hot", 1)
			l.Flush(ctx)
		})
		l.Close(ctx)
	}
}

// interleaved measures two in-process operations in alternating chunks of
// 10 000 calls for about d, so that background load weighs on both alike,
// and adds a result for each (ops/s and allocations per op).
func interleaved(workload string, d time.Duration, ra result, a func(), rb result, b func()) {
	if !selected(workload) {
		return
	}
	runtime.GC()
	var ta, tb time.Duration
	var ma, mb uint64
	var ms runtime.MemStats
	n := 0
	for start := time.Now(); time.Since(start) < d; n += 10_000 {
		for _, side := range []struct {
			op func()
			t  *time.Duration
			m  *uint64
		}{{a, &ta, &ma}, {b, &tb, &mb}} {
			runtime.ReadMemStats(&ms)
			m0, t0 := ms.Mallocs, time.Now()
			for range 10_000 {
				side.op()
			}
			*side.t += time.Since(t0)
			runtime.ReadMemStats(&ms)
			*side.m += ms.Mallocs - m0
		}
	}
	ra.workload, rb.workload = workload, workload
	ra.ops, rb.ops = float64(n)/ta.Seconds(), float64(n)/tb.Seconds()
	ra.allocs, rb.allocs = float64(ma)/float64(n), float64(mb)/float64(n)
	add(ra)
	add(rb)
}

// handoff: rounds in which 8 contenders each take the lock once; reports
// acquisitions per second.
func handoff(workload, impl, kind string, acquirers []func() (func(), error)) {
	if !selected(workload) {
		return
	}
	start := time.Now()
	n := 0
	var lats []time.Duration
	for time.Since(start) < *dur {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, acq := range acquirers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				release, err := acq()
				if err != nil {
					log.Printf("%s: %v", impl, err)
					return
				}
				mu.Lock()
				lats = append(lats, time.Since(t0))
				n++
				mu.Unlock()
				release()
			}()
		}
		wg.Wait()
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	r := result{workload: workload, impl: impl, kind: kind, ops: float64(n) / time.Since(start).Seconds()}
	if len(lats) > 0 {
		r.p50, r.p99 = lats[len(lats)/2], lats[len(lats)*99/100]
	}
	add(r)
}

// dying is a backend whose process can be killed: every call fails
// afterwards, as a dead client sends nothing (the leader's renewals stop).
type dying struct {
	backend.Backend
	dead atomic.Bool
}

func (d *dying) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if d.dead.Load() {
		return backend.Value{}, fmt.Errorf("%w: process killed", backend.ErrNotApplied)
	}
	return d.Backend.EvalScript(ctx, s, keys, args...)
}

// electionFailover reports, as p50/p99 over a few trials, how long a
// waiting candidate takes to become leader after the leader resigned and
// after the leader's process died.
func electionFailover(impl string, b backend.Backend, name string) error {
	const ttl = time.Second
	for _, mode := range []string{"resign", "killed"} {
		w := "election failover, leader " + mode + ", TTL 1s"
		if !selected(w) {
			continue
		}
		trials := 5
		if mode == "killed" {
			trials = 3
		}
		var lats []time.Duration
		for range trials {
			lb := &dying{Backend: b}
			le, err := election.New(lb, name, election.Options{TTL: ttl})
			if err != nil {
				return err
			}
			ce, _ := election.New(b, name, election.Options{TTL: ttl})
			leader, err := le.Campaign(ctx, "old")
			if err != nil {
				return err
			}
			got := make(chan time.Time, 1)
			go func() {
				l, err := ce.Campaign(ctx, "new")
				got <- time.Now()
				if err == nil {
					l.Resign(ctx)
				}
			}()
			time.Sleep(100 * time.Millisecond) // the candidate waits
			ended := time.Now()
			if mode == "resign" {
				leader.Resign(ctx)
			} else {
				lb.dead.Store(true)
			}
			lats = append(lats, (<-got).Sub(ended))
			<-leader.Done()
		}
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		add(result{workload: w, impl: impl, kind: "distkit", ops: float64(time.Second) / float64(lats[len(lats)/2]),
			p50: lats[len(lats)/2], p99: lats[len(lats)-1]})
	}
	return nil
}

var rpsRe = regexp.MustCompile(`([0-9.]+) requests per second`)

func redisBenchmark(srv *redistest.Server, s backend.Script) (float64, error) {
	out, err := exec.Command("redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port),
		"-c", "64", "-n", "1000000", "-P", "16", "-q",
		"EVALSHA", s.SHA(), "1", "{bench}:counter", "k", "1").Output()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w", err)
	}
	m := rpsRe.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return 0, fmt.Errorf("redis-benchmark: no rate in %q", out)
	}
	return strconv.ParseFloat(string(m[len(m)-1][1]), 64)
}

func machine(srv *redistest.Server) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	ver, _ := srv.Do("INFO", "server")
	rv := "?"
	for _, l := range strings.Split(ver, "\n") {
		if strings.HasPrefix(l, "redis_version:") {
			rv = strings.TrimSpace(strings.TrimPrefix(l, "redis_version:"))
		}
	}
	return fmt.Sprintf("%s, %d cores, %s, Redis %s, %s", cpu, runtime.NumCPU(), runtime.Version(), rv, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

func write(srv *redistest.Server) error {
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# distkit benchmark report\n\nMeasured on: %s. One run, one redis-server on loopback; figures from one machine are not truth for another.\n\n", machine(srv))
	b.WriteString("| workload | implementation | ops/s | p50 | p99 | allocs/op | × best peer | × ceiling/baseline |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	groups := map[string][]result{}
	var order []string
	for _, r := range results {
		if _, ok := groups[r.workload]; !ok {
			order = append(order, r.workload)
		}
		groups[r.workload] = append(groups[r.workload], r)
	}
	for _, w := range order {
		bestPeer, ref := 0.0, 0.0
		for _, r := range groups[w] {
			if r.kind == "peer" {
				bestPeer = math.Max(bestPeer, r.ops)
			}
			if r.kind == "ceiling" || r.kind == "baseline" {
				ref = r.ops
			}
		}
		for _, r := range groups[w] {
			ratio := func(ref float64) string {
				if ref == 0 || r.kind != "distkit" {
					return ""
				}
				return fmt.Sprintf("%.2f", r.ops/ref)
			}
			lat := func(d time.Duration) string {
				if d == 0 {
					return ""
				}
				return d.Round(time.Microsecond).String()
			}
			fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %.1f | %s | %s |\n", w, r.impl, r.ops, lat(r.p50), lat(r.p99), r.allocs, ratio(bestPeer), ratio(ref))
		}
	}
	b.WriteString(targets())
	b.WriteString("\n× best peer: ops/s divided by the fastest peer library's in the same workload. × ceiling/baseline: divided by redis-benchmark -P 16 (the server's limit) or, in-process, by the naive sync.Map + atomic baseline (for the Lax flush rows: by the same flush with no idle keys, so 1.00 means the idle keys cost nothing).\n\n![chart](report.svg)\n")
	if err := os.WriteFile(filepath.Join(*outDir, "report.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(b.String())
	return os.WriteFile(filepath.Join(*outDir, "report.svg"), []byte(svg(order, groups)), 0o644)
}

// find returns the result of workload whose implementation is impl.
func find(workload, impl string) *result {
	for i := range results {
		if results[i].workload == workload && results[i].impl == impl {
			return &results[i]
		}
	}
	return nil
}

// targets renders the ratios issue 21 sets targets for, from this run.
func targets() string {
	var b strings.Builder
	row := func(what, base, target string, v float64, ok bool) {
		if !ok {
			return
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f× | %s |\n", what, base, v, target)
	}
	thr := func(a, b *result) (float64, bool) {
		if a == nil || b == nil || b.ops == 0 {
			return 0, false
		}
		return a.ops / b.ops, true
	}
	lat := func(a, b *result) (float64, bool) {
		if a == nil || b == nil || b.p50 == 0 {
			return 0, false
		}
		return float64(a.p50) / float64(b.p50), true
	}
	const rue, gor = "distkit + rueidis (flush delay 20µs) (Strict)", "distkit + goredis (Strict)"
	ceil := "redis-benchmark -P 16 EVALSHA (ceiling)"
	w64, w256, w1 := "counter inc, 64 goroutine(s)", "counter inc, 256 goroutine(s)", "counter inc, 1 goroutine(s)"
	b.WriteString("\n## Targets (issue 21), ratios from this run\n\n| what | baseline in this run | ratio | target |\n|---|---|---:|---:|\n")
	v, ok := thr(find(w64, rue), find(w64, ceil))
	row("Strict Inc, rueidis, 64 goroutines", "redis-benchmark -P 16 EVALSHA", "≥ 1.0×", v, ok)
	v, ok = thr(find(w256, rue), find(w256, ceil))
	row("Strict Inc, rueidis, 256 goroutines", "redis-benchmark -P 16 EVALSHA", "≥ 1.3×", v, ok)
	v, ok = thr(find(w64, gor), find(w64, rue))
	row("Strict Inc, go-redis driver, 64 goroutines", "rueidis driver", "≥ 0.7×", v, ok)
	v, ok = thr(find(w256, gor), find(w256, rue))
	row("Strict Inc, go-redis driver, 256 goroutines", "rueidis driver", "≥ 0.7×", v, ok)
	v, ok = thr(find(w64, rue), find(w64, "distkit + rueidis (flush delay 20µs) (Strict, group commit off)"))
	row("Strict Inc, rueidis, 64 goroutines: group commit on", "group commit off", "—", v, ok)
	v, ok = thr(find(w64, rue), find(w64, "distkit + rueidis, no flush delay (Strict)"))
	row("Strict Inc, rueidis, 64 goroutines: MaxFlushDelay 20µs", "no flush delay", "—", v, ok)
	v, ok = lat(find(w1, "distkit + rueidis (Strict)"), find(w1, "raw rueidis EVALSHA (floor)"))
	row("Strict Inc p50 latency, 1 goroutine (lower is better)", "one raw EVALSHA per call", "≤ 1.1×", v, ok)
	const hand, unc = "mutex hand-off, 8 contenders", "mutex uncontended lock+release"
	v, ok = thr(find(hand, "distkit + rueidis"), find(hand, "rueidislock"))
	row("Mutex hand-off, 8 contenders, rueidis", "rueidislock", "≥ 2×", v, ok)
	v, ok = lat(find(unc, "distkit + rueidis"), find(unc, "redsync (go-redis)"))
	row("Mutex uncontended Lock+Release p50, rueidis (lower is better)", "redsync", "≤ 1.0×", v, ok)
	v, ok = lat(find(unc, "distkit + rueidis"), find(unc, "bsm/redislock (go-redis)"))
	row("Mutex uncontended Lock+Release p50, rueidis (lower is better)", "bsm/redislock", "≤ 1.0×", v, ok)
	v, ok = thr(find("instance counter inc, 64 goroutines", "distkit + rueidis (flush delay 20µs) (Strict)"), find("instance counter inc, 64 goroutines", "redis-benchmark -P 16 EVALSHA of counter inc (ceiling)"))
	row("Instance counter Strict Inc, rueidis, 64 goroutines", "redis-benchmark -P 16 EVALSHA", "≥ 0.5×", v, ok)
	return b.String()
}

// svg draws one group of horizontal bars per workload, each scaled to the
// group's largest value.
func svg(order []string, groups map[string][]result) string {
	const width, left, barH = 980, 330, 18
	var body strings.Builder
	y := 30
	colors := map[string]string{"distkit": "#2b7bb9", "peer": "#d9822b", "floor": "#8a8a8a", "ceiling": "#5a5a5a", "baseline": "#a0a0a0"}
	for _, w := range order {
		fmt.Fprintf(&body, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y, esc(w))
		y += 8
		maxOps := 0.0
		for _, r := range groups[w] {
			maxOps = math.Max(maxOps, r.ops)
		}
		for _, r := range groups[w] {
			bw := 1.0
			if maxOps > 0 {
				bw = math.Max(1, float64(width-left-130)*r.ops/maxOps)
			}
			fmt.Fprintf(&body, `<text x="20" y="%d">%s</text><rect x="%d" y="%d" width="%.0f" height="%d" fill="%s"/><text x="%.0f" y="%d">%s ops/s</text>`+"\n",
				y+14, esc(r.impl), left, y, bw, barH-4, colors[r.kind], float64(left)+bw+6, y+14, humanize(r.ops))
			y += barH
		}
		y += 22
	}
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="10" y="16" font-size="14">distkit vs Go peers (blue: distkit, orange: peers, grey: floors, ceilings, baselines)</text>
%s</svg>
`, width, y+10, body.String())
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func humanize(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
