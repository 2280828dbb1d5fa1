package election_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/election"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A Leadership dropped without Resign is reported lost and resigned at
// once: the next candidate need not wait for the TTL.
func TestCollectedLeadershipResigns(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	e, err := election.New(b, "sched", election.Options{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	done := func() <-chan struct{} {
		l, err := e.Campaign(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return l.Done()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		select {
		case <-done:
		default:
			if time.Now().After(deadline) {
				t.Fatal("a collected Leadership was not reported lost")
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		break
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.Campaign(cctx, "b")
	if err != nil {
		t.Fatalf("a collected Leadership's term did not end: %v", err)
	}
	l.Resign(ctx)
}

// A campaign on a closed backend ends at once with ErrClosed; an observer
// of a failing backend keeps going and ends with its ctx.
func TestBackendErrors(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	e, err := election.New(b, "sched", election.Options{RetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b.FailNext(3, distkit.ErrNotApplied)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, err := e.Campaign(cctx, "a") // transient errors are retried
	if err != nil {
		t.Fatalf("Campaign across transient errors: %v", err)
	}
	l.Resign(ctx)
	b.Close()
	if _, err := e.Campaign(ctx, "a"); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Campaign on a closed backend: %v", err)
	}
	if _, err := e.Leader(ctx); !errors.Is(err, distkit.ErrClosed) {
		t.Fatalf("Leader on a closed backend: %v", err)
	}
	octx, ocancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer ocancel()
	for range e.Observe(octx) {
		t.Fatal("an observer of a closed backend reported a term")
	}
}
