package drivertest

import (
	"context"
	"sync"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/testkit"
)

// runObserved runs the backend contract on the driver wrapped by
// otelbackend (on nh's server), and checks that the wrapper kept the
// driver's optional capabilities and named its spans after the scripts.
func runObserved(t *testing.T, nh conformance.NewHarness) {
	names := &spanNames{seen: map[string]bool{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(names))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())
	wrap := func(b backend.Backend) backend.Backend {
		w := otelbackend.Wrap(b, otelbackend.Options{TracerProvider: tp, MeterProvider: mp})
		_, n1 := b.(backend.Notifier)
		_, n2 := w.(backend.Notifier)
		_, r1 := b.(backend.Replicator)
		_, r2 := w.(backend.Replicator)
		if n1 != n2 || r1 != r2 {
			t.Errorf("wrapper: Notifier %v Replicator %v, driver: %v %v", n2, r2, n1, r1)
		}
		return w
	}
	conformance.RunBackend(t, func(t *testing.T) conformance.Harness { return testkit.WrapHarness(nh(t), wrap) })
	for _, name := range []string{"heartbeat", "acquire-lease", "renew-lease", "release-lease", "subscribe", "distkit.batch"} {
		if !names.has(name) {
			t.Errorf("no span %q", name)
		}
	}
}

// spanNames is a span processor that remembers the names of ended spans.
type spanNames struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *spanNames) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[name]
}

func (s *spanNames) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (s *spanNames) OnEnd(sp sdktrace.ReadOnlySpan) {
	s.mu.Lock()
	s.seen[sp.Name()] = true
	s.mu.Unlock()
}
func (s *spanNames) Shutdown(context.Context) error   { return nil }
func (s *spanNames) ForceFlush(context.Context) error { return nil }
