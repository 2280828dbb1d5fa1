package benchmarks

import (
	"context"
	"testing"

	"github.com/distkit-go/distkit/primitives/counter"
)

// BenchmarkStrictInc measures one Strict.Inc (one script, one round trip)
// per backend, from one goroutine and from 64.
func BenchmarkStrictInc(b *testing.B) {
	ctx := context.Background()
	for _, be := range backends(b) {
		b.Run(be.name, func(b *testing.B) {
			c, err := counter.NewStrict(be.new(b), counter.Options{Prefix: "bench-strict"})
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
		b.Run(be.name+"/parallel64", func(b *testing.B) {
			c, err := counter.NewStrict(be.new(b), counter.Options{Prefix: "bench-strict"})
			if err != nil {
				b.Fatal(err)
			}
			parallel64(b, func() error { _, err := c.Inc(ctx, "k", 1); return err })
		})
	}
}
