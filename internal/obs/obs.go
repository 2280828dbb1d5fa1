// Package obs is the observability plumbing the primitives share: the
// state-change reporter behind Options.Logger and Options.Observer, and the
// OpenTelemetry instruments behind Options.MeterProvider. Everything is
// nil-safe: a primitive configured with none of the three holds nil
// pointers and pays one nil check where its background work changes state.
//
// The metric and event names are part of distkit's API (README
// "Observability"): change them only with the README.
package obs

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/flush"
)

// ScopeName is the instrumentation scope of distkit's primitive metrics.
const ScopeName = "github.com/distkit-go/distkit"

// Attribute keys.
const (
	AttrPrimitive = attribute.Key("distkit.primitive")
	AttrPrefix    = attribute.Key("distkit.prefix")
	AttrOutcome   = attribute.Key("distkit.outcome")
	AttrMode      = attribute.Key("distkit.lock.mode")
	AttrResult    = attribute.Key("distkit.result")
	AttrEnd       = attribute.Key("distkit.lease.end")
	AttrProvider  = attribute.Key("distkit.ratelimit.provider")
	AttrStrategy  = attribute.Key("distkit.ratelimit.strategy")
	AttrDegraded  = attribute.Key("distkit.degraded")
)

// Outcome classes of a backend call (the attribute distkit.outcome).
const (
	OutcomeOK            = "ok"
	OutcomeNotApplied    = "not_applied"
	OutcomeIndeterminate = "indeterminate"
	OutcomeScriptError   = "script_error"
	// OutcomeError (primitive metrics only): an error that is not a
	// backend call's, such as distkit.ErrDuplicateInstance.
	OutcomeError = "error"
)

// Outcome classifies err by its class, the driver's word first: nil is
// "ok"; a backend.ErrIndeterminate "indeterminate" (a call cancelled
// while in flight included: it may have run); a backend.ErrNotApplied
// "not_applied" (a reply refused before the script ran, such as READONLY
// or BUSY, included, although it is also a ScriptError); a
// backend.ErrScript "script_error"; an unclassified context.Canceled
// "not_applied"; anything else "indeterminate" (it may have run).
func Outcome(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, backend.ErrIndeterminate):
		return OutcomeIndeterminate
	case errors.Is(err, backend.ErrNotApplied):
		return OutcomeNotApplied
	case errors.Is(err, backend.ErrScript):
		return OutcomeScriptError
	case errors.Is(err, context.Canceled):
		return OutcomeNotApplied
	default:
		return OutcomeIndeterminate
	}
}

// Config is what a primitive's Options carry.
type Config struct {
	Logger        *slog.Logger
	Observer      distkit.Observer
	MeterProvider metric.MeterProvider
}

// logBurst and logEvery bound the log lines of one Reporter: at most
// logBurst lines, then one per logEvery; a line that follows suppressed
// ones says how many (the Observer and the metrics see every event).
const (
	logBurst = 10
	logEvery = 6 * time.Second
)

// Reporter reports the state changes of one primitive value. A nil
// *Reporter reports nothing.
type Reporter struct {
	log       *slog.Logger
	ob        distkit.Observer
	primitive string
	name      string
	instance  string

	mu         sync.Mutex
	tokens     float64
	refilled   time.Time
	suppressed int
}

// NewReporter returns the reporter of one primitive value, nil when cfg
// has neither a Logger nor an Observer.
func NewReporter(cfg Config, primitive, name, instance string) *Reporter {
	if cfg.Logger == nil && cfg.Observer == nil {
		return nil
	}
	return &Reporter{log: cfg.Logger, ob: cfg.Observer, primitive: primitive, name: name, instance: instance,
		tokens: logBurst, refilled: time.Now()}
}

