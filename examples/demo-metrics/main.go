// Command demo-metrics runs a small workload on the memory backend with
// distkit's observability switched on, and prints what an operator would
// see: the log lines of state changes (a Lax flush that fails for a while,
// then recovers), the primitives' OpenTelemetry metrics and the spans of
// the otelbackend decorator (by name). It uses the OpenTelemetry SDK with
// a manual reader; in a service, plug in the exporter of your choice (see
// examples/prometheus). Run it with make demo-metrics.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

func main() {
	ctx := context.Background()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := &spanCounter{n: map[string]int{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer mp.Shutdown(ctx)
	defer tp.Shutdown(ctx)
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the demo's output short
			}
			return a
		}}))

	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := otelbackend.Wrap(mem, otelbackend.Options{TracerProvider: tp, MeterProvider: mp})

	fmt.Println("== log lines (one per state change)")
	// A Lax counter whose flushes fail for a while.
	lax, err := counter.NewLax(b, counter.Options{Prefix: "demo", AllowedLag: 10 * time.Millisecond,
		Logger: logger, MeterProvider: mp})
	check(err)
	for i := range 300 {
		_, err := lax.Inc(ctx, fmt.Sprintf("page-%d", i%3), 1)
		check(err)
	}
	mem.FailNext(5, nil) // the next five backend calls fail: flushes back off and retry
	for deadline := time.Now().Add(5 * time.Second); len(lax.Pending()) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	check(lax.Close(ctx))

	// A lock: one holder, one TryLock that finds it held.
	m, err := lock.NewMutex(b, "orders-42", lock.Options{Prefix: "demo", Logger: logger, MeterProvider: mp})
	check(err)
	g, err := m.Lock(ctx)
	check(err)
	_, err = m.TryLock(ctx)
	fmt.Println("TryLock on the held lock:", err)
	_, err = g.Release(ctx)
	check(err)

	// A Hybrid limiter: 15 requests against 10 per minute.
	h, err := ratelimit.NewHybrid(b, ratelimit.Options{Prefix: "demo", Logger: logger, MeterProvider: mp})
	check(err)
	for range 15 {
		_, err := h.Absolute().Inc(ctx, "client-7", ratelimit.PerMinute(10), 1)
		check(err)
	}
	check(h.Close(ctx))

	// An instance counter, heartbeating every DeadAfter/3 for a moment.
	ic, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "demo", InstanceID: "web-1",
		DeadAfter: 300 * time.Millisecond, Logger: logger, MeterProvider: mp})
	check(err)
	_, _, err = ic.Inc(ctx, "sessions", 3)
	check(err)
	time.Sleep(250 * time.Millisecond)
	check(ic.Close(ctx))

	fmt.Println("\n== metrics")
	var rm metricdata.ResourceMetrics
	check(reader.Collect(ctx, &rm))
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			lines = append(lines, describe(mt)...)
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}

	fmt.Println("\n== spans of the otelbackend decorator, by name")
	for _, name := range spans.names() {
		fmt.Printf("%-28s %d\n", name, spans.n[name])
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// describe renders one metric's data points: name{attributes} [unit] value.
func describe(m metricdata.Metrics) []string {
	var out []string
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s{%s} [%s] %d", m.Name, attrs(dp.Attributes.ToSlice()), m.Unit, dp.Value))
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s{%s} [%s] %d", m.Name, attrs(dp.Attributes.ToSlice()), m.Unit, dp.Value))
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			out = append(out, fmt.Sprintf("%s{%s} [%s] count=%d sum=%.6f", m.Name, attrs(dp.Attributes.ToSlice()), m.Unit, dp.Count, dp.Sum))
		}
	}
	return out
}

// attrs renders attributes as k=v, comma-separated.
func attrs(kvs []attribute.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = string(kv.Key) + "=" + kv.Value.Emit()
	}
	return strings.Join(parts, ",")
}

// spanCounter is a span processor that counts ended spans by name.
type spanCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *spanCounter) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.n))
	for k := range c.n {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (c *spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *spanCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	c.n[s.Name()]++
	c.mu.Unlock()
}
func (c *spanCounter) Shutdown(context.Context) error   { return nil }
func (c *spanCounter) ForceFlush(context.Context) error { return nil }
