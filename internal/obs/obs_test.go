package obs_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/obs"
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
	f.Sent(t.Context(), 1, nil)
	f.Close()
}
