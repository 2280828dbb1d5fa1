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
	r      *obs.Reporter
	in     *obs.Instruments
	prefix string
}

func newLockObs(opts Options, prefix, name string) *lockObs {
	r := obs.NewReporter(obs.Config{Logger: opts.Logger, Observer: opts.Observer}, "lock", name, "")
	in := obs.For(opts.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	return &lockObs{r: r, in: in, prefix: prefix}
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
// start: renew failures and lost leases are logged (once per state
// change) and counted, the hold time recorded at the end.
func (o *lockObs) onEvent(m mode, start time.Time) func(lease.Event, error) {
	if o == nil {
		return nil
	}
	var renewing obs.Health
	return func(ev lease.Event, err error) {
		ctx := context.Background()
		switch ev {
		case lease.RenewFailed:
			if o.in != nil {
				o.in.LockRenewFailures.Add(ctx, 1, obs.WithOutcome(o.prefix, err))
			}
			renewing.Fail(o.r, distkit.LeaseRenewFailing, err)
		case lease.RenewRecovered:
			renewing.OK(o.r, distkit.LeaseRenewRecovered)
		case lease.LostEvent, lease.ReleasedEvent:
			end := "released"
			if ev == lease.LostEvent {
				end = "lost"
			}
			if o.in != nil {
				if ev == lease.LostEvent {
					o.in.LockLeasesLost.Add(ctx, 1, obs.Prefix(o.prefix))
				}
				o.in.LockHold.Record(ctx, time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(
					obs.AttrPrefix.String(o.prefix), obs.AttrMode.String(m.label()), obs.AttrEnd.String(end))))
			}
			if ev == lease.LostEvent {
				o.r.Emit(distkit.LeaseLost, err)
			}
		}
	}
}
