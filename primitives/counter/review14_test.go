package counter_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
)

// A key's refused delta is superseded by Set, Del and Clear (Lax docs),
// including the part held by an entry the Lax retired (its sum of
// accepted deltas left int64 while the view stayed in range): after the
// overwrite, that delta must neither stay in Failed/Pending nor be applied
// later on top of the overwritten value.
func TestReview14_OverwriteSupersedesRetiredRefusedDelta(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"Set", "Del", "Clear"} {
		t.Run(op, func(t *testing.T) {
			b := memory.New(memory.Options{})
			s, _ := counter.NewStrict(b.Connect(), counter.Options{Prefix: "t"})
			l := newLax(t, b, time.Hour)
			defer l.Close(ctx)
			if _, err := s.Set(ctx, "k", -math.MaxInt64); err != nil {
				t.Fatal(err)
			}
			if v, err := l.Get(ctx, "k"); err != nil || v != -math.MaxInt64 {
				t.Fatalf("Get = %d, %v", v, err)
			}
			if v, err := l.Inc(ctx, "k", math.MaxInt64); err != nil || v != 0 {
				t.Fatalf("Inc = %d, %v", v, err)
			}
			// The entry's sum would leave int64; the view (1) does not.
			if v, err := l.Inc(ctx, "k", 1); err != nil || v != 1 {
				t.Fatalf("Inc = %d, %v", v, err)
			}
			// Another process makes room for the +1 only.
			if _, err := s.Set(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
			if err := l.Flush(ctx); !errors.Is(err, distkit.ErrOverflow) {
				t.Fatalf("Flush = %v; want the +MaxInt64 refused", err)
			}
			switch op {
			case "Set":
				if _, err := l.Set(ctx, "k", -5); err != nil {
					t.Fatal(err)
				}
			case "Del":
				if _, err := l.Del(ctx, "k"); err != nil {
					t.Fatal(err)
				}
			case "Clear":
				if err := l.Clear(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if f, p := l.Failed(), l.Pending(); len(f) != 0 || len(p) != 0 {
				t.Errorf("after %s: Failed %v, Pending %v; want both empty (the refused delta is superseded)", op, f, p)
			}
			if err := l.Flush(ctx); err != nil {
				t.Errorf("Flush after %s: %v", op, err)
			}
			want := int64(0)
			if op == "Set" {
				want = -5
			}
			if v, err := s.Get(ctx, "k"); err != nil || v != want {
				t.Fatalf("remote after %s and a flush = %d, %v; want %d (the superseded delta applied)", op, v, err, want)
			}
		})
	}
}
