package parity

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
)

// instanceRejoinRefusalScenario drives instancecounter's Rejoin and Flush
// scripts directly: a Rejoin settling a Lax batch in flight whose deltas
// cannot all be added (an overflow, a value that is not an integer)
// refuses those keys on their own and says so; a resent Flush of that
// batch reports them again; a second Rejoin with the same batch (the
// instance died again) applies what was refused once its cause went away,
// even after a Set of the key (the refused delta was never applied, so no
// Set wiped it); a later batch forgets the refusals.
var instanceRejoinRefusalScenario = Scenario{Name: "InstanceCounterRejoinRefusal", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	ks := keyspace.InstanceCounter(p)
	keys := ks.List()
	withMarker := append(append([]string{}, keys...), keyspace.InstanceCounterMarker(p, "a"))
	var out []string
	// render keeps what does not depend on the clock: the status, the
	// applied flag (Flush), each key's cumulative and slice, the refusals.
	render := func(v backend.Value, err error, skip, n int) {
		if err != nil {
			out = append(out, Outcome(nil, err))
			return
		}
		arr, err := v.Array()
		if err != nil {
			out = append(out, Outcome(nil, err))
			return
		}
		var s []string
		for i, e := range arr {
			t, _ := e.Text()
			switch {
			case i == 0 || i == 1 && skip == 5:
				s = append(s, t)
			case i < skip:
			case i < skip+4*n:
				if (i-skip)%4 < 2 {
					s = append(s, t)
				}
			case (i-skip-4*n)%2 == 1: // a refusal's reason: its code (servers word messages differently)
				code, _, _ := strings.Cut(t, " ")
				s = append(s, "!"+code)
			default:
				s = append(s, t)
			}
		}
		out = append(out, strings.Join(s, ","))
	}
	common := func(nonce, me string) []string { return []string{nonce, me, "60000"} }
	rejoin := func(nonce, me, seq string, tuples ...string) {
		args := append(common(nonce, me), "0", "0", seq, "60000")
		args = append(args, tuples...)
		v, err := b.EvalScript(ctx, icscript.Rejoin, withMarker, args...)
		render(v, err, 4, len(tuples)/6)
	}
	flush := func(seq string, pairs ...string) {
		args := append(common("na", "a"), seq, "60000")
		args = append(args, pairs...)
		v, err := b.EvalScript(ctx, icscript.Flush, withMarker, args...)
		render(v, err, 5, len(pairs)/2)
	}
	op := func(mode, key string, n int64) {
		args := append(common("nb", "b"), mode, key, "always", "0", strconv.FormatInt(n, 10))
		v, err := b.EvalScript(ctx, icscript.Op, keys, args...)
		render(v, err, 4, 1)
	}
	hset := func(f, v string) {
		_, err := b.EvalScript(ctx, testkit.HSetScript, []string{ks.Total}, f, v)
		out = append(out, Outcome(nil, err))
	}
	remove := func() { // a dies: its slices go, its batch marker stays
		v, err := b.EvalScript(ctx, icscript.Remove, keys, common("na", "a")...)
		out = append(out, Outcome(v, err))
	}
	tuple := func(key, d string) []string { return []string{key, "0", "0", "0", "0", d} }
	batch := append(append(tuple("big", "10"), tuple("ok", "1")...), tuple("bad", "1")...)

	rejoin("nb", "b", "0")
	op("set", "big", math.MaxInt64-5)
	hset("bad", "x")
	rejoin("na", "a", "1", batch...)               // big and bad refused, ok applied
	flush("1", "big", "10", "ok", "1", "bad", "1") // resend: applied before, big and bad refused
	flush("1", "ok", "1")                          // resend of a part: nothing refused in it
	remove()
	op("set", "big", 100)
	hset("bad", "7")
	rejoin("na", "a", "1", batch...) // dead again: every delta now, once
	flush("1", "big", "10", "ok", "1", "bad", "1")
	flush("2", "big", "1")
	flush("1", "big", "10") // an older batch: applied before, the refusals forgotten
	op("get", "big", 0)
	op("get", "ok", 0)
	op("get", "bad", 0)
	return out
}}
