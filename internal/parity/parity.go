// Package parity runs the same deterministic scenarios on two backends and
// compares the outcomes step by step, which catches a Lua script and its
// Go twin that disagree (running each backend's suite alone would not).
// conformance.RunParity is its public face.
package parity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Scenario is a deterministic sequence of operations against one backend
// under a fresh prefix; it returns one rendered outcome per step. Running a
// Scenario on two backends and comparing outcomes (Diff) catches a Lua
// script and its Go twin that disagree, which running each backend's suite
// alone would not.
type Scenario struct {
	Name string
	Run  func(ctx context.Context, b backend.Backend, prefix string) []string
}

// Outcome renders a result and its error class for comparison.
func Outcome(v any, err error) string {
	if err == nil {
		return fmt.Sprint(v)
	}
	var se *backend.ScriptError
	switch {
	case errors.Is(err, distkit.ErrOverflow):
		return "err:overflow"
	case errors.Is(err, distkit.ErrInvalidKey):
		return "err:invalid-key"
	case errors.Is(err, distkit.ErrInvalidOption):
		return "err:invalid-option"
	case errors.As(err, &se):
		return "err:script:" + se.Code()
	case errors.Is(err, backend.ErrNotApplied):
		return "err:not-applied"
	case errors.Is(err, backend.ErrIndeterminate):
		return "err:indeterminate"
	}
	return "err:other:" + err.Error()
}

// Diff runs s on a backend from each harness and returns the steps whose
// outcomes differ, as "step N: a=… b=…".
func Diff(t *testing.T, a, b testkit.Harness, s Scenario) []string {
	ctx := context.Background()
	ra := s.Run(ctx, testkit.Open(t, a), testkit.Prefix(t))
	rb := s.Run(ctx, testkit.Open(t, b), testkit.Prefix(t))
	var out []string
	for i := range max(len(ra), len(rb)) {
		var x, y string
		if i < len(ra) {
			x = ra[i]
		}
		if i < len(rb) {
			y = rb[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("step %d: %s / %s", i, x, y))
		}
	}
	return out
}

// Scenarios lists the parity scenarios of every primitive.
func Scenarios() []Scenario {
	return []Scenario{strictCounterScenario, conditionalScenario, laxScenario, instanceScenario,
		lockScenario, semaphoreScenario, electionScenario, rateLimitScenario, backendScenario, anyKeyScenario, laxFlushScenario, instanceHighBytesScenario,
		instanceRejoinRefusalScenario, counterBatchScenario, instanceLiveScenario, instanceBatchScenario,
		instanceSecondRejoinScenario}
}

// Run runs every Scenario on reference and subject and fails on any
// difference.
func Run(t *testing.T, reference, subject testkit.NewHarness) {
	for _, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			if d := Diff(t, reference(t), subject(t), s); len(d) > 0 {
				t.Fatalf("backends disagree on %d steps:\n%v", len(d), d)
			}
		})
	}
}

var strictCounterScenario = Scenario{Name: "StrictCounter", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	c, err := counter.NewStrict(b, counter.Options{Prefix: p})
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	var out []string
	rec := func(v int64, err error) { out = append(out, Outcome(v, err)) }
	values := []int64{0, 1, -1, 7, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, -(1 << 60)}
	for _, start := range values {
		for _, d := range values {
			rec(c.Set(ctx, "k", start))
			rec(c.Inc(ctx, "k", d))
			rec(c.Get(ctx, "k"))
			rec(c.Dec(ctx, "k", d))
			rec(c.Get(ctx, "k"))
		}
	}
	rec(c.Del(ctx, "k"))
	rec(c.Del(ctx, "k"))
	rec(c.Inc(ctx, "new", 5))
	rec(c.Inc(ctx, "user:42", 1)) // any byte is a valid key
	rec(c.Get(ctx, ""))
	out = append(out, Outcome(nil, c.Clear(ctx)))
	rec(c.Get(ctx, "new"))
	return out
}}