// Emit reports one state change: to the Observer, and as one log line
// (Warn for a failing event, Info for a recovery) unless the reporter's
// line budget is spent.
func (r *Reporter) Emit(kind distkit.EventKind, err error) {
	if r == nil {
		return
	}
	now := time.Now()
	if r.ob != nil {
		r.observe(distkit.Event{Kind: kind, Primitive: r.primitive, Name: r.name, Instance: r.instance, Err: err, Time: now})
	}
	if r.log == nil {
		return
	}
	r.mu.Lock()
	r.tokens = min(logBurst, r.tokens+float64(now.Sub(r.refilled))/float64(logEvery))
	r.refilled = now
	if r.tokens < 1 {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	r.tokens--
	suppressed := r.suppressed
	r.suppressed = 0
	r.mu.Unlock()
	level := slog.LevelInfo
	if kind.Failing() {
		level = slog.LevelWarn
	}
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("event", kind.String()), slog.String("primitive", r.primitive), slog.String("name", r.name))
	if r.instance != "" {
		attrs = append(attrs, slog.String("instance", r.instance))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	r.log.LogAttrs(context.Background(), level, "distkit: "+kind.String(), attrs...)
}

// observe hands e to the Observer. A panic in it is recovered (logged at
// Error when there is a Logger): the Observer runs on the primitive's
// background goroutines, where nobody else could recover it, and the
// primitive keeps working.
func (r *Reporter) observe(e distkit.Event) {
	defer func() {
		if p := recover(); p != nil && r.log != nil {
			r.log.LogAttrs(context.Background(), slog.LevelError, "distkit: observer panicked",
				slog.String("event", e.Kind.String()), slog.String("primitive", r.primitive), slog.String("name", r.name),
				slog.Any("panic", p))
		}
	}()
	r.ob.Observe(e)
}

// Health is a failing/healthy state that reports its transitions only.
// The zero value is healthy.
type Health struct{ failing atomic.Bool }

// Fail records a failure; it reports kind when the state was healthy.
func (h *Health) Fail(r *Reporter, kind distkit.EventKind, err error) {
	if !h.failing.Load() && h.failing.CompareAndSwap(false, true) {
		r.Emit(kind, err)
	}
}

// OK records a success; it reports kind when the state was failing.
func (h *Health) OK(r *Reporter, kind distkit.EventKind) {
	if h.failing.Load() && h.failing.CompareAndSwap(true, false) {
		r.Emit(kind, nil)
	}
}

// Failing reports the state.
func (h *Health) Failing() bool { return h.failing.Load() }

// Metric names.
const (
	CounterFlushBatches   = "distkit.counter.flush.batches"
	CounterFlushDeltas    = "distkit.counter.flush.deltas"
	CounterFlushFailures  = "distkit.counter.flush.failures"
	CounterPendingKeys    = "distkit.counter.pending.keys"
	CounterFlushLag       = "distkit.counter.flush.lag"
	ICFlushBatches        = "distkit.instancecounter.flush.batches"
	ICFlushDeltas         = "distkit.instancecounter.flush.deltas"
	ICFlushFailures       = "distkit.instancecounter.flush.failures"
	ICPendingKeys         = "distkit.instancecounter.pending.keys"
	ICFlushLag            = "distkit.instancecounter.flush.lag"
	ICHeartbeats          = "distkit.instancecounter.heartbeats"
	ICRejoins             = "distkit.instancecounter.rejoins"
	ICLiveInstances       = "distkit.instancecounter.instances.live"
	LockWaitDuration      = "distkit.lock.wait.duration"
	LockHoldDuration      = "distkit.lock.hold.duration"
	LockLeasesLost        = "distkit.lock.leases.lost"
	LockHandoffs          = "distkit.lock.handoffs"
	LockRenewFailures     = "distkit.lock.renew.failures"
	SemHoldDuration       = "distkit.semaphore.hold.duration"
	SemLeasesLost         = "distkit.semaphore.leases.lost"
	SemRenewFailures      = "distkit.semaphore.renew.failures"
	ElectTermDuration     = "distkit.election.term.duration"
	ElectTermsLost        = "distkit.election.terms.lost"
	ElectRenewFailures    = "distkit.election.renew.failures"
	ElectWatchFailures    = "distkit.election.watch.failures"
	RateLimitDecisions    = "distkit.ratelimit.decisions"
	RateLimitSyncs        = "distkit.ratelimit.hybrid.syncs"
	RateLimitSyncFailures = "distkit.ratelimit.hybrid.sync.failures"
	RateLimitSyncAge      = "distkit.ratelimit.hybrid.sync.age"
)

// LockBuckets are the advised bucket boundaries (seconds) of the lock
// wait and hold histograms: 1 ms to 5 min.
var LockBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// CallBuckets are the advised bucket boundaries (seconds) of the backend
// call duration histogram: 100 µs to 10 s.
var CallBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Instruments are the instruments of one MeterProvider, made once.
type Instruments struct {
	meter metric.Meter

	CounterFlushBatches, CounterFlushDeltas, CounterFlushFailures metric.Int64Counter
	CounterPendingKeys                                            metric.Int64ObservableGauge
	CounterFlushLag, ICFlushLag                                   metric.Float64ObservableGauge

	ICFlushBatches, ICFlushDeltas, ICFlushFailures, ICHeartbeats, ICRejoins metric.Int64Counter
	ICPendingKeys, ICLiveInstances                                          metric.Int64ObservableGauge

	LockWait, LockHold                   metric.Float64Histogram
	LockLeasesLost, LockRenewFailures    metric.Int64Counter
	LockHandoffs                         metric.Int64Counter
	SemHold, ElectTerm                   metric.Float64Histogram
	SemLeasesLost, SemRenewFailures      metric.Int64Counter
	ElectTermsLost, ElectRenewFailures   metric.Int64Counter
	ElectWatchFailures                   metric.Int64Counter
	RLDecisions, RLSyncs, RLSyncFailures metric.Int64Counter
	RLSyncAge                            metric.Float64ObservableGauge
}

var (
	// last caches the instruments of the provider used last: programs
	// have one, and a cache holding every provider ever seen would keep
	// them all alive (tests make many).
	last      atomic.Pointer[cached]
	noopMeter = noop.NewMeterProvider().Meter(ScopeName)
)

type cached struct {
	mp metric.MeterProvider
	in *Instruments
}

// For returns mp's instruments, nil when mp is nil. They are made on
// first use (the SDK returns the same instruments for the same names, so
// making them again for another provider is only a cost, not a
// duplicate).
func For(mp metric.MeterProvider) *Instruments {
	if mp == nil {
		return nil
	}
	comparable := reflect.TypeOf(mp).Comparable()
	if c := last.Load(); comparable && c != nil && c.mp == mp {
		return c.in
	}
	in := newInstruments(mp.Meter(ScopeName))
	if comparable {
		last.Store(&cached{mp, in})
	}
	return in
}

func newInstruments(m metric.Meter) *Instruments {
	in := &Instruments{meter: m}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			c, _ = noopMeter.Int64Counter(name)
		}
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			g, _ = noopMeter.Int64ObservableGauge(name)
		}
		return g
	}
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(LockBuckets...))
		if err != nil {
			h, _ = noopMeter.Float64Histogram(name)
		}
		return h
	}
	in.CounterFlushBatches = counter(CounterFlushBatches, "{batch}", "Lax counter flush batches the backend applied.")
	in.CounterFlushDeltas = counter(CounterFlushDeltas, "{delta}", "Per-key deltas the backend applied in Lax counter flushes.")
	in.CounterFlushFailures = counter(CounterFlushFailures, "{batch}", "Lax counter flush batches that failed or had keys refused (deltas kept pending), by outcome.")
	in.CounterPendingKeys = gauge(CounterPendingKeys, "{key}", "Keys of a Lax counter with deltas not yet applied by the backend.")
	in.ICFlushBatches = counter(ICFlushBatches, "{batch}", "Lax instance counter flush batches the backend applied.")
	in.ICFlushDeltas = counter(ICFlushDeltas, "{delta}", "Per-key deltas the backend applied in Lax instance counter flushes.")
	in.ICFlushFailures = counter(ICFlushFailures, "{batch}", "Lax instance counter flush batches that failed or had keys refused (deltas kept pending), by outcome.")
	in.ICPendingKeys = gauge(ICPendingKeys, "{key}", "Keys of a Lax instance counter with deltas not yet applied by the backend.")
	in.ICHeartbeats = counter(ICHeartbeats, "{heartbeat}", "Instance counter heartbeats, by outcome.")
	in.ICRejoins = counter(ICRejoins, "{rejoin}", "Times an instance found itself unregistered (declared dead) and rejoined.")
	in.ICLiveInstances = gauge(ICLiveInstances, "{instance}", "Live instances of the prefix (heartbeat not expired, not closed), as this instance's last successful heartbeat saw them.")
	in.LockWait = hist(LockWaitDuration, "Time from a lock call to its outcome, by mode and result.")
	in.LockHold = hist(LockHoldDuration, "Time a lock was held, from acquisition to release or loss.")
	in.LockHandoffs = counter(LockHandoffs, "{acquisition}", "Lock acquisitions that found the lock held and got it after waiting (a hand-off from another holder).")
	in.LockLeasesLost = counter(LockLeasesLost, "{lease}", "Held locks whose lease was lost.")
	in.LockRenewFailures = counter(LockRenewFailures, "{renewal}", "Lock lease renewals that failed (retried until the lease's expiry), by outcome.")
	in.SemHold = hist(SemHoldDuration, "Time a semaphore permit was held, from acquisition to release or loss.")
	in.SemLeasesLost = counter(SemLeasesLost, "{lease}", "Semaphore permits whose lease was lost.")
	in.SemRenewFailures = counter(SemRenewFailures, "{renewal}", "Semaphore permit renewals that failed (retried until the lease's expiry), by outcome.")
	in.ElectTerm = hist(ElectTermDuration, "Time a leader held its term, from election to resignation or loss.")
	in.ElectTermsLost = counter(ElectTermsLost, "{term}", "Leadership terms lost (renewal refused or expiry passed).")
	in.ElectRenewFailures = counter(ElectRenewFailures, "{renewal}", "Leader term renewals that failed (retried until the term's expiry), by outcome.")
	in.ElectWatchFailures = counter(ElectWatchFailures, "{read}", "Failed term reads of Election.Observe loops (retried every RetryInterval), by outcome.")
	in.RLDecisions = counter(RateLimitDecisions, "{decision}", "Rate limiter decisions, by provider, strategy, result and whether degraded.")
	in.RLSyncs = counter(RateLimitSyncs, "{sync}", "Hybrid limiter sync rounds, by outcome (ok: every key synced).")
	in.RLSyncFailures = counter(RateLimitSyncFailures, "{key}", "Keys whose Hybrid sync failed (their decisions degraded until the next success).")
	lag := func(name, desc string) metric.Float64ObservableGauge {
		g, err := m.Float64ObservableGauge(name, metric.WithUnit("s"), metric.WithDescription(desc))
		if err != nil {
			g, _ = noopMeter.Float64ObservableGauge(name)
		}
		return g
	}
	in.CounterFlushLag = lag(CounterFlushLag, "How long a Lax counter's flushes have been failing (or keys refused) with deltas pending; 0 while they succeed or nothing is pending.")
	in.ICFlushLag = lag(ICFlushLag, "How long a Lax instance counter's flushes have been failing (or keys refused) with deltas pending; 0 while they succeed or nothing is pending.")
	var err error
	in.RLSyncAge, err = m.Float64ObservableGauge(RateLimitSyncAge, metric.WithUnit("s"),
		metric.WithDescription("Time since the Hybrid limiter's last sync round that left no key failing (its view's staleness bound while degraded)."))
	if err != nil {
		in.RLSyncAge, _ = noopMeter.Float64ObservableGauge(RateLimitSyncAge)
	}
	return in
}

