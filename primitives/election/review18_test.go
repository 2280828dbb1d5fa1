package election_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/election"
)

// TestReview18_ObserveLoopFailureIsVisible: Election.Observe runs a
// background goroutine that reads the term every RetryInterval and
// "retries backend errors" — silently: with the backend failing, a
// follower watching the leader sees no new term and nothing says why.
// Issue 18: every background loop's failure is a log line, a hook call
// and a metric, and its recovery is reported, once per state change.
func TestReview18_ObserveLoopFailureIsVisible(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := testkit.NewFaulty(mem)
	tel := testkit.NewTelemetry(t)
	e, err := election.New(b, "watched", election.Options{Prefix: "r18", RetryInterval: 5 * time.Millisecond,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	b.FailScript("election-leader", errors.New("injected"))
	ch := e.Observe(ctx)
	defer func() {
		cancel()
		for range ch {
		}
	}()
	failing := func(want bool) int {
		n := 0
		for _, ev := range tel.Events() {
			if ev.Primitive == "election" && ev.Name == "watched" && ev.Kind.Failing() == want {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, 10*time.Second, "a failing event of the Observe loop", func() bool { return failing(true) > 0 })
	failures := func() float64 {
		sum := 0.0
		for name := range tel.Collect(t) {
			if strings.HasPrefix(name, "distkit.election.") && strings.HasSuffix(name, ".failures") {
				sum += tel.Sum(t, name, obs.AttrPrefix.String("r18"))
			}
		}
		return sum
	}
	testkit.Eventually(t, 10*time.Second, "3 failed reads counted", func() bool { return failures() >= 3 })
	b.FailScript("election-leader", nil)
	testkit.Eventually(t, 10*time.Second, "a recovery event of the Observe loop", func() bool { return failing(false) > 0 })
	if n := failing(true); n != 1 {
		t.Errorf("%d failing events, want 1 (one per state change)", n)
	}
	logs := tel.LogEvents(t)
	if len(logs) != 2 || !strings.HasPrefix(logs[0], "WARN ") || !strings.HasPrefix(logs[1], "INFO ") {
		t.Errorf("log lines %v, want one WARN then one INFO", logs)
	}
}
