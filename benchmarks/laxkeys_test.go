package benchmarks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// Lax Inc over many distinct warm keys (issue 14): each op takes the next
// key of a fixed, shuffled list, so successive ops hit different keys, as
// per-user or per-path counters do. The Lax flushes every 20 ms (the
// default) against a backend that acknowledges batches at once
// (testkit.AckBackend): the flusher does its real work, the backend costs
// nothing. The baseline is the naive sync.Map.Load + atomic.Int64.Add on
// the same keys in the same order.

var keySets = map[int][]string{}

// benchKeys returns n distinct keys in a fixed random order.
func benchKeys(n int) []string {
	if ks, ok := keySets[n]; ok {
		return ks
	}
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("user:%d:requests", i)
	}
	r := rand.New(rand.NewPCG(14, uint64(n)))
	r.Shuffle(n, func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	keySets[n] = ks
	return ks
}

var keyCounts = []struct {
	name string
	n    int
}{{"1key", 1}, {"1k", 1000}, {"1M", 1_000_000}}

func newWarmLax(b testing.TB, keys []string) *counter.Lax {
	l, err := counter.NewLax(testkit.NewAckBackend(), counter.Options{Prefix: "bench-lax-keys"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(context.Background()) })
	ctx := context.Background()
	for range 2 {
		for _, k := range keys {
			l.Inc(ctx, k, 1)
		}
	}
	if err := l.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	runtime.GC() // the setup's garbage is not collected inside the measurement
	return l
}

func newWarmMap(keys []string) *sync.Map {
	var m sync.Map
	for _, k := range keys {
		m.Store(k, new(atomic.Int64))
	}
	runtime.GC()
	return &m
}

func BenchmarkLaxIncKeys(b *testing.B) {
	ctx := context.Background()
	for _, kc := range keyCounts {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			l := newWarmLax(b, keys)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v, _ := l.Inc(ctx, keys[i], 1)
				sink = v
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

func BenchmarkBaselineSyncMapAtomicKeys(b *testing.B) {
	for _, kc := range keyCounts {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			m := newWarmMap(keys)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v, _ := m.Load(keys[i])
				sink = v.(*atomic.Int64).Add(1)
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

var startAt atomic.Uint64

func BenchmarkLaxIncKeysParallel(b *testing.B) {
	ctx := context.Background()
	for _, kc := range keyCounts {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			l := newWarmLax(b, keys)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(startAt.Add(7919) % uint64(len(keys)))
				var s int64
				for pb.Next() {
					v, _ := l.Inc(ctx, keys[i], 1)
					s += v
					if i++; i == len(keys) {
						i = 0
					}
				}
				atomic.AddInt64(&sink, s)
			})
		})
	}
}

func BenchmarkBaselineSyncMapAtomicKeysParallel(b *testing.B) {
	for _, kc := range keyCounts {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			m := newWarmMap(keys)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(startAt.Add(7919) % uint64(len(keys)))
				var s int64
				for pb.Next() {
					v, _ := m.Load(keys[i])
					s += v.(*atomic.Int64).Add(1)
					if i++; i == len(keys) {
						i = 0
					}
				}
				atomic.AddInt64(&sink, s)
			})
		})
	}
}

// BenchmarkLaxIncKeysInterleaved alternates chunks of 10 000 Lax Incs and
// 10 000 naive sync.Map + atomic Incs on the same keys in the same order
// and reports both ns/op and Lax's speed relative to the naive code
// (speed-x > 1: Lax is faster): both see the same background load, so the
// ratio holds on a busy machine where separate runs would not compare.
func BenchmarkLaxIncKeysInterleaved(b *testing.B) {
	ctx := context.Background()
	for _, kc := range keyCounts {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			l := newWarmLax(b, keys)
			m := newWarmMap(keys)
			b.ResetTimer()
			var tl, tn time.Duration
			il, in := 0, 0
			for n := b.N; n > 0; {
				c := min(n, 10_000)
				n -= c
				t0 := time.Now()
				for range c {
					v, _ := l.Inc(ctx, keys[il], 1)
					sink = v
					if il++; il == len(keys) {
						il = 0
					}
				}
				t1 := time.Now()
				for range c {
					v, _ := m.Load(keys[in])
					sink = v.(*atomic.Int64).Add(1)
					if in++; in == len(keys) {
						in = 0
					}
				}
				tl, tn = tl+t1.Sub(t0), tn+time.Since(t1)
			}
			b.ReportMetric(float64(tl)/float64(b.N), "lax-ns/op")
			b.ReportMetric(float64(tn)/float64(b.N), "naive-ns/op")
			b.ReportMetric(float64(tn)/float64(tl), "speed-x")
		})
	}
}

// BenchmarkLaxFlushOnePending: one flush carrying one pending key while
// 0 or 1 M other keys sit idle (warm, nothing pending), on the memory
// backend. Its cost and allocations must not depend on the idle keys.
func BenchmarkLaxFlushOnePending(b *testing.B) {
	ctx := context.Background()
	for _, idle := range []struct {
		name string
		n    int
	}{{"0idle", 0}, {"1Midle", 1_000_000}} {
		b.Run(idle.name, func(b *testing.B) {
			l, err := counter.NewLax(memory.New(memory.Options{}), counter.Options{Prefix: "bench-lax-flush", AllowedLag: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close(ctx)
			for _, k := range benchKeys(idle.n)[:idle.n] {
				l.Inc(ctx, k, 1)
			}
			if err := l.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				l.Inc(ctx, "hot", 1)
				if err := l.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
