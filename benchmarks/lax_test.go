package benchmarks

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

// The Lax hot path is in-process, so the backend does not matter; the
// memory backend keeps the flusher cheap. The baselines are what a team
// would hand-write: a sync.Map of *atomic.Int64, and the bare atomic add.

var sink int64

func newBenchLax(b *testing.B) *counter.Lax {
	l, err := counter.NewLax(memory.New(memory.Options{}), counter.Options{Prefix: "bench-lax", AllowedLag: 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(context.Background()) })
	ctx := context.Background()
	l.Inc(ctx, "warm", 1)
	l.Inc(ctx, "warm", 1)
	return l
}

func BenchmarkLaxInc(b *testing.B) {
	l := newBenchLax(b)
	ctx := context.Background()
	key := "warm"
	b.ReportAllocs()
	for b.Loop() {
		v, _ := l.Inc(ctx, key, 1)
		sink = v
	}
}

func BenchmarkLaxIncParallel(b *testing.B) {
	l := newBenchLax(b)
	ctx := context.Background()
	key := "warm"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var s int64
		for pb.Next() {
			v, _ := l.Inc(ctx, key, 1)
			s += v
		}
		atomic.AddInt64(&sink, s)
	})
}

func newBaselineMap() *sync.Map {
	var m sync.Map
	m.Store("warm", new(atomic.Int64))
	return &m
}

func BenchmarkBaselineSyncMapAtomic(b *testing.B) {
	m := newBaselineMap()
	key := "warm"
	b.ReportAllocs()
	for b.Loop() {
		v, _ := m.Load(key)
		sink = v.(*atomic.Int64).Add(1)
	}
}

func BenchmarkBaselineSyncMapAtomicParallel(b *testing.B) {
	m := newBaselineMap()
	key := "warm"
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var s int64
		for pb.Next() {
			v, _ := m.Load(key)
			s += v.(*atomic.Int64).Add(1)
		}
		atomic.AddInt64(&sink, s)
	})
}

func BenchmarkBaselineAtomic(b *testing.B) {
	var n atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		sink = n.Add(1)
	}
}

func BenchmarkBaselineAtomicParallel(b *testing.B) {
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var s int64
		for pb.Next() {
			s += n.Add(1)
		}
		atomic.AddInt64(&sink, s)
	})
}
