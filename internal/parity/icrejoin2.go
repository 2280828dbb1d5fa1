package parity

import (
	"context"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// expireInstanceScript declares an instance dead behind its back (its
// heartbeat expiry 0), as a long pause would.
var expireInstanceScript = driver.NewScript("parity-ic-expire", `return redis.call('ZADD', KEYS[1], 0, ARGV[1])`,
	func(st driver.Store, keys, args []string) (backend.Value, error) {
		return backend.Int(0), st.ZAdd(keys[0], 0, args[0])
	})

// instanceSecondRejoinScenario drives instancecounter's Rejoin directly:
// a first rejoin whose last recorded reply is older than the data set (all
// it contributes is rejoined), an increment, a second rejoin after a death
// whose last reply came from this data set (only the part the first one
// contributed stays rejoined), then another object's rejoin reporting a
// Clear the server forgot: it withdraws only that part, the increment
// stays.
var instanceSecondRejoinScenario = Scenario{Name: "InstanceCounterSecondRejoin", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	keys := keyspace.InstanceCounter(p).List()
	var out []string
	// render keeps what does not depend on the clock: the status and per
	// key the cumulative, the slice and the rejoined part (skipping the
	// epoch); it returns the reply's stamp (its third element).
	render := func(v backend.Value, err error, n int) string {
		if err != nil {
			out = append(out, Outcome(nil, err))
			return "0"
		}
		if arr, err := v.Array(); err == nil && len(arr) == 2 { // OpBatch: {"ok", the op's reply}
			v = arr[1]
		}
		arr, err := v.Array()
		if err != nil || len(arr) < 4+4*n {
			out = append(out, Outcome(v, err))
			return "0"
		}
		st, _ := arr[0].Text()
		at, _ := arr[2].Text()
		s := []string{st}
		for i := 4; i < 4+4*n; i++ {
			if (i-4)%4 != 2 {
				t, _ := arr[i].Text()
				s = append(s, t)
			}
		}
		out = append(out, strings.Join(s, ","))
		return at
	}
	common := func(nonce, me string) []string { return []string{nonce, me, "60000"} }
	rejoin := func(nonce, me, known string, tuples ...string) {
		args := append(common(nonce, me), known, "0", "0", "60000")
		v, err := b.EvalScript(ctx, icscript.Rejoin, keys, append(args, tuples...)...)
		render(v, err, len(tuples)/6)
	}
	// op runs one operation of a: on key k through Op, on key j through
	// OpBatch (whose Lua keeps the clock in variables: it must write back
	// the first stamp of the data set too).
	op := func(key, mode string, n int64) string {
		args := append(common("na", "a"), mode, key, "always", "0", strconv.FormatInt(n, 10))
		s := icscript.Op
		if key == "j" {
			s = icscript.OpBatch
		}
		v, err := b.EvalScript(ctx, s, keys, args...)
		return render(v, err, 1)
	}

	// After a loss: 4 and 3 back, rejoined.
	rejoin("na", "a", "0", "k", "0", "4", "0", "0", "0", "j", "0", "3", "0", "0", "0")
	at := op("k", "inc", 6)  // 10, of which 4 rejoined
	atj := op("j", "inc", 5) // 8, of which 3 rejoined
	_, err := b.EvalScript(ctx, expireInstanceScript, keys[:1], "a")
	out = append(out, Outcome(nil, err))
	// Dead, back: still only 4 and 3 rejoined.
	rejoin("na", "a", "0", "k", "0", "10", "4", at, "0", "j", "0", "8", "3", atj, "0")
	n, _ := strconv.ParseInt(atj, 10, 64)
	rejoin("nb", "b", strconv.FormatInt(n+1, 10)) // knows of a Clear after the 4 and the 3
	op("k", "get", 0)                             // a keeps the 6 it added
	op("j", "get", 0)                             // and the 5
	return out
}}
