package otelbackend_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// telemetry is an SDK tracer and meter provider recording in memory.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		tel.tp.Shutdown(context.Background())
		tel.mp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) wrap(b backend.Backend) backend.Backend {
	return otelbackend.Wrap(b, otelbackend.Options{TracerProvider: tel.tp, MeterProvider: tel.mp})
}

// calls returns the distkit.backend.calls sums by script and outcome, and
// the histogram counts likewise.
func (tel *telemetry) calls(t *testing.T) (counts, hist map[[2]string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts, hist = map[[2]string]int64{}, map[[2]string]int64{}
	key := func(s attribute.Set) [2]string {
		sc, _ := s.Value(otelbackend.AttrScript)
		oc, _ := s.Value(otelbackend.AttrOutcome)
		return [2]string{sc.AsString(), oc.AsString()}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case otelbackend.MetricCalls:
				if m.Unit != "{call}" {
					t.Errorf("%s unit %q", m.Name, m.Unit)
				}
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					counts[key(dp.Attributes)] += dp.Value
				}
			case otelbackend.MetricCallDuration:
				if m.Unit != "s" {
					t.Errorf("%s unit %q", m.Name, m.Unit)
				}
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					hist[key(dp.Attributes)] += int64(dp.Count)
				}
			}
		}
	}
	return counts, hist
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

var (
	setScript = driver.NewScript("otel-set", `redis.call('SET', KEYS[1], ARGV[1]) return 1`,
		func(st driver.Store, keys, args []string) (backend.Value, error) {
			return backend.Int(1), st.Set(keys[0], args[0], 0)
		})
	raiseScript = driver.NewScript("otel-raise", `return redis.error_reply('NOPE no')`,
		func(driver.Store, []string, []string) (backend.Value, error) {
			return backend.Value{}, errors.New("NOPE no")
		})
)

// TestSpansAndMetrics: one span per call named after the script, with key
// count, outcome and round trip; metrics by script and outcome; each
// outcome class reached.
func TestSpansAndMetrics(t *testing.T) {
	ctx := context.Background()
	tel := newTelemetry(t)
	mem := memory.New(memory.Options{})
	defer mem.Close()
	b := tel.wrap(mem)

	if _, err := b.EvalScript(ctx, setScript, []string{"a", "b"}, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.EvalScript(ctx, raiseScript, []string{"a"}); !errors.Is(err, backend.ErrScript) {
		t.Fatalf("raise: %v", err)
	}
	mem.FailNext(1, nil)
	if _, err := b.EvalScript(ctx, setScript, []string{"a"}, "v"); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("FailNext: %v", err)
	}
	mem.FailAfterApply(1)
	if _, err := b.EvalScript(ctx, setScript, []string{"a"}, "v"); !errors.Is(err, backend.ErrIndeterminate) {
		t.Fatalf("FailAfterApply: %v", err)
	}
	if err := b.Heartbeat(ctx, "g", "m", time.Second); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.AcquireLease(ctx, "l", "o", time.Second); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := b.RenewLease(ctx, "l", "o", time.Second); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := b.ReleaseLease(ctx, "l", "o"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	res := b.EvalScripts(ctx, []backend.Call{
		{Script: setScript, Keys: []string{"x"}, Args: []string{"1"}},
		{Script: raiseScript, Keys: []string{"y"}},
	})
	if len(res) != 2 || res[0].Err != nil || !errors.Is(res[1].Err, backend.ErrScript) {
		t.Fatalf("batch: %+v", res)
	}

	type want struct {
		name    string
		keys    int64
		outcome string
	}
	wants := []want{
		{"otel-set", 2, "ok"}, {"otel-raise", 1, "script_error"}, {"otel-set", 1, "not_applied"},
		{"otel-set", 1, "indeterminate"}, {"heartbeat", 1, "ok"}, {"acquire-lease", 1, "ok"},
		{"renew-lease", 1, "ok"}, {"release-lease", 1, "ok"},
		{"otel-set", 1, "ok"}, {"otel-raise", 1, "script_error"},
	}
	spans := tel.spans.Ended()
	var calls []sdktrace.ReadOnlySpan
	var batch sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "distkit.batch" {
			batch = s
			continue
		}
		calls = append(calls, s)
	}
	if len(calls) != len(wants) {
		t.Fatalf("got %d call spans, want %d", len(calls), len(wants))
	}
	for i, w := range wants {
		s := calls[i]
		a := attrs(s)
		if s.Name() != w.name || a[otelbackend.AttrScript].AsString() != w.name {
			t.Errorf("span %d: name %q script %q, want %q", i, s.Name(), a[otelbackend.AttrScript].AsString(), w.name)
		}
		if got := a[otelbackend.AttrKeys].AsInt64(); got != w.keys {
			t.Errorf("span %d (%s): keys %d, want %d", i, w.name, got, w.keys)
		}
		if got := a[otelbackend.AttrOutcome].AsString(); got != w.outcome {
			t.Errorf("span %d (%s): outcome %q, want %q", i, w.name, got, w.outcome)
		}
		if rt, ok := a[otelbackend.AttrRoundTrip]; !ok || rt.AsFloat64() < 0 {
			t.Errorf("span %d (%s): round trip %v", i, w.name, rt.Emit())
		}
		if (w.outcome == "ok") != (s.Status().Code != codes.Error) {
			t.Errorf("span %d (%s): status %v for outcome %s", i, w.name, s.Status(), w.outcome)
		}
	}
	if batch == nil {
		t.Fatal("no distkit.batch span")
	}
	if n := attrs(batch)[otelbackend.AttrBatchCalls].AsInt64(); n != 2 {
		t.Errorf("batch calls %d, want 2", n)
	}
	for _, s := range calls[len(calls)-2:] {
		if s.Parent().SpanID() != batch.SpanContext().SpanID() {
			t.Errorf("batch call %s is not a child of the batch span", s.Name())
		}
	}

	counts, hist := tel.calls(t)
	wantCounts := map[[2]string]int64{
		{"otel-set", "ok"}: 2, {"otel-raise", "script_error"}: 2, {"otel-set", "not_applied"}: 1,
		{"otel-set", "indeterminate"}: 1, {"heartbeat", "ok"}: 1, {"acquire-lease", "ok"}: 1,
		{"renew-lease", "ok"}: 1, {"release-lease", "ok"}: 1,
	}
	for k, n := range wantCounts {
		if counts[k] != n || hist[k] != n {
			t.Errorf("%v: calls %d, histogram count %d, want %d", k, counts[k], hist[k], n)
		}
	}
	if len(counts) != len(wantCounts) {
		t.Errorf("calls by script and outcome: %v, want %v", counts, wantCounts)
	}
}

