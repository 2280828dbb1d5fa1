package inspect_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time { return c.t }

// The window the CLI shows is the one the limiter decides on: a bucket
// whose last millisecond is less than a window old is still counted (the
// view used to drop it a bucket early, showing room the limiter refused),
// and the oldest bucket leaves when the limiter says.
func TestLimitWindowMatchesLimiter(t *testing.T) {
	ctx := context.Background()
	// Server time stands still between the two reads (only Advance moves
	// it), so both see the same instant.
	b := memory.New(memory.Options{Clock: frozenClock{time.UnixMilli(1_800_000_000_000)}})
	t.Cleanup(func() { b.Close() })
	rl := testkit.NewRedisLimiter(t, b, ratelimit.Options{Prefix: "p", Buckets: 10}) // buckets of 100 ms
	lim := ratelimit.PerSecond(5)
	b.Advance(time.Duration(100-b.Now().UnixMilli()%100) * time.Millisecond) // the start of a bucket
	if d, err := rl.Absolute().Inc(ctx, "k", lim, 3); !d.Allowed || err != nil {
		t.Fatal(d, err)
	}
	for _, after := range []time.Duration{0, 950 * time.Millisecond, 50 * time.Millisecond, 48 * time.Millisecond, time.Millisecond, time.Millisecond} {
		b.Advance(after)
		l, err := inspect.ReadLimit(ctx, b, "p", "k")
		if err != nil {
			t.Fatal(err)
		}
		w := l.Window()
		st, err := rl.Absolute().Peek(ctx, "k", lim)
		if err != nil {
			t.Fatal(err)
		}
		var leaves time.Duration
		if !w.Oldest.IsZero() {
			leaves = w.Oldest.Sub(l.Now)
		}
		if w.Count != st.Count || leaves != st.ReleaseAfter {
			t.Fatalf("%v after the admission: inspect counts %d, oldest leaving in %v; the limiter counts %d, releasing in %v",
				after, w.Count, leaves, st.Count, st.ReleaseAfter)
		}
	}
}