var conditionalScenario = Scenario{Name: "ConditionalCounter", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	c, err := counter.NewStrict(b, counter.Options{Prefix: p})
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	var out []string
	rec2 := func(cur, prev int64, err error) { out = append(out, Outcome([2]int64{cur, prev}, err)) }
	values := []int64{0, -1, 5, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64}
	cmps := []func(int64) distkit.Comparator{distkit.Eq, distkit.Ne, distkit.Lt, distkit.Gt, distkit.Le, distkit.Ge}
	for _, start := range values {
		for _, operand := range values {
			for _, cmp := range cmps {
				c.Set(ctx, "k", start)
				rec2(c.IncIf(ctx, "k", cmp(operand), 1))
				rec2(c.SetIf(ctx, "k", cmp(operand), operand))
			}
		}
	}
	res, err := c.IncAllIf(ctx, []counter.Update{{Key: "a", Delta: 1}, {Key: "a", Cmp: distkit.Eq(1), Delta: 2}, {Key: "k", Delta: math.MaxInt64}, {Key: "b", Delta: 3}})
	out = append(out, Outcome(res, err))
	res, err = c.IncAllIf(ctx, []counter.Update{{Key: "a", Delta: 1}, {Key: "a", Cmp: distkit.Eq(1), Delta: 2}, {Key: "b", Cmp: distkit.Gt(0), Delta: 3}})
	out = append(out, Outcome(res, err))
	res, err = c.SetAllIf(ctx, []counter.Update{{Key: "a", Cmp: distkit.Eq(3), Delta: math.MinInt64}, {Key: "c", Cmp: distkit.Ne(0), Delta: 1}})
	out = append(out, Outcome(res, err))
	vals, err := c.GetAll(ctx, "a", "b", "c", "k", "a")
	out = append(out, Outcome(vals, err))
	return out
}}

var laxScenario = Scenario{Name: "LaxCounter", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	l, err := counter.NewLax(b, counter.Options{Prefix: p, AllowedLag: time.Hour})
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	defer l.Close(ctx)
	s, _ := counter.NewStrict(b, counter.Options{Prefix: p})
	var out []string
	rec := func(v int64, err error) { out = append(out, Outcome(v, err)) }
	rec(l.Inc(ctx, "a", 5))
	rec(l.Dec(ctx, "b", 7))
	out = append(out, Outcome(nil, l.Flush(ctx)))
	rec(s.Get(ctx, "a"))
	rec(s.Get(ctx, "b"))
	rec(s.Set(ctx, "big", math.MaxInt64-1))
	rec(l.Inc(ctx, "big", 1)) // the local view has not seen big yet
	rec(l.Inc(ctx, "big", 1))
	out = append(out, Outcome(nil, l.Flush(ctx))) // overflows remotely: stuck
	out = append(out, Outcome(l.Pending(), nil))
	rec(s.Get(ctx, "big"))
	rec(l.Set(ctx, "big", 3))
	rec(l.Inc(ctx, "a", 1))
	rec(l.Del(ctx, "a"))
	rec(l.Get(ctx, "a"))
	out = append(out, Outcome(nil, l.Close(ctx)))
	vals, err := s.GetAll(ctx, "a", "b", "big")
	out = append(out, Outcome(vals, err))
	return out
}}

var instanceScenario = Scenario{Name: "InstanceCounter", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	rec := func(c, m int64, err error) { out = append(out, Outcome([2]int64{c, m}, err)) }
	a, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: p, InstanceID: "a", KeepSlicesOnClose: true})
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	defer a.Close(ctx)
	o, _ := instancecounter.NewStrict(b, instancecounter.Options{Prefix: p, InstanceID: "o"})
	defer o.Close(ctx)
	rec(a.Inc(ctx, "k", 5))
	rec(o.Inc(ctx, "k", 7))
	rec(a.Dec(ctx, "k", 2))
	rec(o.SetOnInstance(ctx, "k", -4))
	rec(a.IncIf(ctx, "k", distkit.Gt(0), 10))
	rec(a.IncIf(ctx, "k", distkit.Lt(0), 10))
	rec(o.SetOnInstanceIf(ctx, "k", distkit.Eq(-4), 1))
	rec(o.Set(ctx, "k", 100))
	rec(a.Get(ctx, "k"))
	rec(a.Inc(ctx, "k", 1))
	rec(o.SetIf(ctx, "k", distkit.Eq(101), 3))
	rec(a.DelOnInstance(ctx, "k"))
	rec(o.Inc(ctx, "j", 9))
	rec(a.Del(ctx, "j"))
	rec(o.Get(ctx, "j"))
	rec(a.Inc(ctx, "big", math.MaxInt64))
	rec(o.Inc(ctx, "big", 1))
	out = append(out, Outcome(nil, a.Clear(ctx)))
	rec(o.Get(ctx, "k"))
	rec(a.Inc(ctx, "k", 2))
	l, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: p, InstanceID: "l", FlushInterval: time.Hour})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	rec(l.Inc(ctx, "k", 7))
	rec(l.Inc(ctx, "j", -3))
	out = append(out, Outcome(nil, l.Flush(ctx)))
	rec(a.Get(ctx, "k"))
	rec(l.SetOnInstance(ctx, "k", 1))
	out = append(out, Outcome(nil, l.Close(ctx))) // removes l's slices
	rec(a.Get(ctx, "k"))
	rec(a.Get(ctx, "j"))
	return out
}}

