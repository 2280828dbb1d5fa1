package instancecounter_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Issue 14: a key must never be poisoned. Once this instance's slice of a
// key is back to 0 (DelOnInstance, Set, Del), a small Inc fits in int64
// and must be accepted, whatever deltas the Lax flushed before.
func TestReview14_IncAfterOverwriteNotPoisoned(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"DelOnInstance", "Del", "Set", "SetOnInstance"} {
		t.Run(op, func(t *testing.T) {
			b := memory.New(memory.Options{})
			l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "a", FlushInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close(ctx)
			if _, _, err := l.Inc(ctx, "k", math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			switch op {
			case "DelOnInstance":
				_, _, err = l.DelOnInstance(ctx, "k")
			case "Del":
				_, _, err = l.Del(ctx, "k")
			case "Set":
				_, _, err = l.Set(ctx, "k", 0)
			case "SetOnInstance":
				_, _, err = l.SetOnInstance(ctx, "k", 0)
			}
			if err != nil {
				t.Fatal(err)
			}
			c, m, err := l.Get(ctx, "k")
			if err != nil || c != 0 || m != 0 {
				t.Fatalf("Get after %s = %d, %d, %v; want 0, 0", op, c, m, err)
			}
			c, m, err = l.Inc(ctx, "k", 1)
			if err != nil {
				t.Fatalf("Inc(k, 1) with cumulative and slice 0 after %s: %v (the key is poisoned)", op, err)
			}
			if c != 1 || m != 1 {
				t.Fatalf("Inc view = %d, %d; want 1, 1", c, m)
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if c, m, err := l.Get(ctx, "k"); err != nil || c != 1 || m != 1 {
				t.Fatalf("Get = %d, %d, %v; want 1, 1", c, m, err)
			}
		})
	}
}
