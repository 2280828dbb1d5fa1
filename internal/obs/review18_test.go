package obs_test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/metric/noop"
	tnoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/internal/obs"
)

// instrument is what the code registers: kind ("counter", "gauge",
// "histogram") and unit.
type instrument struct{ kind, unit string }

// recordingProvider is a MeterProvider that remembers every instrument
// made through it.
type recordingProvider struct {
	embedded.MeterProvider
	mu   sync.Mutex
	seen map[string]instrument
}

func (p *recordingProvider) Meter(string, ...metric.MeterOption) metric.Meter {
	return recordingMeter{Meter: noop.Meter{}, p: p}
}

func (p *recordingProvider) add(name, kind, unit string) {
	p.mu.Lock()
	p.seen[name] = instrument{kind, unit}
	p.mu.Unlock()
}

type recordingMeter struct {
	noop.Meter
	p *recordingProvider
}

func (m recordingMeter) Int64Counter(name string, o ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	m.p.add(name, "counter", metric.NewInt64CounterConfig(o...).Unit())
	return m.Meter.Int64Counter(name, o...)
}
func (m recordingMeter) Float64Counter(name string, o ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	m.p.add(name, "counter", metric.NewFloat64CounterConfig(o...).Unit())
	return m.Meter.Float64Counter(name, o...)
}
func (m recordingMeter) Int64UpDownCounter(name string, o ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	m.p.add(name, "updowncounter", metric.NewInt64UpDownCounterConfig(o...).Unit())
	return m.Meter.Int64UpDownCounter(name, o...)
}
func (m recordingMeter) Int64Histogram(name string, o ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	m.p.add(name, "histogram", metric.NewInt64HistogramConfig(o...).Unit())
	return m.Meter.Int64Histogram(name, o...)
}
func (m recordingMeter) Float64Histogram(name string, o ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	m.p.add(name, "histogram", metric.NewFloat64HistogramConfig(o...).Unit())
	return m.Meter.Float64Histogram(name, o...)
}
func (m recordingMeter) Int64Gauge(name string, o ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	m.p.add(name, "gauge", metric.NewInt64GaugeConfig(o...).Unit())
	return m.Meter.Int64Gauge(name, o...)
}
func (m recordingMeter) Float64Gauge(name string, o ...metric.Float64GaugeOption) (metric.Float64Gauge, error) {
	m.p.add(name, "gauge", metric.NewFloat64GaugeConfig(o...).Unit())
	return m.Meter.Float64Gauge(name, o...)
}
func (m recordingMeter) Int64ObservableGauge(name string, o ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	m.p.add(name, "gauge", metric.NewInt64ObservableGaugeConfig(o...).Unit())
	return m.Meter.Int64ObservableGauge(name, o...)
}
func (m recordingMeter) Float64ObservableGauge(name string, o ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	m.p.add(name, "gauge", metric.NewFloat64ObservableGaugeConfig(o...).Unit())
	return m.Meter.Float64ObservableGauge(name, o...)
}
func (m recordingMeter) Int64ObservableCounter(name string, o ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	m.p.add(name, "counter", metric.NewInt64ObservableCounterConfig(o...).Unit())
	return m.Meter.Int64ObservableCounter(name, o...)
}

// readmeMetrics reads the README's metric table: name → instrument.
// A row naming several metrics ("`a.b.x`, `.y`") shares the first name's
// stem; "as above" refers to the row of the same suffix under
// distkit.counter.
func readmeMetrics(t *testing.T) map[string]instrument {
	t.Helper()
	text, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(text)
	i := strings.Index(section, "\n## Observability")
	if i < 0 {
		t.Fatal("README has no Observability section")
	}
	section = section[i+1:]
	if j := strings.Index(section[3:], "\n## "); j >= 0 {
		section = section[:j+3]
	}
	row := regexp.MustCompile("(?m)^\\| (`distkit\\.[^|]*) \\| ([^|]+) \\| ([^|]+) \\|")
	code := regexp.MustCompile("`([^`]+)`")
	out := map[string]instrument{}
	type alias struct{ name, suffix string }
	var asAbove []alias
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		names := code.FindAllStringSubmatch(m[1], -1)
		kind, unit := strings.TrimSpace(m[2]), strings.Trim(strings.TrimSpace(m[3]), "`")
		stem := ""
		for k, n := range names {
			name := n[1]
			if k == 0 {
				// distkit.instancecounter.flush.batches: stem distkit.instancecounter
				parts := strings.SplitN(name, ".", 3)
				stem = parts[0] + "." + parts[1]
			} else if strings.HasPrefix(name, ".") {
				name = stem + name
			}
			if kind == "as above" {
				asAbove = append(asAbove, alias{name, strings.TrimPrefix(name, stem)})
				continue
			}
			out[name] = instrument{kind, unit}
		}
	}
	for _, a := range asAbove {
		in, ok := out["distkit.counter"+a.suffix]
		if !ok {
			t.Errorf("README: %s is %q as above, but there is no distkit.counter%s row", a.name, "as above", a.suffix)
		}
		out[a.name] = in
	}
	return out
}

// TestReview18_ReadmeMetricTableMatchesCode: every instrument the library
// registers (the primitives' metrics and otelbackend's) is in the README's
// table with the same instrument kind and unit, and every row of the
// table is an instrument the code registers.
func TestReview18_ReadmeMetricTableMatchesCode(t *testing.T) {
	p := &recordingProvider{seen: map[string]instrument{}}
	if obs.For(p) == nil {
		t.Fatal("no instruments")
	}
	mem := memory.New(memory.Options{})
	defer mem.Close()
	otelbackend.Wrap(mem, otelbackend.Options{MeterProvider: p, TracerProvider: tnoop.NewTracerProvider()})
	readme := readmeMetrics(t)
	var names []string
	for n := range p.seen {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("the code registered no instrument")
	}
	for _, n := range names {
		got, ok := readme[n]
		if !ok {
			t.Errorf("%s (%s, %q) is registered but not in the README table", n, p.seen[n].kind, p.seen[n].unit)
			continue
		}
		if got != p.seen[n] {
			t.Errorf("%s: README says %s %q, code registers %s %q", n, got.kind, got.unit, p.seen[n].kind, p.seen[n].unit)
		}
	}
	for n := range readme {
		if _, ok := p.seen[n]; !ok {
			t.Errorf("README lists %s, which the code never registers", n)
		}
	}
}
