package parity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
)

// batchOp is one operation of counterscript.Batch.
type batchOp struct{ op, field, arg string }

// counterBatchSteps are the operations counterBatchScenario sends, in one
// Batch call and one by one: every operation kind, values around 2^53 and
// the int64 limits, overflow in the middle of a batch, a field that is not
// an integer and (under another prefix) a key of the wrong type.
func counterBatchSteps() []batchOp {
	i := func(f string, d int64) batchOp { return batchOp{counterscript.OpInc, f, strconv.FormatInt(d, 10)} }
	s := func(f string, v int64) batchOp { return batchOp{counterscript.OpSet, f, strconv.FormatInt(v, 10)} }
	g := func(f string) batchOp { return batchOp{counterscript.OpGet, f, ""} }
	d := func(f string) batchOp { return batchOp{counterscript.OpDel, f, ""} }
	return []batchOp{
		g("a"), i("a", 5), i("a", -7), g("a"), d("a"), d("a"), g("a"),
		s("b", 1<<53-2), i("b", 1), i("b", 1), i("b", 1), i("b", 0), i("b", -3),
		s("c", math.MaxInt64-1), i("c", 1), i("c", 1), g("c"), i("c", math.MinInt64), i("c", math.MinInt64), i("c", math.MinInt64),
		i("d", math.MinInt64), i("d", -1), i("d", math.MaxInt64), i("d", 1e15), i("d", -1e15), i("d", 1e16),
		g("text"), i("text", 1), i("text", 1e16), s("text", 3), i("text", 1),
		i("e", 1e18), i("e", 1e18), i("e", 1e18), i("e", -1e18),
		{"bogus", "a", "1"},
	}
}

// counterBatchScenario runs counterscript.Batch and, on a second prefix
// in the same state, the same operations one script call each, and
// records both: the batch's outcome per operation must agree across
// backends (Lua vs Go twin) and, on every backend, with the single calls
// (the script really is what one call per operation gives).
var counterBatchScenario = Scenario{Name: "CounterBatch", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	steps := counterBatchSteps()
	var out []string
	prepare := func(pre string) string {
		h := keyspace.CounterHash(pre)
		if _, err := b.EvalScript(ctx, testkit.HSetScript, []string{h}, keyspace.CounterField("text"), "not a number"); err != nil {
			out = append(out, Outcome(nil, err))
		}
		return h
	}
	render := func(r backend.Result) string {
		var se *backend.ScriptError
		if errors.As(r.Err, &se) && !errors.Is(r.Err, backend.ErrNotApplied) {
			// The rueidis driver reports an error reply of a script
			// without its leading "ERR " (a message in a batch's reply
			// keeps it): a message that does not start with an upper-case
			// code is an ERR.
			code := se.Code()
			if code == "" || strings.ToUpper(code) != code {
				code = "ERR"
			}
			return "err:script:" + code
		}
		if r.Err != nil {
			return Outcome(nil, r.Err)
		}
		return r.Value.String()
	}
	hb := prepare(p + "-batch")
	var args, ops []string
	for _, s := range steps {
		args = append(args, s.op, keyspace.CounterField(s.field), s.arg)
		ops = append(ops, s.op)
	}
	v, err := b.EvalScript(ctx, counterscript.Batch, []string{hb}, args...)
	if err != nil {
		return append(out, "batch: "+Outcome(nil, err))
	}
	res, err := counterscript.BatchReply(v, ops)
	if err != nil {
		return append(out, "batch reply: "+err.Error())
	}
	hs := prepare(p + "-single")
	for k, s := range steps {
		var one backend.Result
		if sc := counterscript.Single(s.op); sc != nil {
			one.Value, one.Err = b.EvalScript(ctx, sc, []string{hs}, counterscript.SingleArgs(s.op, keyspace.CounterField(s.field), s.arg)...)
		} else {
			one.Err = fmt.Errorf("no script")
		}
		got, alone := render(res[k]), render(one)
		// A single call's value may come back as an integer where the
		// batch has a string (or the reverse); what counts is the number.
		same := got == alone
		if !same && res[k].Err == nil && one.Err == nil {
			x, e1 := res[k].Value.Int64()
			y, e2 := one.Value.Int64()
			same = e1 == nil && e2 == nil && x == y
		}
		if s.op == "bogus" {
			same = true
		}
		line := fmt.Sprintf("%s %s %s: %s (as single calls: same %v)", s.op, s.field, s.arg, got, same)
		if !same {
			line += " single: " + alone
		}
		out = append(out, line)
	}
	// A hash of the wrong type: every operation fails on its own.
	hw := keyspace.CounterHash(p + "-wrong")
	if _, err := b.EvalScript(ctx, testkit.DelKeyScript, []string{hw}); err != nil {
		out = append(out, Outcome(nil, err))
	}
	b.EvalScript(ctx, testkit.WrongTypeScript, []string{hw}) // leaves hw a string
	v, err = b.EvalScript(ctx, counterscript.Batch, []string{hw}, "inc", "f", "1", "get", "f", "", "set", "f", "2", "del", "f", "", "inc", "f", "10000000000000000")
	if err != nil {
		return append(out, "wrong type batch: "+Outcome(nil, err))
	}
	res, err = counterscript.BatchReply(v, []string{"inc", "get", "set", "del", "inc"})
	if err != nil {
		return append(out, "wrong type reply: "+err.Error())
	}
	for k, r := range res {
		op := []string{"inc", "get", "set", "del", "inc"}[k]
		arg := []string{"1", "", "2", "", "10000000000000000"}[k]
		var one backend.Result
		one.Value, one.Err = b.EvalScript(ctx, counterscript.Single(op), []string{hw}, counterscript.SingleArgs(op, "f", arg)...)
		out = append(out, fmt.Sprintf("wrong type %s %s: %s (as single calls: same %v)", op, arg, render(r), render(r) == render(one)))
	}
	return out
}}
