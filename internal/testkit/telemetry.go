package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/distkit-go/distkit"
)

// Telemetry records what a primitive reports through Options.Logger,
// Observer and MeterProvider: log lines (JSON), events and metrics (an
// OpenTelemetry SDK manual reader).
type Telemetry struct {
	Logger   *slog.Logger
	Provider *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader

	mu     sync.Mutex
	logs   bytes.Buffer
	events []distkit.Event
}

// NewTelemetry returns a Telemetry, shut down when t ends.
func NewTelemetry(t *testing.T) *Telemetry {
	tel := &Telemetry{reader: sdkmetric.NewManualReader()}
	tel.Provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.Logger = slog.New(slog.NewJSONHandler(lockedWriter{tel}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() { tel.Provider.Shutdown(context.Background()) })
	return tel
}

type lockedWriter struct{ tel *Telemetry }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.tel.mu.Lock()
	defer w.tel.mu.Unlock()
	return w.tel.logs.Write(p)
}

// Observe records e (Telemetry is a distkit.Observer).
func (tel *Telemetry) Observe(e distkit.Event) {
	tel.mu.Lock()
	tel.events = append(tel.events, e)
	tel.mu.Unlock()
}

// Events returns the events observed so far.
func (tel *Telemetry) Events() []distkit.Event {
	tel.mu.Lock()
	defer tel.mu.Unlock()
	return append([]distkit.Event(nil), tel.events...)
}

// Count returns how many events of kind were observed.
func (tel *Telemetry) Count(kind distkit.EventKind) int {
	n := 0
	for _, e := range tel.Events() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// WaitEvent waits (up to d) until n events of kind were observed, and
// returns the last one.
func (tel *Telemetry) WaitEvent(t *testing.T, kind distkit.EventKind, n int, d time.Duration) distkit.Event {
	t.Helper()
	Eventually(t, d, "event "+kind.String(), func() bool { return tel.Count(kind) >= n })
	var last distkit.Event
	for _, e := range tel.Events() {
		if e.Kind == kind {
			last = e
		}
	}
	return last
}

// Logs returns the log lines so far, decoded.
func (tel *Telemetry) Logs(t *testing.T) []map[string]any {
	t.Helper()
	tel.mu.Lock()
	text := tel.logs.String()
	tel.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		m := map[string]any{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// LogEvents returns the "event" attribute of each log line with its level.
func (tel *Telemetry) LogEvents(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range tel.Logs(t) {
		ev, _ := m["event"].(string)
		lvl, _ := m["level"].(string)
		out = append(out, lvl+" "+ev)
	}
	return out
}

// Metric is one collected metric.
type Metric struct {
	Unit string
	Data metricdata.Aggregation
}

// Collect returns every metric by name.
func (tel *Telemetry) Collect(t *testing.T) map[string]Metric {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]Metric{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = Metric{Unit: m.Unit, Data: m.Data}
		}
	}
	return out
}

func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		v, ok := set.Value(kv.Key)
		if !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// Value sums the data points of the named metric whose attributes include
// want: a counter's sum, a gauge's value, a histogram's count. ok is false
// when no data point matches.
func (m Metric) Value(want ...attribute.KeyValue) (v float64, ok bool) {
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			if matches(dp.Attributes, want) {
				v, ok = v+float64(dp.Value), true
			}
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			if matches(dp.Attributes, want) {
				v, ok = v+float64(dp.Value), true
			}
		}
	case metricdata.Gauge[float64]:
		for _, dp := range d.DataPoints {
			if matches(dp.Attributes, want) {
				v, ok = v+dp.Value, true
			}
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			if matches(dp.Attributes, want) {
				v, ok = v+float64(dp.Count), true
			}
		}
	}
	return v, ok
}

// Sum returns the named metric's Value (0 when absent).
func (tel *Telemetry) Sum(t *testing.T, name string, want ...attribute.KeyValue) float64 {
	t.Helper()
	v, _ := tel.Collect(t)[name].Value(want...)
	return v
}

// KVs converts attribute.KeyValue values held as any (for test tables).
func KVs(in ...any) []attribute.KeyValue {
	out := make([]attribute.KeyValue, len(in))
	for i, v := range in {
		out[i] = v.(attribute.KeyValue)
	}
	return out
}
