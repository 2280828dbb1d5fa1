package parity

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// AnyKeys are user strings holding the bytes the key encoding escapes, the
// bytes it keeps at the top of the range, and pairs that a lossy encoding
// would merge.
var AnyKeys = []string{
	"user:42", "a{b}c", "}{", ":", "%", "%3A", "50%", "2001:db8:0:1::", "2001:db80:1::",
	"\x00", "\x00\x00", "\r\n", "\x7f", "\x80", "\xff", "\xff\xff", "\xff:\xff", "a b ", "a", "a:", "a;", "é",
}

// anyKeyScenario runs every primitive with keys, prefixes, lock names,
// owners and instance ids drawn from AnyKeys: results must be the same
// whether the Lua scripts or their Go twins run, and distinct strings must
// never share state.
var anyKeyScenario = Scenario{Name: "AnyKey", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	rec := func(v any, err error) { out = append(out, Outcome(v, err)) }
	pre := p + "{:}%\xff\x00" // a prefix with every kind of escaped byte

	s, err := counter.NewStrict(b, counter.Options{Prefix: pre})
	if err != nil {
		return []string{Outcome(nil, err)}
	}
	for i, k := range AnyKeys {
		rec(s.Inc(ctx, k, int64(i+1)))
	}
	rec(s.GetAll(ctx, AnyKeys...))
	rec(s.Del(ctx, "%3A"))
	rec(s.IncAllIf(ctx, []counter.Update{{Key: ":", Delta: 10}, {Key: "%", Cmp: distkit.Lt(100), Delta: 1}, {Key: "\xff:\xff", Delta: -3}}))
	rec(s.GetAll(ctx, AnyKeys...))

	// Lax: a key that cannot be flushed (overflow) is quarantined alone,
	// whatever bytes it holds.
	l, err := counter.NewLax(b, counter.Options{Prefix: pre + "lax", AllowedLag: time.Hour})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	ls, _ := counter.NewStrict(b, counter.Options{Prefix: pre + "lax"})
	rec(ls.Set(ctx, "big ", math.MaxInt64))
	for _, k := range AnyKeys {
		rec(l.Inc(ctx, k, 2))
	}
	rec(l.Inc(ctx, "big ", 1))
	out = append(out, Outcome(nil, l.Flush(ctx)))
	rec(l.Pending(), nil)
	rec(ls.GetAll(ctx, AnyKeys...))
	rec(l.Set(ctx, "big ", 1))
	out = append(out, Outcome(nil, l.Close(ctx)))

	// Instance counters whose ids are prefixes of each other, before and
	// after escaping.
	ids := []string{"a", "a:", "a;", "a\xff", "\xff\xfe", "{x}", "%"}
	var ics []*instancecounter.Strict
	for _, id := range ids {
		c, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: pre, InstanceID: id, KeepSlicesOnClose: id == "%"})
		if err != nil {
			return append(out, Outcome(nil, err))
		}
		defer c.Close(ctx)
		ics = append(ics, c)
	}
	for i, c := range ics {
		for j, k := range AnyKeys[:8] {
			c1, m1, err := c.Inc(ctx, k, int64(10*i+j+1))
			rec([2]int64{c1, m1}, err)
		}
	}
	out = append(out, Outcome(nil, ics[0].Close(ctx))) // "a" leaves: only its slices go
	for _, k := range AnyKeys[:8] {
		c1, m1, err := ics[1].Get(ctx, k)
		rec([2]int64{c1, m1}, err)
	}
	c1, m1, err := ics[2].Del(ctx, "a{b}c") // every slice of that key goes, no other key's
	rec([2]int64{c1, m1}, err)
	for _, k := range AnyKeys[:8] {
		c1, m1, err := ics[3].Get(ctx, k)
		rec([2]int64{c1, m1}, err)
	}
	il, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: pre, InstanceID: "lax:\xff", FlushInterval: time.Hour})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	for _, k := range AnyKeys[:8] {
		il.Inc(ctx, k, 100)
	}
	out = append(out, Outcome(nil, il.Flush(ctx)))
	for _, k := range AnyKeys[:8] {
		c1, m1, err := ics[4].Get(ctx, k)
		rec([2]int64{c1, m1}, err)
	}
	out = append(out, Outcome(nil, il.Close(ctx)))

	// Locks: names that a lossy encoding would merge are distinct locks;
	// owners with separators still recognise their own lease.
	for i, name := range []string{"user:42", "user%3A42", "a{b}c", "2001:db8:0:1::", "2001:db80:1::"} {
		m, err := lock.NewMutex(b, name, lock.Options{Prefix: pre, Owner: AnyKeys[i]})
		if err != nil {
			return append(out, Outcome(nil, err))
		}
		g, err := m.TryLock(ctx)
		if err != nil {
			out = append(out, Outcome(nil, err))
			continue
		}
		_, err = m.TryLock(ctx)
		out = append(out, Outcome("again", err))
		st, err := g.Release(ctx)
		rec(st, err)
	}

	// Rate limits per IPv6 address: capacity 1 each.
	r, err := ratelimit.NewRedis(b, ratelimit.Options{Prefix: pre, Buckets: 10})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	defer r.Close(ctx)
	for _, k := range []string{"2001:db8:0:1::", "2001:db80:1::", "2001:db8:0:1::", "::1", "::"} {
		d, err := r.Absolute().Inc(ctx, k, ratelimit.PerSecond(1), 1)
		out = append(out, Outcome(fmt.Sprintf("%s allowed=%v", k, d.Allowed), err))
	}
	return out
}}
