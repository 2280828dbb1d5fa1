package instancecounter_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

func cumulative(t *testing.T, b *memory.Backend) int64 {
	t.Helper()
	ctx := context.Background()
	r, err := instancecounter.NewStrict(b.Connect(), instancecounter.Options{Prefix: "t", InstanceID: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	c, _, err := r.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A Lax dropped without Close flushes its pending deltas once; goleak in
// TestMain proves its goroutine ended.
func TestLaxCollectedWithoutCloseFlushes(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	func() {
		l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "gone", FlushInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		l.Inc(ctx, "k", 42)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for cumulative(t, b) != 42 {
		if time.Now().After(deadline) {
			t.Fatal("a collected Lax did not flush its pending delta")
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
}

// Every acknowledged Inc is in the total after Close; only those told
// "indeterminate" may or may not be.
func TestLaxIncRacingClose(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		b := memory.New(memory.Options{})
		l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "t", InstanceID: "racer",
			FlushInterval: time.Millisecond, KeepSlicesOnClose: true})
		if err != nil {
			t.Fatal(err)
		}
		var acked, racing atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					_, _, err := l.Inc(ctx, "k", 1)
					switch {
					case err == nil:
						acked.Add(1)
						continue
					case errors.Is(err, distkit.ErrIndeterminate) && errors.Is(err, distkit.ErrClosed):
						racing.Add(1)
					case !errors.Is(err, distkit.ErrClosed):
						t.Error(err)
					}
					return
				}
			}()
		}
		time.Sleep(2 * time.Millisecond)
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if got := cumulative(t, b); got < acked.Load() || got > acked.Load()+racing.Load() {
			t.Fatalf("round %d: cumulative %d, acknowledged %d, indeterminate %d", round, got, acked.Load(), racing.Load())
		}
	}
}
