package instancecounter

import (
	"context"
	"errors"
	"sync/atomic"
	"weak"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/obs"
)

// errWasDead is the cause reported with distkit.InstanceDead.
var errWasDead = errors.New("instancecounter: this instance was no longer registered (declared dead after missing heartbeats for DeadAfter, or the data was lost)")

// icObs is the telemetry of one instance counter (Options.Logger,
// Observer, MeterProvider); nil when none is set.
type icObs struct {
	r        *obs.Reporter
	hb       obs.Health
	rejoined atomic.Int64 // rejoins not reported yet
	flush    *obs.Flusher // Lax only

	beats            metric.Int64Counter
	rejoins          metric.Int64Counter
	beatOK, prefixed metric.MeasurementOption
	prefix           string

	// live is the live-instances count of the last successful heartbeat,
	// -1 before the first; liveReg its gauge's callback (nil without a
	// MeterProvider: the heartbeat then does not ask for the count).
	live    atomic.Int64
	liveReg metric.Registration
}

func newICObs(opts Options, prefix, id string) *icObs {
	cfg := obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider}
	r := obs.NewReporter(cfg, "instancecounter", prefix, id)
	in := obs.For(opts.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	o := &icObs{r: r, prefix: prefix}
	if in != nil {
		o.beats, o.rejoins = in.ICHeartbeats, in.ICRejoins
		o.beatOK, o.prefixed = obs.WithOutcome(prefix, nil), obs.Prefix(prefix)
		o.live.Store(-1)
		g, opt := in.ICLiveInstances, o.prefixed
		o.liveReg = in.Register(func(_ context.Context, ob metric.Observer) error {
			if n := o.live.Load(); n >= 0 {
				ob.ObserveInt64(g, n, opt)
			}
			return nil
		}, g)
	}
	return o
}

// wantsLive reports whether heartbeats should ask for the live-instances
// count (a MeterProvider is set).
func (o *icObs) wantsLive() bool { return o != nil && o.liveReg != nil }

// setLive records the live-instances count a successful heartbeat saw.
func (o *icObs) setLive(n int64) {
	if o != nil {
		o.live.Store(n)
	}
}

// newFlusher adds the Lax flusher's telemetry; the pending-keys gauge
// reads c through a weak pointer.
func (o *icObs) newFlusher(opts Options, c *core) {
	if o == nil {
		return
	}
	wc := weak.Make(c)
	o.flush = obs.NewFlusher(obs.Config{Logger: opts.Logger, Observer: opts.Observer, MeterProvider: opts.MeterProvider},
		true, o.prefix, c.id, func() (int, bool) {
			c := wc.Value()
			if c == nil || c.closed.Load() {
				return 0, false
			}
			return len(c.lx.g.Pending()), true
		})
}

// beat records a background heartbeat's outcome (the loop, no lock held).
func (o *icObs) beat(ctx context.Context, err error) {
	if o == nil {
		return
	}
	if o.beats != nil {
		opt := o.beatOK
		if err != nil {
			opt = obs.WithOutcome(o.prefix, err)
		}
		o.beats.Add(ctx, 1, opt)
	}
	if err == nil {
		o.hb.OK(o.r, distkit.HeartbeatRecovered)
	} else if !errors.Is(err, context.Canceled) {
		o.hb.Fail(o.r, distkit.HeartbeatFailing, err)
	}
	o.report()
}

// noteRejoin records a rejoin (called with the rejoin's locks held: it
// only counts; the loop reports it).
func (o *icObs) noteRejoin() {
	if o == nil {
		return
	}
	if o.rejoins != nil {
		o.rejoins.Add(context.Background(), 1, o.prefixed)
	}
	o.rejoined.Add(1)
}

// report emits InstanceDead and InstanceRejoined for each rejoin noted
// since the last report (from the loop, no lock held).
func (o *icObs) report() {
	if o == nil {
		return
	}
	for n := o.rejoined.Swap(0); n > 0; n-- {
		o.r.Emit(distkit.InstanceDead, errWasDead)
		o.r.Emit(distkit.InstanceRejoined, nil)
	}
}

// flushed records one Lax batch (see obs.Flusher.Sent).
func (o *icObs) flushed(ctx context.Context, items int, refusal, err error, refusedLeft func() bool) {
	if o != nil {
		o.flush.Sent(ctx, items, refusal, err, refusedLeft)
	}
}

// close unregisters the pending-keys and live-instances gauges.
func (o *icObs) close() {
	if o != nil {
		o.flush.Close()
		if o.liveReg != nil {
			o.liveReg.Unregister()
		}
		o.report()
	}
}
