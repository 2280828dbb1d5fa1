package benchmarks

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// BenchmarkInstanceStrictInc: one script per Inc, per backend.
func BenchmarkInstanceStrictInc(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			c, err := instancecounter.NewStrict(be.new(b), instancecounter.Options{Prefix: "bench-ic"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Inc(ctx, "k", 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInstanceStrictIncKeys: Strict Inc over many distinct keys on
// the memory backend. "new": every Inc is the first on its key (b.N keys
// in all), whose in-process cost must not grow with the keys used before;
// "warm/N": Inc rotating over N keys already used.
func BenchmarkInstanceStrictIncKeys(b *testing.B) {
	ctx := context.Background()
	newStrict := func(b *testing.B) *instancecounter.Strict {
		c, err := instancecounter.NewStrict(memory.New(memory.Options{}), instancecounter.Options{Prefix: "bench-ic-strict-keys"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close(ctx) })
		return c
	}
	b.Run("new", func(b *testing.B) {
		c := newStrict(b)
		keys := benchKeys(b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, _, err := c.Inc(ctx, keys[i], 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, kc := range []struct {
		name string
		n    int
	}{{"warm/1k", 1000}, {"warm/100k", 100_000}} {
		b.Run(kc.name, func(b *testing.B) {
			c := newStrict(b)
			keys := benchKeys(kc.n)
			for _, k := range keys {
				if _, _, err := c.Inc(ctx, k, 1); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, err := c.Inc(ctx, keys[i], 1); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkInstanceLaxInc: the in-process warm path (compare with
// BenchmarkBaselineSyncMapAtomic).
func BenchmarkInstanceLaxInc(b *testing.B) {
	ctx := context.Background()
	c, err := instancecounter.NewLax(memory.New(memory.Options{}), instancecounter.Options{Prefix: "bench-ic"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	key := "warm"
	c.Inc(ctx, key, 1)
	b.ReportAllocs()
	for b.Loop() {
		v, _, _ := c.Inc(ctx, key, 1)
		sink = v
	}
}

func BenchmarkInstanceLaxIncParallel(b *testing.B) {
	ctx := context.Background()
	c, err := instancecounter.NewLax(memory.New(memory.Options{}), instancecounter.Options{Prefix: "bench-ic"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(ctx)
	key := "warm"
	c.Inc(ctx, key, 1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Inc(ctx, key, 1)
		}
	})
}

// newWarmInstanceLax returns a Lax on the memory backend whose keys have
// each been flushed once (a slice of 1), flushing every hour.
func newWarmInstanceLax(b *testing.B, keys []string) *instancecounter.Lax {
	ctx := context.Background()
	c, err := instancecounter.NewLax(memory.New(memory.Options{}), instancecounter.Options{Prefix: "bench-ic-keys", FlushInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close(ctx) })
	for _, k := range keys {
		c.Inc(ctx, k, 1)
	}
	if err := c.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	return c
}

// BenchmarkInstanceLaxIncKeys: instancecounter.Lax Inc rotating over many
// distinct warm keys (compare with BenchmarkBaselineSyncMapAtomicKeys; the
// deltas stay pending: the flusher runs hourly).
func BenchmarkInstanceLaxIncKeys(b *testing.B) {
	ctx := context.Background()
	for _, kc := range []struct {
		name string
		n    int
	}{{"1key", 1}, {"1k", 1000}, {"100k", 100_000}} {
		b.Run(kc.name, func(b *testing.B) {
			keys := benchKeys(kc.n)
			c := newWarmInstanceLax(b, keys)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				v, _, _ := c.Inc(ctx, keys[i], 1)
				sink = v
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkInstanceLaxFlushOnePending: one flush carrying one pending key
// while 0 or 100 k other keys sit idle (each with a slice, nothing
// pending), on the memory backend. Its cost and allocations must not
// depend on the idle keys.
func BenchmarkInstanceLaxFlushOnePending(b *testing.B) {
	ctx := context.Background()
	for _, idle := range []struct {
		name string
		n    int
	}{{"0idle", 0}, {"100kidle", 100_000}} {
		b.Run(idle.name, func(b *testing.B) {
			c := newWarmInstanceLax(b, benchKeys(idle.n)[:idle.n])
			b.ReportAllocs()
			for b.Loop() {
				c.Inc(ctx, "hot", 1)
				if err := c.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
