package benchmarks

import (
	"context"
	"testing"

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
