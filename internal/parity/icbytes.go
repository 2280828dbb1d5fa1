package parity

import (
	"context"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// instanceHighBytesScenario: instance ids and keys holding bytes 0x80–0xFF
// right after the separator of a composed member ("<id>:<key>",
// "<key>:<id>"), where a lexical range with a wrong upper bound (e.g.
// '[x:' … '[x:\255') misses members: an instance leaving must take every
// slice with it, a Set or Del must wipe every instance's slice, and the
// Lua scripts must agree with their Go twins.
var instanceHighBytesScenario = Scenario{Name: "InstanceCounterHighBytes", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	rec := func(c, m int64, err error) { out = append(out, Outcome([2]int64{c, m}, err)) }
	ids := []string{"a", "a\x80", "\xff", "\xff\x01", "\xff\xff", "\xfe\xff", "\x80"}
	keys := []string{"k", "\x80", "\xff", "\xff\x01", "\xff\xff", "k\xff", "\xc3\xa9"}
	var ics []*instancecounter.Strict
	for _, id := range ids {
		c, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: p + "\xff", InstanceID: id})
		if err != nil {
			return append(out, Outcome(nil, err))
		}
		defer c.Close(ctx)
		ics = append(ics, c)
	}
	for i, c := range ics {
		for j, k := range keys {
			rec(c.Inc(ctx, k, int64(100*i+j+1)))
		}
	}
	reader := ics[0]
	for _, leaving := range []int{2, 3} { // "\xff" and "\xff\x01" leave: every slice of theirs goes
		out = append(out, Outcome(nil, ics[leaving].Close(ctx)))
		for _, k := range keys {
			rec(reader.Get(ctx, k))
		}
	}
	rec(ics[1].Set(ctx, "\xff", 5)) // every other slice of "\xff" goes
	rec(ics[4].Del(ctx, "\xff\x01"))
	for _, c := range []*instancecounter.Strict{ics[0], ics[4], ics[5], ics[6]} {
		for _, k := range keys {
			rec(c.Get(ctx, k))
		}
	}
	out = append(out, Outcome(nil, ics[4].Close(ctx)))
	for _, k := range keys {
		rec(reader.Get(ctx, k))
	}
	return out
}}
