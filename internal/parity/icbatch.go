package parity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
)

// icBatchOp is one operation of icscript.OpBatch: Op's ARGV 4 to 8.
type icBatchOp struct{ mode, key, op, x, n string }

// instanceBatchSteps are the operations instanceBatchScenario sends, in one
// OpBatch call and one Op call each: every mode, comparators that match
// and miss, another instance's slice wiped by Set and Del, overflow of the
// slice and of the total in the middle of a batch, a total that is not an
// integer and an unknown mode.
func instanceBatchSteps() []icBatchOp {
	f := func(mode, key string, n int64) icBatchOp {
		return icBatchOp{mode, keyspace.InstanceKeyField(key), "always", "0", strconv.FormatInt(n, 10)}
	}
	c := func(mode, key, op string, x, n int64) icBatchOp {
		return icBatchOp{mode, keyspace.InstanceKeyField(key), op, strconv.FormatInt(x, 10), strconv.FormatInt(n, 10)}
	}
	return []icBatchOp{
		f("get", "k", 0), f("inc", "k", 5), f("inc", "k", -2), f("get", "k", 0),
		c("incif", "k", "eq", 10, 1), c("incif", "k", "eq", 3, 1), c("incif", "k", "eq", 13, 1),
		f("setmine", "k", 4), c("setmineif", "k", "gt", 100, 9), c("setmineif", "k", "eq", 4, 9),
		f("delmine", "k", 0), f("inc", "k", 2), c("setif", "k", "lt", 0, 1), c("setif", "k", "ge", 0, 7),
		f("del", "k", 0), f("get", "k", 0), f("inc", "k", 1), f("del", "k", 0), f("del", "k", 0),
		f("set", "o", 1), f("inc", "o", 2),
		f("set", "big", math.MaxInt64-1), f("inc", "big", 1), f("inc", "big", 1), f("inc", "big", math.MinInt64),
		f("get", "big", 0), f("setmine", "big", math.MinInt64), f("inc", "big", -1), f("delmine", "big", 0),
		f("inc", "text", 1), f("setmine", "text", 2), f("get", "text", 0), f("set", "text", 3), f("inc", "text", 1),
		f("bogus", "k", 1), f("inc", "user:42", 1),
	}
}

