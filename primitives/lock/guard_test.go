package lock_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
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

// TestGuardNotCollectedWhileReleasing: a Guard whose Release is running is
// in use; a GC meanwhile must not report it lost (the call's receiver was
// otherwise dead after its last use, before the I/O).
func TestGuardNotCollectedWhileReleasing(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	m, err := lock.NewMutex(b, "res", lock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for i := range 30 {
		g, err := m.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b.Latency(5 * time.Millisecond) // the release takes a while: GCs run meanwhile
		st, err := g.Release(ctx)
		b.Latency(0)
		if st != lock.Released || err != nil {
			t.Fatalf("round %d: Release: %v, %v", i, st, err)
		}
	}
}
