package obs_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/obs"
	"github.com/distkit-go/distkit/internal/testkit"
)

// TestReporterBoundsLogLines: a burst of state changes gives at most ten
// log lines; the Observer sees every one.
func TestReporterBoundsLogLines(t *testing.T) {
	var buf bytes.Buffer
	var events int
	r := obs.NewReporter(obs.Config{Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		Observer: distkit.ObserverFunc(func(distkit.Event) { events++ })}, "counter", "p", "")
	var h obs.Health
	for range 15 {
		h.Fail(r, distkit.FlushFailing, errors.New("down"))
		h.OK(r, distkit.FlushRecovered)
	}
	if events != 30 {
		t.Errorf("observer saw %d events, want 30", events)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 10 {
		t.Errorf("%d log lines, want 10:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "event=flush_failing") ||
		!strings.Contains(lines[0], "error=down") || !strings.Contains(lines[1], "level=INFO") {
		t.Errorf("lines:\n%s", buf.String())
	}
}

// TestHealthReportsTransitionsOnly: repeated failures report once.
func TestHealthReportsTransitionsOnly(t *testing.T) {
	var kinds []distkit.EventKind
	r := obs.NewReporter(obs.Config{Observer: distkit.ObserverFunc(func(e distkit.Event) { kinds = append(kinds, e.Kind) })}, "lock", "l", "")
	var h obs.Health
	h.OK(r, distkit.LeaseRenewRecovered)
	for range 3 {
		h.Fail(r, distkit.LeaseRenewFailing, errors.New("x"))
	}
	h.OK(r, distkit.LeaseRenewRecovered)
	h.OK(r, distkit.LeaseRenewRecovered)
	if len(kinds) != 2 || kinds[0] != distkit.LeaseRenewFailing || kinds[1] != distkit.LeaseRenewRecovered {
		t.Errorf("events %v", kinds)
	}
}

// TestNilIsSilent: nothing configured, nothing made.
func TestNilIsSilent(t *testing.T) {
	if r := obs.NewReporter(obs.Config{}, "counter", "p", ""); r != nil {
		t.Error("reporter without logger or observer")
	}
	if obs.For(nil) != nil {
		t.Error("instruments without a provider")
	}
	var r *obs.Reporter
	r.Emit(distkit.FlushFailing, nil) // no panic
	var f *obs.Flusher
	f.Sent(t.Context(), 1, nil, nil, nil)
	f.Close()
}

// TestWithOutcome: backend error classes keep their names; a primitive's
// own error is "error".
func TestWithOutcome(t *testing.T) {
	tel := testkit.NewTelemetry(t)
	c, err := tel.Provider.Meter("t").Int64Counter("c")
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range []error{nil, driver.NotApplied(errors.New("x")), driver.Indeterminate(errors.New("x")),
		&backend.ScriptError{Script: "s", Msg: "ERR"}, distkit.ErrDuplicateInstance, context.DeadlineExceeded} {
		c.Add(context.Background(), int64(1)<<i, obs.WithOutcome("p", err))
	}
	m := tel.Collect(t)["c"]
	for outcome, want := range map[string]float64{"ok": 1, "not_applied": 2, "indeterminate": 4 + 32, "script_error": 8, "error": 16} {
		if v, _ := m.Value(obs.AttrOutcome.String(outcome)); v != want {
			t.Errorf("%s: %v, want %v", outcome, v, want)
		}
	}
}
