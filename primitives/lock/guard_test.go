package lock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// TestNilGuard: the usual "defer g.Release(ctx)" before the error check
// must not panic when the acquisition failed; a nil Guard holds nothing.
func TestNilGuard(t *testing.T) {
	ctx := context.Background()
	var g *lock.Guard
	st, err := g.Release(ctx)
	if !errors.Is(err, distkit.ErrNotHeld) || st != lock.Released {
		t.Fatalf("nil Guard Release: %v, %v; want Released, ErrNotHeld", st, err)
	}
	if g.State() != lock.Released || g.Token() != 0 || g.Attempt() != 0 {
		t.Fatalf("nil Guard: state %v, token %d, attempt %d", g.State(), g.Token(), g.Attempt())
	}
	select {
	case <-g.Done():
	default:
		t.Fatal("nil Guard: Done not closed")
	}
	if c := g.Context(ctx); !errors.Is(context.Cause(c), distkit.ErrNotHeld) {
		t.Fatalf("nil Guard: Context cause %v, want ErrNotHeld", context.Cause(c))
	}
}
