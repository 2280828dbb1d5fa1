package parity

import (
	"context"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// instanceLiveScenario drives instancecounter's Heartbeat script with and
// without the live-instances count ("live"): without it the reply is the
// bare status, as before the count existed; with it {status, live}, where
// live counts the registered instances whose heartbeat has not expired
// (one registered with DeadAfter 0 is dead at the next script), not the
// closed ones (Remove, with or without "keep") whose registration lingers,
// nor an absent caller.
var instanceLiveScenario = Scenario{Name: "InstanceCounterLive", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	keys := keyspace.InstanceCounter(p).List()
	var out []string
	// render keeps the status and count; Rejoin's version and stamps
	// depend on the clock.
	render := func(v backend.Value, err error, all bool) {
		if err != nil {
			out = append(out, Outcome(nil, err))
			return
		}
		arr, err := v.Array()
		if err != nil {
			t, _ := v.Text()
			out = append(out, "text:"+t)
			return
		}
		if !all {
			arr = arr[:1]
		}
		var s []string
		for _, e := range arr {
			t, _ := e.Text()
			s = append(s, t)
		}
		out = append(out, "arr:"+strings.Join(s, ","))
	}
	beat := func(nonce, me string, extra ...string) {
		v, err := b.EvalScript(ctx, icscript.Heartbeat, keys, append([]string{nonce, me, "60000"}, extra...)...)
		render(v, err, true)
	}
	join := func(nonce, me, deadAfter string) {
		v, err := b.EvalScript(ctx, icscript.Rejoin, keys, nonce, me, deadAfter, "0", "0", "0", "0")
		render(v, err, false)
	}
	remove := func(nonce, me string, extra ...string) {
		v, err := b.EvalScript(ctx, icscript.Remove, keys, append([]string{nonce, me, "60000"}, extra...)...)
		render(v, err, true)
	}

	beat("na", "a", "live") // never registered: absent, nobody live
	beat("na", "a")         // the bare status
	join("na", "a", "60000")
	beat("na", "a", "live")
	beat("na", "a") // without "live": the bare status, as before
	beat("na", "a", "other")
	join("nb", "b", "60000")
	beat("na", "a", "live")
	beat("nb", "b", "live")
	join("nc", "c", "0") // expires at once: the next script drops it
	beat("na", "a", "live")
	remove("nb", "b") // closed: its registration lingers, not live
	beat("na", "a", "live")
	beat("nb", "b", "live") // a closed object is absent
	join("nd", "d", "60000")
	beat("na", "a", "live")
	remove("nd", "d", "keep") // closed, slices kept: not live either
	beat("na", "a", "live")
	beat("nx", "a", "live")   // another object with a's id: dup
	join("nb2", "b", "60000") // b's id again, a new object
	beat("na", "a", "live")
	remove("na", "a")
	beat("nb2", "b", "live")
	return out
}}
