// Package otelbackend traces and measures every call a distkit primitive
// makes to its backend, with OpenTelemetry. Wrap the backend once and hand
// the wrapper to the primitives:
//
//	func observedCounter(client rueidis.Client) (*counter.Strict, error) {
//		b, err := rueidisbackend.New(client)
//		if err != nil {
//			return nil, err
//		}
//		// The zero Options use otel.GetTracerProvider() and otel.GetMeterProvider().
//		ob := otelbackend.Wrap(b, otelbackend.Options{})
//		return counter.NewStrict(ob, counter.Options{Prefix: "shop"})
//	}
//
// A client-side instrumentation of Redis (redisotel, rueidisotel) shows a
// distkit call as an opaque "EVALSHA <sha>"; this wrapper names each span
// after the script that ran ("counter-inc", "lock-acquire",
// "instancecounter-flush", ...) and records:
//
//   - one span per script call (kind client) named after the script, with
//     the attributes distkit.script (the name), distkit.keys (how many
//     keys it touched), distkit.outcome (ok, not_applied, indeterminate,
//     script_error) and distkit.round_trip_ms (the time the call took, as
//     the primitive saw it). A failed call also records the error and an
//     Error status. A batch (EvalScripts, one round trip) is a span
//     "distkit.batch" with distkit.batch.calls, and one child span per call.
//     Heartbeat and the lease methods are spans named after the scripts that
//     implement them ("heartbeat", "acquire-lease", "renew-lease",
//     "release-lease"), and a Notifier subscription a span "subscribe".
//   - the histogram distkit.backend.call.duration (unit s) and the counter
//     distkit.backend.calls (unit {call}), both with the attributes
//     distkit.script and distkit.outcome.
//
// The wrapper keeps the optional capabilities of the backend it wraps: it
// implements backend.Notifier exactly when the wrapped backend does, and
// backend.Replicator likewise, so a lock still wakes waiters on release and
// still honours MinReplicas through it.
//
// The package uses only the OpenTelemetry API; the application chooses the
// SDK and exporters.
package otelbackend

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/obs"
)

// ScopeName is the instrumentation scope of the tracer and meter the
// wrapper uses.
const ScopeName = "github.com/distkit-go/distkit/backend/otelbackend"

// Names of the metrics and attributes the wrapper records.
const (
	// MetricCallDuration is the histogram of call durations, in seconds.
	MetricCallDuration = "distkit.backend.call.duration"
	// MetricCalls counts calls.
	MetricCalls = "distkit.backend.calls"

	// AttrScript is the script's name.
	AttrScript = attribute.Key("distkit.script")
	// AttrOutcome is the outcome class of a call (see Outcome).
	AttrOutcome = attribute.Key("distkit.outcome")
	// AttrKeys is how many keys a call touched.
	AttrKeys = attribute.Key("distkit.keys")
	// AttrRoundTrip is the duration of a call in milliseconds.
	AttrRoundTrip = attribute.Key("distkit.round_trip_ms")
	// AttrBatchCalls is how many calls a batch carried.
	AttrBatchCalls = attribute.Key("distkit.batch.calls")
	// AttrReplicasAcked is how many replicas acknowledged the writes of an
	// EvalScriptWait call.
	AttrReplicasAcked = attribute.Key("distkit.replicas.acked")
)

// Outcome classes, the values of the attribute distkit.outcome.
const (
	OutcomeOK            = obs.OutcomeOK
	OutcomeNotApplied    = obs.OutcomeNotApplied
	OutcomeIndeterminate = obs.OutcomeIndeterminate
	OutcomeScriptError   = obs.OutcomeScriptError
)

// Outcome classifies err as the wrapper's attribute distkit.outcome does
// (and the primitives' metrics), by the error's class: nil is "ok", a
// backend.ErrIndeterminate is "indeterminate" (a call cancelled while in
// flight included), a backend.ErrNotApplied is "not_applied" (a reply
// refused before the script ran, such as READONLY, included), a
// backend.ErrScript (a script that ran and raised an error) is
// "script_error", a context cancelled before the call was made is
// "not_applied", and anything else (errors a driver left unclassified)
// is "indeterminate", since it may have run.
func Outcome(err error) string { return obs.Outcome(err) }

