package lock

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/lease"
	"github.com/distkit-go/distkit/internal/obs"
)

// lockObs is the telemetry of one Mutex or RWMutex (Options.Logger,
// Observer, MeterProvider); nil when none is set.
type lockObs struct {
	leases *obs.Leases
	in     *obs.Instruments
	prefix string
}

func newLockObs(opts Options, prefix, name string) *lockObs {
	leases := obs.NewLeases(obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider}, "lock", prefix, name)
	if leases == nil {
		return nil
	}
	return &lockObs{leases: leases, in: obs.For(opts.MeterProvider), prefix: prefix}
}

func (m mode) label() string {
	if m == shared {
		return "shared"
	}
	return "exclusive"
}

// waitResult classifies the outcome of a lock call.
func waitResult(err error) string {
	switch {
	case err == nil:
		return "acquired"
	case errors.Is(err, distkit.ErrTimeout):
		return "timeout"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	case errors.Is(err, distkit.ErrNotAcquired), errors.Is(err, distkit.ErrRetriesExhausted):
		return "not_acquired"
	}
	return "error"
}

// waited records how long a lock call took, by mode and result, and
// counts a hand-off: g acquired after attempts that found the lock held.
func (o *lockObs) waited(start time.Time, m mode, g *Guard, err error) {
	if o == nil || o.in == nil {
		return
	}
	if err == nil && g.Attempt() > 0 {
		o.in.LockHandoffs.Add(context.Background(), 1, obs.Prefix(o.prefix))
	}
	o.in.LockWait.Record(context.Background(), time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(
		obs.AttrPrefix.String(o.prefix), obs.AttrMode.String(m.label()), obs.AttrResult.String(waitResult(err)))))
}

// onEvent returns the lease's Config.OnEvent of a guard acquired at
// start (see obs.Leases).
func (o *lockObs) onEvent(m mode, start time.Time) func(lease.Event, error) {
	if o == nil {
		return nil
	}
	return o.leases.OnEvent(start, obs.AttrMode.String(m.label()))
}