// instanceBatchScenario runs icscript.OpBatch and, on a second prefix in
// the same state, the same operations one Op call each, and records both:
// the batch's outcome per operation must agree across backends (Lua vs Go
// twin) and, on every backend, with the single calls. Stamps and epochs
// (server time) are left out; versions, totals, slices and rejoined parts
// are kept.
var instanceBatchScenario = Scenario{Name: "InstanceCounterBatch", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	common := func(nonce, me string) []string { return []string{nonce, me, "60000"} }
	// render keeps status, version, cumulative, mine and rejoined of an
	// Op reply; an error becomes its code.
	render := func(r backend.Result) string {
		if r.Err != nil {
			return renderScriptErr(r.Err)
		}
		arr, err := r.Value.Array()
		if err != nil {
			return "not an array: " + r.Value.String()
		}
		var s []string
		for i, e := range arr {
			if i == 2 || i == 3 || i == 6 {
				continue // stamp, cleared, epoch: server time
			}
			t, _ := e.Text()
			s = append(s, t)
		}
		return strings.Join(s, ",")
	}
	prepare := func(pre string) []string {
		keys := keyspace.InstanceCounter(pre).List()
		for _, who := range []string{"a", "b"} {
			args := append(common("n"+who, who), "0", "0", "0", "60000")
			if _, err := b.EvalScript(ctx, icscript.Rejoin, keys, args...); err != nil {
				out = append(out, "rejoin: "+Outcome(nil, err))
			}
		}
		for _, k := range []string{"k", "o"} { // b holds a slice of k and o
			args := append(common("nb", "b"), "inc", keyspace.InstanceKeyField(k), "always", "0", "10")
			if _, err := b.EvalScript(ctx, icscript.Op, keys, args...); err != nil {
				out = append(out, "op: "+Outcome(nil, err))
			}
		}
		if _, err := b.EvalScript(ctx, testkit.HSetScript, []string{keyspace.InstanceCounter(pre).Total}, keyspace.InstanceKeyField("text"), "not a number"); err != nil {
			out = append(out, "hset: "+Outcome(nil, err))
		}
		return keys
	}
	steps := instanceBatchSteps()
	kb := prepare(p + "-batch")
	args := common("na", "a")
	for _, s := range steps {
		args = append(args, s.mode, s.key, s.op, s.x, s.n)
	}
	v, err := b.EvalScript(ctx, icscript.OpBatch, kb, args...)
	if err != nil {
		return append(out, "batch: "+Outcome(nil, err))
	}
	arr, err := v.Array()
	if err != nil || len(arr) != len(steps)+1 {
		return append(out, "batch reply: "+v.String())
	}
	st, _ := arr[0].Text()
	out = append(out, "batch status "+st)
	ks := prepare(p + "-single")
	for k, s := range steps {
		var got backend.Result
		if sub, _ := arr[k+1].Array(); len(sub) == 1 {
			msg, _ := sub[0].Text()
			got.Err = &backend.ScriptError{Script: icscript.Op.Name(), Msg: msg}
		} else {
			got.Value = arr[k+1]
		}
		var one backend.Result
		one.Value, one.Err = b.EvalScript(ctx, icscript.Op, ks, append(common("na", "a"), s.mode, s.key, s.op, s.x, s.n)...)
		g, alone := render(got), render(one)
		line := fmt.Sprintf("%s %s %s %s %s: %s (as single calls: same %v)", s.mode, s.key, s.op, s.x, s.n, g, g == alone)
		if g != alone {
			line += " single: " + alone
		}
		out = append(out, line)
	}
	// The state both left behind is the same.
	for _, k := range []string{"k", "o", "big", "text", "user:42"} {
		var vs []string
		for _, keys := range [][]string{kb, ks} {
			r := backend.Result{}
			r.Value, r.Err = b.EvalScript(ctx, icscript.OpBatch, keys, append(common("na", "a"), "get", keyspace.InstanceKeyField(k), "always", "0", "0")...)
			if r.Err != nil {
				vs = append(vs, renderScriptErr(r.Err))
				continue
			}
			a, _ := r.Value.Array()
			if len(a) != 2 {
				vs = append(vs, r.Value.String())
				continue
			}
			e, _ := a[1].Array()
			var s []string
			for i := 4; i < len(e) && i < 6; i++ {
				t, _ := e[i].Text()
				s = append(s, t)
			}
			vs = append(vs, strings.Join(s, ","))
		}
		out = append(out, fmt.Sprintf("state %s: %s (same %v)", k, vs[0], vs[0] == vs[1]))
	}
	// Refused as a whole: an unregistered object, another object's id, a
	// malformed argument list.
	for _, who := range [][]string{common("nz", "z"), common("nx", "a")} {
		v, err := b.EvalScript(ctx, icscript.OpBatch, kb, append(who, "inc", "k", "always", "0", "1", "get", "k", "always", "0", "0")...)
		if err != nil {
			out = append(out, Outcome(nil, err))
			continue
		}
		out = append(out, v.String())
	}
	_, err = b.EvalScript(ctx, icscript.OpBatch, kb, append(common("na", "a"), "inc", "k")...)
	out = append(out, "malformed: "+renderScriptErr(err))
	return out
}}

// renderScriptErr renders an error by class, a script error by its code.
// The rueidis driver reports an error reply of a script without its
// leading "ERR " (a message in a batch's reply keeps it): a message that
// does not start with an upper-case code is an ERR.
func renderScriptErr(err error) string {
	var se *backend.ScriptError
	if err != nil && errors.As(err, &se) {
		code := se.Code()
		if code == "" || strings.ToUpper(code) != code {
			code = "ERR"
		}
		return "err:script:" + code
	}
	return Outcome(nil, err)
}
