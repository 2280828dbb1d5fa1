package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Close returns within its context, whatever the backend does: the
// Hybrid's final push and the sync in progress give up when ctx ends.
func TestCloseWithinContext(t *testing.T) {
	b := memory.New(memory.Options{})
	h, err := ratelimit.NewHybrid(b, ratelimit.Options{SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ratelimit.NewRedis(b, ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.NewLocal(ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.Absolute().Allow(context.Background(), "k", ratelimit.PerSecond(10))
	b.Latency(time.Hour)
	time.Sleep(20 * time.Millisecond) // a background sync now waits on the backend
	for name, closeFn := range map[string]func(context.Context) error{"Hybrid": h.Close, "Redis": r.Close, "Local": l.Close} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := closeFn(ctx)
		cancel()
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("%s.Close took %v with a 50ms context (%v)", name, d, err)
		}
		if name == "Hybrid" && err == nil {
			t.Fatal("Hybrid.Close reported success although its increments were not pushed")
		}
	}
}
