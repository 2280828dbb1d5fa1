package parity_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/parity"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// fuzzRun exercises every primitive with two keys and two instance ids
// taken from the fuzzer, and returns the outcomes step by step.
func fuzzRun(ctx context.Context, b backend.Backend, p, k1, k2, id1, id2 string) []string {
	var out []string
	rec := func(v any, err error) { out = append(out, parity.Outcome(v, err)) }
	s, err := counter.NewStrict(b, counter.Options{Prefix: p})
	if err != nil {
		return []string{parity.Outcome(nil, err)}
	}
	rec(s.Inc(ctx, k1, 1))
	rec(s.Inc(ctx, k2, 2))
	rec(s.GetAll(ctx, k1, k2))
	rec(s.IncAllIf(ctx, []counter.Update{{Key: k2, Cmp: distkit.Ge(2), Delta: 10}, {Key: k1, Delta: -1}}))
	rec(s.Del(ctx, k1))
	rec(s.GetAll(ctx, k1, k2))

	a, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: p, InstanceID: id1})
	if err != nil {
		return append(out, parity.Outcome(nil, err))
	}
	defer a.Close(ctx)
	o, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: p, InstanceID: id2})
	if err != nil {
		return append(out, parity.Outcome(nil, err))
	}
	defer o.Close(ctx)
	pair := func(c, m int64, err error) { rec([2]int64{c, m}, err) }
	pair(a.Inc(ctx, k1, 5))
	pair(o.Inc(ctx, k2, 7))
	pair(a.Inc(ctx, k2, 3))
	pair(o.Inc(ctx, k1, 11))
	out = append(out, parity.Outcome(nil, a.Close(ctx))) // a's slices leave, o's stay
	pair(o.Get(ctx, k1))
	pair(o.Get(ctx, k2))
	pair(o.Del(ctx, k1)) // every slice of k1 goes
	pair(o.Get(ctx, k2))

	m, err := lock.NewMutex(b, k1, lock.Options{Prefix: p, Owner: id1})
	if err != nil {
		return append(out, parity.Outcome(nil, err))
	}
	g, err := m.TryLock(ctx)
	if err == nil {
		_, err2 := m.TryLock(ctx)
		rec("held", err2)
		rec(g.Release(ctx))
	} else {
		rec(nil, err)
	}

	r, err := ratelimit.NewRedis(b, ratelimit.Options{Prefix: p})
	if err != nil {
		return append(out, parity.Outcome(nil, err))
	}
	defer r.Close(ctx)
	for _, k := range []string{k1, k2, k1} {
		d, err := r.Absolute().Inc(ctx, k, ratelimit.PerMinute(1), 1)
		rec(d.Allowed, err)
	}
	return out
}

var fuzzSeq atomic.Int64

// FuzzAnyKeyParity: for any keys and instance ids, the Lua scripts (run by
// miniredis) and their Go twins (run by the memory backend) agree on every
// step, and distinct keys never share state.
func FuzzAnyKeyParity(f *testing.F) {
	for i := 0; i+3 < len(parity.AnyKeys); i += 2 {
		f.Add(parity.AnyKeys[i], parity.AnyKeys[i+1], parity.AnyKeys[i+2], parity.AnyKeys[i+3])
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(mr.Close)
	lua, err := goredisbackend.FromURL("redis://" + mr.Addr())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { lua.Close() })
	goTwin := memory.New(memory.Options{})
	f.Fuzz(func(t *testing.T, k1, k2, id1, id2 string) {
		if len(k1)+len(k2)+len(id1)+len(id2) > 4*64 {
			t.Skip("long inputs only cost time: the length rule is tested elsewhere")
		}
		if id1 == id2 {
			id2 += "'" // two live instances must not share an id
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p := "fz" + strconv.FormatInt(fuzzSeq.Add(1), 10)
		want := fuzzRun(ctx, goTwin, p, k1, k2, id1, id2)
		got := fuzzRun(ctx, lua, p, k1, k2, id1, id2)
		if fmt.Sprint(want) != fmt.Sprint(got) {
			for i := range max(len(want), len(got)) {
				var w, g string
				if i < len(want) {
					w = want[i]
				}
				if i < len(got) {
					g = got[i]
				}
				if w != g {
					t.Errorf("step %d: Go twin %s, Lua %s", i, w, g)
				}
			}
			t.FailNow()
		}
		if k1 != "" && k2 != "" && len(k1) <= distkit.MaxKeyLen && len(k2) <= distkit.MaxKeyLen {
			wantGetAll := "[1 2]"
			if k1 == k2 {
				wantGetAll = "[3 3]"
			}
			if want[2] != wantGetAll {
				t.Fatalf("keys %q and %q: GetAll %s, want %s", k1, k2, want[2], wantGetAll)
			}
		}
	})
}
