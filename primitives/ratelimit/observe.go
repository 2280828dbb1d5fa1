package ratelimit

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/obs"
)

// rlObs is the telemetry of one provider (Options.Logger, Observer,
// MeterProvider); nil when none is set.
type rlObs struct {
	r      *obs.Reporter
	in     *obs.Instruments
	health obs.Health // Hybrid's sync
	// decision attribute sets: [suppressed strategy][result][degraded]
	opts        [2][3][2][]metric.AddOption // slices: Add(ctx, 1, opts...) does not allocate
	syncOK      metric.AddOption
	syncFailed  metric.AddOption
	prefixedOpt metric.AddOption
	healthyAt   atomic.Int64 // unix ns: the last sync round that left no key failing (Hybrid)
	reg         metric.Registration
}

var results = [3]string{"allowed", "rejected", "suppressed"}

func newRLObs(opts Options, provider, prefix string) *rlObs {
	r := obs.NewReporter(obs.Config{Logger: opts.Logger, Observer: opts.Observer}, "ratelimit", prefix, "")
	in := obs.For(opts.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	o := &rlObs{r: r, in: in}
	for s, strategy := range [2]string{"absolute", "suppressed"} {
		for res, result := range results {
			for deg := range 2 {
				o.opts[s][res][deg] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
					obs.AttrPrefix.String(prefix), obs.AttrProvider.String(provider), obs.AttrStrategy.String(strategy),
					obs.AttrResult.String(result), obs.AttrDegraded.Bool(deg == 1)))}
			}
		}
	}
	o.syncOK = metric.WithAttributeSet(attribute.NewSet(obs.AttrPrefix.String(prefix), obs.AttrOutcome.String("ok")))
	o.syncFailed = metric.WithAttributeSet(attribute.NewSet(obs.AttrPrefix.String(prefix), obs.AttrOutcome.String("failed")))
	o.prefixedOpt = metric.WithAttributeSet(attribute.NewSet(obs.AttrPrefix.String(prefix)))
	return o
}

// registerSyncAge registers the sync-age gauge of h (held weakly: a
// collected Hybrid stops reporting); close unregisters it.
func (o *rlObs) registerSyncAge(h *Hybrid, prefix string) {
	if o == nil || o.in == nil {
		return
	}
	o.healthyAt.Store(time.Now().UnixNano())
	wh := weak.Make(h)
	opt := metric.WithAttributeSet(attribute.NewSet(obs.AttrPrefix.String(prefix)))
	g := o.in.RLSyncAge
	o.reg = o.in.Register(func(_ context.Context, ob metric.Observer) error {
		if h := wh.Value(); h != nil && !h.closed.Load() {
			ob.ObserveFloat64(g, time.Since(time.Unix(0, o.healthyAt.Load())).Seconds(), opt)
		}
		return nil
	}, g)
}

func (o *rlObs) close() {
	if o != nil && o.reg != nil {
		o.reg.Unregister()
	}
}

// decided counts one decision by strategy, result and whether degraded.
func (o *rlObs) decided(ctx context.Context, sup bool, d Decision, err error) {
	if o == nil || o.in == nil || err != nil {
		return
	}
	s, res, deg := 0, 0, 0
	if sup {
		s = 1
	}
	switch {
	case d.Allowed:
	case sup && d.Suppression > 0 && d.Suppression < 1:
		res = 2 // shed probabilistically below the hard limit
	default:
		res = 1
	}
	if d.Degraded != nil {
		deg = 1
	}
	o.in.RLDecisions.Add(ctx, 1, o.opts[s][res][deg]...)
}

// synced records one Hybrid sync round of calls keys (0: nothing to
// sync), failed of which failed (first: the first failure); quarantined:
// keys the server rejected earlier wait for their retry, left out of the
// round (still failing). A failure after a success reports SyncDegraded,
// a round without failures and no key quarantined after one SyncHealthy
// (and restarts the sync age); a round its caller's context cut short
// changes no state.
func (o *rlObs) synced(ctx context.Context, calls, failed int, first error, quarantined bool) {
	if o == nil {
		return
	}
	if failed == 0 && !quarantined {
		o.healthyAt.Store(time.Now().UnixNano())
	}
	if calls == 0 { // nothing to sync: nothing failing, no round to count
		return
	}
	if o.in != nil {
		if failed > 0 {
			o.in.RLSyncs.Add(ctx, 1, o.syncFailed)
			o.in.RLSyncFailures.Add(ctx, int64(failed), o.prefixedOpt)
		} else {
			o.in.RLSyncs.Add(ctx, 1, o.syncOK)
		}
	}
	switch {
	case failed == 0 && quarantined: // the round's keys synced; the quarantined ones still fail
	case failed == 0:
		o.health.OK(o.r, distkit.SyncHealthy)
	case !errors.Is(first, context.Canceled):
		o.health.Fail(o.r, distkit.SyncDegraded, first)
	}
}
