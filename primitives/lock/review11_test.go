package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/lock"
)

// Lock on a closed backend (or a closed client under it: both drivers
// report ErrClosed) returns at once with an error matching ErrClosed; it
// does not retry until its context ends, or forever without one.
func TestReview11_LockOnClosedBackend(t *testing.T) {
	b := memory.New(memory.Options{})
	m, err := lock.NewMutex(b, "closed", lock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rw, err := lock.NewRWMutex(b, "closed-rw", lock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	for name, f := range map[string]func(ctx context.Context) error{
		"Mutex.Lock":    func(ctx context.Context) error { _, err := m.Lock(ctx); return err },
		"RWMutex.Lock":  func(ctx context.Context) error { _, err := rw.Lock(ctx); return err },
		"RWMutex.RLock": func(ctx context.Context) error { _, err := rw.RLock(ctx); return err },
		"Mutex.TryLock": func(ctx context.Context) error { _, err := m.TryLock(ctx); return err },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		err := f(ctx)
		el := time.Since(start)
		cancel()
		if !errors.Is(err, backend.ErrClosed) || el > 500*time.Millisecond {
			t.Errorf("%s on a closed backend: %v after %v; want ErrClosed at once", name, err, el)
		}
	}
}
