package benchmarks

import (
	"context"
	"testing"

	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// A limit high enough that decisions stay admitted (the cost measured is a
// decision, not a rejection).
var benchLimit = ratelimit.PerSecond(1_000_000_000)

func BenchmarkRateLimitLocal(b *testing.B) {
	ctx := context.Background()
	l, err := ratelimit.NewLocal(ratelimit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(ctx)
	a := l.Absolute()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Inc(ctx, "k", benchLimit, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRateLimitRedis: one script per decision, 64 goroutines.
func BenchmarkRateLimitRedis(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			r, err := ratelimit.NewRedis(be.new(b), ratelimit.Options{Prefix: "bench-rl"})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close(ctx)
			a := r.Absolute()
			parallel64(b, func() error { _, err := a.Inc(ctx, "k", benchLimit, 1); return err })
		})
	}
}

// BenchmarkRateLimitHybrid: local decisions, one sync round trip per 10 ms.
func BenchmarkRateLimitHybrid(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			h, err := ratelimit.NewHybrid(be.new(b), ratelimit.Options{Prefix: "bench-rl"})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(ctx)
			a := h.Absolute()
			a.Inc(ctx, "k", benchLimit, 1)
			parallel64(b, func() error { _, err := a.Inc(ctx, "k", benchLimit, 1); return err })
		})
	}
}
