//go:build chaos

package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// TestCloseWhileDown closes every primitive while its server is dead:
// each Close returns within its context (goleak in TestMain proves no
// goroutine is left).
func TestCloseWhileDown(t *testing.T) {
	ctx := context.Background()
	srv, err := redistest.Start(redistest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c := newClient(t, srv.Addr)
	lax, _ := counter.NewLax(c.b, counter.Options{Prefix: "chaos-down"})
	icl, err := instancecounter.NewLax(c.b, instancecounter.Options{Prefix: "chaos-down"})
	if err != nil {
		t.Fatal(err)
	}
	ics, _ := instancecounter.NewStrict(c.b, instancecounter.Options{Prefix: "chaos-down"})
	m, _ := lock.NewMutex(c.b, "res", lock.Options{Prefix: "chaos-down", TTL: 300 * time.Millisecond})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hy, _ := ratelimit.NewHybrid(c.b, ratelimit.Options{Prefix: "chaos-down"})
	rl, _ := ratelimit.NewRedis(c.b, ratelimit.Options{Prefix: "chaos-down"})
	lax.Inc(ctx, "k", 1)
	icl.Inc(ctx, "k", 1)
	hy.Absolute().Allow(ctx, "k", ratelimit.PerSecond(10))
	srv.Kill()
	for name, closeFn := range map[string]func(context.Context) error{
		"counter.Lax":            lax.Close,
		"instancecounter.Lax":    icl.Close,
		"instancecounter.Strict": ics.Close,
		"lock.Guard":             func(ctx context.Context) error { _, err := g.Release(ctx); return err },
		"ratelimit.Hybrid":       func(ctx context.Context) error { return hy.Close(ctx) },
		"ratelimit.Redis":        func(ctx context.Context) error { return rl.Close(ctx) },
	} {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		err := closeFn(cctx)
		el := time.Since(start)
		cancel()
		t.Logf("%s closed with the server down in %v: %v", name, el.Round(time.Millisecond), err)
		if el > 2*time.Second {
			t.Fatalf("%s: Close took %v", name, el)
		}
	}
}
