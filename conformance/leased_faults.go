package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// testLeasedBoundedWaits: the semaphore's and the election's bounded
// waits (the semaphore full, the election led) end within their budget
// plus o.Slack with the servers refusing connections, blackholed, and
// going down mid-wait, as the lock's do. (With the servers up, the
// conformance suite times them; Acquire with a ctx deadline takes the same
// path as TryAcquireWithTimeout.)
func testLeasedBoundedWaits(t *testing.T, h FaultHarness, o LockFaultOptions) []LockWaitTiming {
	p := prefix(t)
	ctx := context.Background()
	direct := h.Direct(t)
	held, err := newSem(t, direct, "res", 2, semaphore.Options{Prefix: p, TTL: 30 * time.Second}).Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer releasePermit(t, held)
	lead, err := newElection(t, direct, "sched", election.Options{Prefix: p, TTL: 30 * time.Second}).Campaign(ctx, "leader")
	if err != nil {
		t.Fatal(err)
	}
	defer lead.Resign(ctx)
	const d = 500 * time.Millisecond
	type call struct {
		name string
		run  func(b backend.Backend) error
	}
	semOpts := semaphore.Options{Prefix: p, TTL: lockWaitTTL, RetryInterval: 50 * time.Millisecond}
	calls := []call{
		{"Sem.TryAcquireWithTimeout", func(b backend.Backend) error {
			_, err := newSem(t, b, "res", 2, semOpts).TryAcquireWithTimeout(ctx, 1, d)
			if !errors.Is(err, distkit.ErrTimeout) {
				return fmt.Errorf("want ErrTimeout, got %w", err)
			}
			return nil
		}},
		{"Campaign(ctx 500ms)", func(b backend.Backend) error {
			cctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			e := newElection(t, b, "sched", election.Options{Prefix: p, TTL: lockWaitTTL, RetryInterval: 50 * time.Millisecond})
			_, err := e.Campaign(cctx, "candidate")
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("want DeadlineExceeded, got %w", err)
			}
			return nil
		}},
	}
	conditions := []struct {
		name  string
		fault func()
		mid   bool
	}{
		{"refused", h.Faults().Cut, false},
		{"blackholed", func() { h.Faults().Blackhole(true) }, false},
		{"refused mid-wait", h.Faults().Cut, true},
		{"blackholed mid-wait", func() { h.Faults().Blackhole(true) }, true},
	}
	var out []LockWaitTiming
	for _, c := range conditions {
		for _, cl := range calls {
			b, _ := h.NewClient(t)
			warm := newSem(t, b, "res", 2, semOpts)
			eventually(t, 10*time.Second, "the client answers", func() bool {
				_, err := warm.TryAcquire(ctx, 1)
				return errors.Is(err, distkit.ErrNotAcquired)
			})
			if c.fault != nil && !c.mid {
				c.fault()
			}
			var stopFault *time.Timer
			if c.mid {
				stopFault = time.AfterFunc(200*time.Millisecond, c.fault)
			}
			start := time.Now()
			err := cl.run(b)
			el := time.Since(start)
			if stopFault != nil {
				stopFault.Stop()
			}
			h.Faults().Restore()
			b.Close()
			out = append(out, LockWaitTiming{Condition: c.name, Call: cl.name, Budget: d, Elapsed: el, Err: err})
			if err != nil {
				t.Errorf("%s, %s: %v", c.name, cl.name, err)
			}
			if el > d+o.Slack {
				t.Errorf("%s, %s: took %v, budget %v + %v", c.name, cl.name, el, d, o.Slack)
			}
		}
	}
	var sb strings.Builder
	for _, w := range out {
		sb.WriteString("\n  " + w.String())
	}
	t.Logf("bounded waits:%s", sb.String())
	return out
}
