package benchmarks

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// BenchmarkObserved measures what observability costs when it is on: a
// Lax Inc and a Local limiter decision with an OpenTelemetry SDK meter
// provider (manual reader), and a Strict Inc on the memory backend wrapped
// by otelbackend (SDK tracer, always sampled, no exporter). Compare with
// BenchmarkLaxInc, BenchmarkRateLimitLocal and BenchmarkStrictInc/memory,
// which run with none (the default).
func BenchmarkObserved(b *testing.B) {
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() {
		mp.Shutdown(ctx)
		tp.Shutdown(ctx)
	})
	b.Run("LaxInc", func(b *testing.B) {
		l, err := counter.NewLax(memory.New(memory.Options{}), counter.Options{Prefix: "bench-lax-obs",
			AllowedLag: 20 * time.Millisecond, MeterProvider: mp})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close(ctx) })
		b.ReportAllocs()
		for b.Loop() {
			v, _ := l.Inc(ctx, "warm", 1)
			sink = v
		}
	})
	b.Run("RateLimitLocal", func(b *testing.B) {
		l, err := ratelimit.NewLocal(ratelimit.Options{MeterProvider: mp})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close(ctx) })
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
	})
	b.Run("StrictInc/memory+otelbackend", func(b *testing.B) {
		be := otelbackend.Wrap(memory.New(memory.Options{}), otelbackend.Options{TracerProvider: tp, MeterProvider: mp})
		c, err := counter.NewStrict(be, counter.Options{Prefix: "bench-strict-obs"})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Inc(ctx, "k", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
