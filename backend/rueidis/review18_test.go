package rueidis_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
)

// Issue 18: wrapping a backend changes no primitive behaviour. The README
// says so after running only the backend contract on the Redis drivers;
// this runs every primitive suite through otelbackend.Wrap on a real
// redis-server and the rueidis driver.
func TestReview18_PrimitivesThroughWrapperOnRedis(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())
	connect := func(t *testing.T, target redistest.Target) backend.Backend {
		b, closeFn, err := dial(target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeFn)
		return b
	}
	wrap := func(b backend.Backend) backend.Backend {
		return otelbackend.Wrap(b, otelbackend.Options{TracerProvider: tp, MeterProvider: mp})
	}
	conformance.RunPrimitives(t, func(t *testing.T) conformance.Harness {
		return testkit.WrapHarness(env.NewServerHarness(t, connect), wrap)
	})
}
