package parity

import (
	"context"
	"fmt"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/election"
)

// electionScenario drives the election's scripts directly (a retried
// campaign finds its own term, renewals and resignations are
// owner-checked) and through the public API. Tokens are rendered by their
// order.
var electionScenario = Scenario{Name: "Election", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	k := keyspace.Election(p, "e")
	var last int64
	campaign := func(id, value string) int64 {
		v, err := b.EvalScript(ctx, electscript.Campaign, []string{k.Leader, k.Fence}, id, "1000", value, k.Channel)
		if err != nil {
			out = append(out, Outcome(nil, err))
			return 0
		}
		tok, _ := v.Int64()
		out = append(out, fmt.Sprintf("elected %v, rises %v", tok > 0, tok > last))
		last = max(last, tok)
		return tok
	}
	call := func(s backend.Script, keys []string, args ...string) {
		v, err := b.EvalScript(ctx, s, keys, args...)
		if arr, aerr := v.Array(); aerr == nil && len(arr) == 2 { // {token, value}: render the value only
			out = append(out, Outcome(arr[1], err))
			return
		}
		out = append(out, Outcome(v, err))
	}
	lk := []string{k.Leader}
	call(electscript.Leader, lk)
	t1 := campaign("a:1", "va")
	campaign("b:1", "vb")
	out = append(out, fmt.Sprint("retry finds its term: ", campaign("a:1", "other") == t1))
	call(electscript.Leader, lk)
	call(electscript.Renew, lk, "b:1", "1000")
	call(electscript.Renew, lk, "a:1", "1000")
	call(electscript.Proclaim, lk, "b:1", "x", k.Channel)
	call(electscript.Proclaim, lk, "a:1", "", k.Channel)
	call(electscript.Leader, lk)
	call(electscript.Resign, lk, "b:1", k.Channel)
	call(electscript.Resign, lk, "a:1", k.Channel)
	call(electscript.Resign, lk, "a:1", k.Channel)
	call(electscript.Leader, lk)
	campaign("b:1", "vb")
	call(electscript.Leader, lk)

	e, err := election.New(b, "api", election.Options{Prefix: p})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	_, err = e.Leader(ctx)
	out = append(out, Outcome(nil, err))
	l, err := e.Campaign(ctx, "v")
	out = append(out, Outcome(l.Value(), err))
	out = append(out, Outcome(nil, l.Proclaim(ctx, "w")))
	term, err := e.Leader(ctx)
	out = append(out, Outcome(term.Value, err))
	out = append(out, Outcome(nil, l.Resign(ctx)))
	return out
}}