// TestKeepsCapabilities: the wrapper is a Notifier (and a Replicator)
// exactly when the wrapped backend is, and passes them through.
func TestKeepsCapabilities(t *testing.T) {
	tel := newTelemetry(t)
	mem := memory.New(memory.Options{})
	defer mem.Close()
	for _, tc := range []struct {
		name       string
		b          backend.Backend
		notif, rep bool
	}{
		{"memory", mem, true, false},
		{"plain", struct{ backend.Backend }{mem}, false, false},
		{"replicator", replicatorOnly{mem}, false, true},
		{"both", both{mem}, true, true},
	} {
		w := tel.wrap(tc.b)
		_, n := w.(backend.Notifier)
		_, r := w.(backend.Replicator)
		if n != tc.notif || r != tc.rep {
			t.Errorf("%s: Notifier %v Replicator %v, want %v %v", tc.name, n, r, tc.notif, tc.rep)
		}
		if u := w.(interface{ Unwrap() backend.Backend }).Unwrap(); u != tc.b {
			t.Errorf("%s: Unwrap returned another backend", tc.name)
		}
		if r {
			v, acked, err := w.(backend.Replicator).EvalScriptWait(context.Background(), setScript, []string{"k"}, []string{"v"}, 1, time.Millisecond)
			if n, _ := v.Int64(); err != nil || n != 1 || acked != 7 {
				t.Errorf("%s: EvalScriptWait = %v %d %v", tc.name, v, acked, err)
			}
		}
	}
	// A notification passes through the wrapper.
	w := tel.wrap(mem).(backend.Notifier)
	ch, cancel, err := w.Subscribe(context.Background(), "chan")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	pub := driver.NewScript("otel-pub", `return redis.call('PUBLISH', KEYS[1], 'x')`,
		func(st driver.Store, keys, _ []string) (backend.Value, error) {
			st.Publish(keys[0], "x")
			return backend.Int(1), nil
		})
	if _, err := mem.EvalScript(context.Background(), pub, []string{"chan"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no notification through the wrapper")
	}
}

// replicatorOnly is a backend with a fake Replicator (acked is always 7)
// and no Notifier.
type replicatorOnly struct{ backend.Backend }

func (r replicatorOnly) EvalScriptWait(ctx context.Context, s backend.Script, keys, args []string, _ int, _ time.Duration) (backend.Value, int, error) {
	v, err := r.EvalScript(ctx, s, keys, args...)
	return v, 7, err
}

type both struct{ *memory.Backend }

func (b both) EvalScriptWait(ctx context.Context, s backend.Script, keys, args []string, _ int, _ time.Duration) (backend.Value, int, error) {
	v, err := b.EvalScript(ctx, s, keys, args...)
	return v, 7, err
}

// TestConformance: the wrapped memory backend passes the backend contract
// and every primitive's suite. The spans are counted, not kept (the suite
// measures the heap).
func TestConformance(t *testing.T) {
	var ended countingProcessor
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&ended))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())
	wrap := func(b backend.Backend) backend.Backend {
		return otelbackend.Wrap(b, otelbackend.Options{TracerProvider: tp, MeterProvider: mp})
	}
	nh := func(t *testing.T) conformance.Harness {
		return testkit.WrapHarness(conformance.MemoryHarness(t), wrap)
	}
	t.Run("Backend", func(t *testing.T) { conformance.RunBackend(t, nh) })
	t.Run("Primitives", func(t *testing.T) { conformance.RunPrimitives(t, nh) })
	if ended.n.Load() == 0 {
		t.Error("no spans recorded")
	}
}

// countingProcessor counts ended spans and keeps none.
type countingProcessor struct{ n atomic.Int64 }

func (c *countingProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *countingProcessor) OnEnd(sdktrace.ReadOnlySpan)                     { c.n.Add(1) }
func (c *countingProcessor) Shutdown(context.Context) error                  { return nil }
func (c *countingProcessor) ForceFlush(context.Context) error                { return nil }
