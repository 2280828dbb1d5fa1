package parity

import (
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
)

// laxFlushScenario drives counter.Lax's flush script directly: batches
// with refused pairs (overflow, a stored value that is not an integer),
// resends of an applied batch (the refused pairs must come back as
// refused), stale numbers, a hash or marker of the wrong type.
var laxFlushScenario = Scenario{Name: "LaxFlushScript", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	h := keyspace.CounterHash(p)
	mk := keyspace.CounterLaxMarker(p, "parity")
	var out []string
	flush := func(keys []string, seq int64, pairs ...string) {
		args := append([]string{strconv.FormatInt(seq, 10), "60000"}, pairs...)
		v, err := b.EvalScript(ctx, counterscript.Flush, keys, args...)
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
		for _, e := range arr {
			t, _ := e.Text()
			if strings.HasPrefix(t, "!") { // servers word the same error differently
				t, _, _ = strings.Cut(t, " ")
			}
			s = append(s, t)
		}
		out = append(out, strings.Join(s, ","))
	}
	set := func(key, f, v string) {
		_, err := b.EvalScript(ctx, testkit.HSetScript, []string{key}, f, v)
		out = append(out, Outcome(nil, err))
	}
	keys := []string{h, mk}
	max := strconv.FormatInt(math.MaxInt64, 10)
	min := strconv.FormatInt(math.MinInt64, 10)
	flush(keys, 1, "a", "5", "b", "-7", "a", "1")
	set(h, "big", strconv.FormatInt(math.MaxInt64-1, 10))
	set(h, "bad", "x")
	flush(keys, 2, "big", "1", "big", "1", "bad", "1", "c", max, "c", "1", "d", min)
	flush(keys, 2, "big", "1", "big", "1", "bad", "1", "c", max, "c", "1", "d", min) // resend: nothing applied again
	flush(keys, 1, "a", "100")                                                       // older: nothing applied
	flush(keys, 3)                                                                   // empty batch
	flush(keys, 4, "big", "-5", "bad", "0", "d", "-1")
	set(h, "bad", "7")
	flush(keys, 5, "bad", "1", "a", "0")
	_, err := b.EvalScript(ctx, testkit.WrongTypeScript, []string{h + "-other"}) // leaves a string
	out = append(out, Outcome(nil, err))
	flush([]string{h + "-other", mk}, 6, "a", "1") // not a hash: nothing applied, marker untouched
	set(h+"-marker", "f", "v")
	flush([]string{h, h + "-marker"}, 7, "a", "1") // the marker is a hash
	flush(keys, 8, "a", "1")
	return out
}}
