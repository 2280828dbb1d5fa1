package obs

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/lease"
)

// Leases is the telemetry of the leases one primitive value holds (a
// lock's guards, a semaphore's permits, an election's terms): renew
// failures (logged once per state change, counted each), the lease lost
// (logged, counted) and the hold time by how it ended. A nil *Leases
// records nothing.
type Leases struct {
	r                   *Reporter
	prefix              string
	lost, renewFailures metric.Int64Counter
	hold                metric.Float64Histogram
	released            string // the end attribute of a lease given back
}

// NewLeases returns the lease telemetry of one value of primitive
// ("lock", "semaphore", "election") named name under prefix, nil when cfg
// configures nothing.
func NewLeases(cfg Config, primitive, prefix, name string) *Leases {
	r := NewReporter(Config{Logger: cfg.Logger, Observer: cfg.Observer}, primitive, name, "")
	in := For(cfg.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	l := &Leases{r: r, prefix: prefix, released: "released"}
	if in != nil {
		switch primitive {
		case "semaphore":
			l.lost, l.renewFailures, l.hold = in.SemLeasesLost, in.SemRenewFailures, in.SemHold
		case "election":
			l.lost, l.renewFailures, l.hold = in.ElectTermsLost, in.ElectRenewFailures, in.ElectTerm
			l.released = "resigned"
		default:
			l.lost, l.renewFailures, l.hold = in.LockLeasesLost, in.LockRenewFailures, in.LockHold
		}
	}
	return l
}

// OnEvent returns the lease.Config.OnEvent of one lease confirmed at
// start; attrs are added to its hold-time attributes (a lock's mode).
func (l *Leases) OnEvent(start time.Time, attrs ...attribute.KeyValue) func(lease.Event, error) {
	if l == nil {
		return nil
	}
	var renewing Health
	return func(ev lease.Event, err error) {
		ctx := context.Background()
		switch ev {
		case lease.RenewFailed:
			if l.renewFailures != nil {
				l.renewFailures.Add(ctx, 1, WithOutcome(l.prefix, err))
			}
			renewing.Fail(l.r, distkit.LeaseRenewFailing, err)
		case lease.RenewRecovered:
			renewing.OK(l.r, distkit.LeaseRenewRecovered)
		case lease.LostEvent, lease.ReleasedEvent:
			end := l.released
			if ev == lease.LostEvent {
				end = "lost"
			}
			if l.hold != nil {
				if ev == lease.LostEvent {
					l.lost.Add(ctx, 1, Prefix(l.prefix))
				}
				kvs := append([]attribute.KeyValue{AttrPrefix.String(l.prefix), AttrEnd.String(end)}, attrs...)
				l.hold.Record(ctx, time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(kvs...)))
			}
			if ev == lease.LostEvent {
				l.r.Emit(distkit.LeaseLost, err)
			}
		}
	}
}