// Register registers f as the callback of the observable instrument i;
// nil when that fails.
func (in *Instruments) Register(f metric.Callback, i metric.Observable) metric.Registration {
	reg, err := in.meter.RegisterCallback(f, i)
	if err != nil {
		return nil
	}
	return reg
}

// Prefix is the attribute option naming a prefix.
func Prefix(p string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(AttrPrefix.String(p)))
}

// WithOutcome is the attribute option of a prefix and an outcome.
// The outcome is Outcome's class for a backend error, "error" for any
// other (the primitive's own, such as distkit.ErrDuplicateInstance).
func WithOutcome(p string, err error) metric.MeasurementOption {
	o := Outcome(err)
	if o == OutcomeIndeterminate && !errors.Is(err, backend.ErrIndeterminate) && !errors.Is(err, context.DeadlineExceeded) {
		o = OutcomeError
	}
	return metric.WithAttributeSet(attribute.NewSet(AttrPrefix.String(p), AttrOutcome.String(o)))
}

// RegisterPending registers the callback of a pending-keys gauge g and
// of a flush-lag gauge lag: pending is called at each collection (it
// returns false when its primitive is gone); behind gives the lag while
// keys are pending (0 else). Unregister the result on Close; nil when in
// is nil.
func (in *Instruments) RegisterPending(g metric.Int64ObservableGauge, lag metric.Float64ObservableGauge, prefix string,
	pending func() (int, bool), behind func() float64) metric.Registration {
	opt := Prefix(prefix)
	reg, err := in.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if n, ok := pending(); ok {
			o.ObserveInt64(g, int64(n), opt)
			d := 0.0
			if n > 0 {
				d = behind()
			}
			o.ObserveFloat64(lag, d, opt)
		}
		return nil
	}, g, lag)
	if err != nil {
		return nil
	}
	return reg
}