// backendScenario covers the lease and heartbeat scripts every driver shares.
var backendScenario = Scenario{Name: "BackendScripts", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	key := testkit.Tagged(p, "lease")
	for _, step := range []struct {
		f func() (bool, error)
	}{
		{func() (bool, error) { return b.AcquireLease(ctx, key, "A", 10e9) }},
		{func() (bool, error) { return b.AcquireLease(ctx, key, "B", 10e9) }},
		{func() (bool, error) { return b.RenewLease(ctx, key, "B", 10e9) }},
		{func() (bool, error) { return b.RenewLease(ctx, key, "A", 10e9) }},
		{func() (bool, error) { return b.ReleaseLease(ctx, key, "B") }},
		{func() (bool, error) { return b.ReleaseLease(ctx, key, "A") }},
		{func() (bool, error) { return b.ReleaseLease(ctx, key, "A") }},
	} {
		ok, err := step.f()
		out = append(out, Outcome(ok, err))
	}
	for _, s := range []backend.Script{testkit.TypesScript, testkit.EchoScript, testkit.RaiseScript} {
		v, err := b.EvalScript(ctx, s, []string{key}, "x")
		out = append(out, Outcome(v, err))
	}
	v, err := b.EvalScript(ctx, testkit.WrongTypeScript, []string{testkit.Tagged(p, "s")})
	out = append(out, Outcome(v, err))
	for i := range 3 {
		v, err := b.EvalScript(ctx, testkit.BumpScript, []string{testkit.Tagged(p, "n")})
		out = append(out, strconv.Itoa(i)+":"+Outcome(v, err))
	}
	return out
}}

// CheckParityCatchesDisagreement proves Diff is not vacuous: a script whose
// Go twin is wrong only for large values is reported, and the same script
// with a faithful twin is not. subject must run Lua (a Redis harness).
func CheckParityCatchesDisagreement(t *testing.T, reference, subject testkit.NewHarness) {
	const lua = `return redis.call('INCRBY', KEYS[1], ARGV[1])`
	twin := func(bug int64) driver.GoFunc {
		return func(st driver.Store, keys, args []string) (backend.Value, error) {
			cur, _, err := st.Get(keys[0])
			if err != nil {
				return backend.Value{}, err
			}
			n, _ := strconv.ParseInt(cur, 10, 64)
			d, _ := strconv.ParseInt(args[0], 10, 64)
			n += d
			if err := st.Set(keys[0], strconv.FormatInt(n, 10), 0); err != nil {
				return backend.Value{}, err
			}
			if n > 1<<40 {
				n += bug // a twin that only goes wrong for large values
			}
			return backend.Int(n), nil
		}
	}
	faithful := driver.NewScript("parity-faithful", lua, twin(0))
	buggy := driver.NewScript("parity-buggy", lua, twin(2))
	scenario := func(s backend.Script) Scenario {
		return Scenario{Name: s.Name(), Run: func(ctx context.Context, b backend.Backend, p string) []string {
			var out []string
			for _, d := range []string{"1", "2", "1099511627776"} {
				v, err := b.EvalScript(ctx, s, []string{testkit.Tagged(p, "n")}, d)
				out = append(out, Outcome(v, err))
			}
			return out
		}}
	}
	if d := Diff(t, reference(t), subject(t), scenario(buggy)); len(d) != 1 {
		t.Fatalf("Diff reported %v for a Go twin that disagrees with its Lua source on one step", d)
	}
	if d := Diff(t, reference(t), subject(t), scenario(faithful)); len(d) != 0 {
		t.Fatalf("Diff reported a faithful twin: %v", d)
	}
}
