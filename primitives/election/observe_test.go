package election_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/election"
)

// TestElectionObservability: a failed term renewal is reported once and
// counted, its recovery reported; a lost term is reported, counted and
// its duration recorded with end "lost"; a resigned one with "resigned".
func TestElectionObservability(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	defer mem.Close()
	tel := testkit.NewTelemetry(t)
	e, err := election.New(mem, "leader", election.Options{Prefix: "obs", TTL: time.Second,
		Logger: tel.Logger, Observer: tel, MeterProvider: tel.Provider})
	if err != nil {
		t.Fatal(err)
	}
	ld, err := e.Campaign(ctx, "me")
	if err != nil {
		t.Fatal(err)
	}
	mem.FailNext(1, errors.New("injected")) // the next operation is the renewal
	ev := tel.WaitEvent(t, distkit.LeaseRenewFailing, 1, 10*time.Second)
	if ev.Primitive != "election" || ev.Name != "leader" || !errors.Is(ev.Err, distkit.ErrNotApplied) {
		t.Errorf("event %+v", ev)
	}
	tel.WaitEvent(t, distkit.LeaseRenewRecovered, 1, 10*time.Second)
	if err := ld.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ld, err = e.Campaign(ctx, "me again")
	if err != nil {
		t.Fatal(err)
	}
	mem.FlushAll()
	select {
	case <-ld.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("term not lost")
	}
	tel.WaitEvent(t, distkit.LeaseLost, 1, 10*time.Second)
	ld.Resign(ctx)
	if got, want := tel.LogEvents(t), []string{"WARN lease_renew_failing", "INFO lease_renew_recovered", "WARN lease_lost"}; !slices.Equal(got, want) {
		t.Errorf("log lines %v, want %v", got, want)
	}
	prefix := obs.AttrPrefix.String("obs")
	ms := tel.Collect(t)
	for _, c := range []struct {
		name, end string
		want      float64
	}{
		{obs.ElectTermDuration, "resigned", 1}, {obs.ElectTermDuration, "lost", 1},
		{obs.ElectTermsLost, "", 1}, {obs.ElectRenewFailures, "", 1},
	} {
		want := []any{prefix}
		if c.end != "" {
			want = append(want, obs.AttrEnd.String(c.end))
		}
		if v, _ := ms[c.name].Value(testkit.KVs(want...)...); v != c.want {
			t.Errorf("%s %s: %v, want %v", c.name, c.end, v, c.want)
		}
	}
}