// noopMeter stands in for instruments a provider could not make.
var noopMeter = noop.NewMeterProvider().Meter(ScopeName)

// Options configures Wrap. The zero value uses the global providers of
// package otel.
type Options struct {
	// TracerProvider makes the spans; nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the metrics; nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// Backend is a backend.Backend that traces and measures the calls to the
// one it wraps. Use Wrap; the value Wrap returns also implements the
// optional interfaces of the wrapped backend.
type Backend struct {
	next     backend.Backend
	tracer   trace.Tracer
	duration metric.Float64Histogram
	calls    metric.Int64Counter
	optCache sync.Map // optsKey → *measureOpts (scripts are a fixed set)
}

var _ backend.Backend = (*Backend)(nil)

// Wrap returns b traced and measured. The result implements
// backend.Notifier when b does, and backend.Replicator when b does. An
// instrument the meter provider cannot make is replaced by a no-op one;
// Wrap never fails. Wrap(nil) is nil, so that a primitive given it fails
// with distkit.ErrInvalidOption ("backend is nil").
func Wrap(b backend.Backend, opts Options) backend.Backend {
	if b == nil {
		return nil
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	mp := opts.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	o := &Backend{next: b, tracer: tp.Tracer(ScopeName)}
	var err error
	o.duration, err = m.Float64Histogram(MetricCallDuration, metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(obs.CallBuckets...),
		metric.WithDescription("Duration of distkit backend calls (one script run, heartbeat or lease call), by script and outcome."))
	if err != nil {
		o.duration, _ = noopMeter.Float64Histogram(MetricCallDuration)
	}
	o.calls, err = m.Int64Counter(MetricCalls, metric.WithUnit("{call}"),
		metric.WithDescription("distkit backend calls, by script and outcome."))
	if err != nil {
		o.calls, _ = noopMeter.Int64Counter(MetricCalls)
	}
	n, isN := b.(backend.Notifier)
	r, isR := b.(backend.Replicator)
	switch {
	case isN && isR:
		return &notifierReplicator{o, notifier{o, n}, replicator{o, r}}
	case isN:
		return &withNotifier{o, notifier{o, n}}
	case isR:
		return &withReplicator{o, replicator{o, r}}
	}
	return o
}

// measureOpts are the metric options of one script and outcome, made
// once: recording them allocates nothing.
type measureOpts struct {
	record []metric.RecordOption
	add    []metric.AddOption
}

type optsKey struct{ script, outcome string }

// opts returns the options of script and outcome.
func (o *Backend) opts(script, outcome string) *measureOpts {
	k := optsKey{script, outcome}
	if m, ok := o.optCache.Load(k); ok {
		return m.(*measureOpts)
	}
	opt := metric.WithAttributeSet(attribute.NewSet(AttrScript.String(script), AttrOutcome.String(outcome)))
	m, _ := o.optCache.LoadOrStore(k, &measureOpts{record: []metric.RecordOption{opt}, add: []metric.AddOption{opt}})
	return m.(*measureOpts)
}

// Unwrap returns the wrapped backend.
func (o *Backend) Unwrap() backend.Backend { return o.next }

// call is one traced call in progress.
type call struct {
	o     *Backend
	span  trace.Span
	name  string
	start time.Time
}

func (o *Backend) begin(ctx context.Context, name string, keys int) (context.Context, call) {
	ctx, span := o.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrScript.String(name), AttrKeys.Int(keys)))
	return ctx, call{o: o, span: span, name: name, start: time.Now()}
}

// end records the outcome of the call at (the end of) its round trip.
func (c call) end(ctx context.Context, err error, extra ...attribute.KeyValue) {
	d := time.Since(c.start)
	c.finish(ctx, d, err, extra...)
	c.span.End()
}

// finish records everything but ends nothing.
func (c call) finish(ctx context.Context, d time.Duration, err error, extra ...attribute.KeyValue) {
	outcome := Outcome(err)
	opts := c.o.opts(c.name, outcome)
	c.o.duration.Record(ctx, d.Seconds(), opts.record...)
	c.o.calls.Add(ctx, 1, opts.add...)
	if !c.span.IsRecording() {
		return
	}
	c.span.SetAttributes(AttrOutcome.String(outcome), AttrRoundTrip.Float64(float64(d)/float64(time.Millisecond)))
	c.span.SetAttributes(extra...)
	if err != nil {
		c.span.RecordError(err)
		c.span.SetStatus(codes.Error, err.Error())
	}
}

