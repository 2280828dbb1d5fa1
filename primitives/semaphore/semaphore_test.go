package semaphore_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/semaphore"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A Permit dropped without Release is reported lost and its units come
// back at once, not after the TTL.
func TestCollectedPermitIsReleased(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	s, err := semaphore.New(b, "res", 1, semaphore.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := func() <-chan struct{} {
		p, err := s.Acquire(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p.Done()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-done:
		default:
			if time.Now().After(deadline) {
				t.Fatal("a collected Permit was not reported lost")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	p, err := s.TryAcquireWithTimeout(ctx, 1, 5*time.Second)
	if err != nil {
		t.Fatalf("units of a collected Permit did not come back: %v", err)
	}
	p.Release(ctx)
}

// An acquisition that fails at the backend says so (not "not acquired").
func TestBackendErrorIsNotNotAcquired(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	s, err := semaphore.New(b, "res", 1, semaphore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.FailNext(1, distkit.ErrNotApplied)
	if _, err := s.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotApplied) || errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("TryAcquire on a failing backend: %v", err)
	}
	b.Close()
	if _, err := s.Acquire(ctx, 1); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Acquire on a closed backend: %v, want ErrClosed at once", err)
	}
}