// Flusher is the telemetry of one Lax flusher (counter or instance
// counter). A nil *Flusher records nothing.
type Flusher struct {
	r                         *Reporter
	health                    Health
	prefix                    string
	batches, deltas, failures metric.Int64Counter
	opt                       metric.MeasurementOption
	reg                       metric.Registration
	failSince                 atomic.Int64 // unix ns: when the flushes started failing (the lag gauge)
}

// NewFlusher returns the telemetry of a Lax flusher of prefix (ic: an
// instance counter, whose id is instance), nil when cfg configures
// nothing. pending feeds the pending-keys gauge.
func NewFlusher(cfg Config, ic bool, prefix, instance string, pending func() (int, bool)) *Flusher {
	r := NewReporter(cfg, "counter", prefix, instance)
	if ic {
		r = NewReporter(cfg, "instancecounter", prefix, instance)
	}
	in := For(cfg.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	f := &Flusher{r: r, prefix: prefix}
	if in != nil {
		f.opt = Prefix(prefix)
		if ic {
			f.batches, f.deltas, f.failures = in.ICFlushBatches, in.ICFlushDeltas, in.ICFlushFailures
			f.reg = in.RegisterPending(in.ICPendingKeys, in.ICFlushLag, prefix, pending, f.behind)
		} else {
			f.batches, f.deltas, f.failures = in.CounterFlushBatches, in.CounterFlushDeltas, in.CounterFlushFailures
			f.reg = in.RegisterPending(in.CounterPendingKeys, in.CounterFlushLag, prefix, pending, f.behind)
		}
	}
	return f
}

// Sent records one batch sent: err nil when the script ran, with items
// of its keys applied and, when refusal is not nil, some refused (the
// first refusal's error: the backend refused those keys' deltas, which
// stay pending and are retried with backoff), or err, a batch that
// failed. A failure or a refusal after a success reports FlushFailing; a
// batch that ran without refusal after a failure reports FlushRecovered
// unless refusedLeft (nil: never) says keys refused earlier are still set
// aside; a batch cut short by a cancelled context (Close, a caller
// giving up) changes no state. refusedLeft runs only in the failing
// state.
func (f *Flusher) Sent(ctx context.Context, items int, refusal, err error, refusedLeft func() bool) {
	if f == nil {
		return
	}
	if err == nil {
		if f.batches != nil && (items > 0 || refusal == nil) { // a batch whose every key was refused applied nothing
			f.batches.Add(ctx, 1, f.opt)
			f.deltas.Add(ctx, int64(items), f.opt)
		}
		if refusal != nil {
			if f.failures != nil {
				f.failures.Add(ctx, 1, WithOutcome(f.prefix, refusal))
			}
			f.fail(refusal)
			return
		}
		if f.health.Failing() && refusedLeft != nil && refusedLeft() {
			return
		}
		f.health.OK(f.r, distkit.FlushRecovered)
		return
	}
	if f.failures != nil {
		f.failures.Add(ctx, 1, WithOutcome(f.prefix, err))
	}
	if !errors.Is(err, context.Canceled) {
		f.fail(err)
	}
}

// fail records a failed or refused batch (Send is never concurrent).
func (f *Flusher) fail(err error) {
	if !f.health.Failing() {
		f.failSince.Store(time.Now().UnixNano())
	}
	f.health.Fail(f.r, distkit.FlushFailing, err)
}

// behind is the flush lag: how long the flushes have been failing (or
// keys refused), 0 while they succeed (the backend is then behind by at
// most the flush interval, AllowedLag or FlushInterval, by design).
func (f *Flusher) behind() float64 {
	if !f.health.Failing() {
		return 0
	}
	return max(0, time.Since(time.Unix(0, f.failSince.Load())).Seconds())
}

// BatchOutcome counts the items of b the backend applied and returns the
// first refusal among them (after a Send that returned err).
func BatchOutcome[T any](b *flush.Batch[T], err error) (applied int, refusal error) {
	if err != nil {
		return 0, nil
	}
	for i := range b.Items {
		if b.Items[i].Applied {
			applied++
		} else if refusal == nil {
			refusal = b.Items[i].Err
		}
	}
	return applied, refusal
}

// RefusedLeft reports whether g still has keys set aside by a refusal,
// other than those b (sent, its outcome not yet recorded) just applied.
func RefusedLeft[T any](g *flush.Engine[T], b *flush.Batch[T]) bool {
	failed := g.Failed()
	for i := range b.Items {
		if b.Items[i].Applied {
			delete(failed, b.Items[i].E.Key())
		}
	}
	return len(failed) > 0
}

// Close unregisters the pending-keys gauge.
func (f *Flusher) Close() {
	if f != nil && f.reg != nil {
		f.reg.Unregister()
	}
}

// Watch is the telemetry of the background read loops of one primitive
// value (Election.Observe): failed reads (logged once per state change of
// a loop, counted each). A nil *Watch records nothing.
type Watch struct {
	r        *Reporter
	prefix   string
	failures metric.Int64Counter
}

// NewWatch returns the read-loop telemetry of one value of primitive
// named name under prefix, nil when cfg configures nothing.
func NewWatch(cfg Config, primitive, prefix, name string, failures func(*Instruments) metric.Int64Counter) *Watch {
	r := NewReporter(cfg, primitive, name, "")
	in := For(cfg.MeterProvider)
	if r == nil && in == nil {
		return nil
	}
	w := &Watch{r: r, prefix: prefix}
	if in != nil {
		w.failures = failures(in)
	}
	return w
}

// Read records one read of the loop whose state is h: err nil is a
// success (WatchRecovered after a failure); a failure after a success
// reports WatchFailing. A read cut short by the loop's ctx ending changes
// nothing.
func (w *Watch) Read(ctx context.Context, h *Health, err error) {
	if w == nil {
		return
	}
	if err == nil {
		h.OK(w.r, distkit.WatchRecovered)
		return
	}
	if ctx.Err() != nil {
		return
	}
	if w.failures != nil {
		w.failures.Add(ctx, 1, WithOutcome(w.prefix, err))
	}
	h.Fail(w.r, distkit.WatchFailing, err)
}