// EvalScript runs s on the wrapped backend in a span named after s.
func (o *Backend) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	sctx, c := o.begin(ctx, s.Name(), len(keys))
	v, err := o.next.EvalScript(sctx, s, keys, args...)
	c.end(ctx, err)
	return v, err
}

// EvalScripts runs calls on the wrapped backend in a span "distkit.batch",
// with one child span per call.
func (o *Backend) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	bctx, batch := o.tracer.Start(ctx, "distkit.batch", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrBatchCalls.Int(len(calls))))
	cs := make([]call, len(calls))
	for i, cl := range calls {
		_, cs[i] = o.begin(bctx, cl.Script.Name(), len(cl.Keys))
	}
	start := time.Now()
	res := o.next.EvalScripts(bctx, calls)
	d := time.Since(start)
	failed := 0
	for i := range cs {
		var err error
		if i < len(res) {
			err = res[i].Err
		}
		if err != nil {
			failed++
		}
		cs[i].finish(ctx, d, err)
		cs[i].span.End()
	}
	if failed > 0 {
		batch.SetStatus(codes.Error, "some calls failed")
	}
	batch.End()
	return res
}

// Heartbeat runs the wrapped Heartbeat in a span "heartbeat".
func (o *Backend) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) error {
	sctx, c := o.begin(ctx, driver.HeartbeatScript.Name(), 1)
	err := o.next.Heartbeat(sctx, group, member, ttl)
	c.end(ctx, err)
	return err
}

// AcquireLease runs the wrapped AcquireLease in a span "acquire-lease".
func (o *Backend) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	sctx, c := o.begin(ctx, driver.AcquireLeaseScript.Name(), 1)
	ok, err := o.next.AcquireLease(sctx, key, owner, ttl)
	c.end(ctx, err)
	return ok, err
}

// RenewLease runs the wrapped RenewLease in a span "renew-lease".
func (o *Backend) RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	sctx, c := o.begin(ctx, driver.RenewLeaseScript.Name(), 1)
	ok, err := o.next.RenewLease(sctx, key, owner, ttl)
	c.end(ctx, err)
	return ok, err
}

// ReleaseLease runs the wrapped ReleaseLease in a span "release-lease".
func (o *Backend) ReleaseLease(ctx context.Context, key, owner string) (bool, error) {
	sctx, c := o.begin(ctx, driver.ReleaseLeaseScript.Name(), 1)
	ok, err := o.next.ReleaseLease(sctx, key, owner)
	c.end(ctx, err)
	return ok, err
}

// Close closes the wrapped backend.
func (o *Backend) Close() error { return o.next.Close() }

// notifier is the backend.Notifier part of a wrapper.
type notifier struct {
	o *Backend
	n backend.Notifier
}

// Subscribe subscribes on the wrapped backend in a span "subscribe".
func (n notifier) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	sctx, c := n.o.begin(ctx, "subscribe", 0)
	ch, cancel, err := n.n.Subscribe(sctx, channel)
	c.end(ctx, err)
	return ch, cancel, err
}

// replicator is the backend.Replicator part of a wrapper.
type replicator struct {
	o *Backend
	r backend.Replicator
}

// EvalScriptWait runs the wrapped EvalScriptWait in a span named after s.
func (r replicator) EvalScriptWait(ctx context.Context, s backend.Script, keys, args []string, replicas int, timeout time.Duration) (backend.Value, int, error) {
	sctx, c := r.o.begin(ctx, s.Name(), len(keys))
	v, acked, err := r.r.EvalScriptWait(sctx, s, keys, args, replicas, timeout)
	c.end(ctx, err, AttrReplicasAcked.Int(acked))
	return v, acked, err
}

type withNotifier struct {
	*Backend
	notifier
}

type withReplicator struct {
	*Backend
	replicator
}

type notifierReplicator struct {
	*Backend
	notifier
	replicator
}
