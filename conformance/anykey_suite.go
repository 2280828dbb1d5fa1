package conformance

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// anyKeys are keys users have: IPv6 client addresses, "user:42", hash-tag
// characters, and strings a lossy encoding would merge.
var anyKeys = []string{
	"2001:db8:0:1::", "2001:db80:1::", "::1", "::", "user:42", "user%3A42", "a{b}c", "{a}", "}{",
	"https://example.com/a?b=c", "50%", "\x00", "\xff", "tab\there", strings.Repeat(":", distkit.MaxKeyLen),
}

// noCrossSlot fails on an error that says a script's keys were in
// different Cluster slots; any other error fails too.
func noCrossSlot(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		if strings.Contains(err.Error(), "CROSSSLOT") {
			t.Fatalf("%s: keys in different Cluster slots: %v", what, err)
		}
		t.Fatalf("%s: %v", what, err)
	}
}

// testAnyKey: every key, prefix, lock name, owner and instance id may be
// any byte string; distinct strings never share state and every script
// still touches a single Cluster slot.
func testAnyKey(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	for _, pre := range []string{prefix(t) + ":{x}", prefix(t) + "}%\xff"} {
		s, err := counter.NewStrict(b, counter.Options{Prefix: pre})
		noCrossSlot(t, "NewStrict", err)
		l := newLaxOpts(t, b, counter.Options{Prefix: pre, AllowedLag: time.Hour})
		for i, k := range anyKeys {
			_, err := s.Inc(ctx, k, int64(i+1))
			noCrossSlot(t, "Strict.Inc "+k, err)
			_, err = l.Inc(ctx, k, 1000)
			noCrossSlot(t, "Lax.Inc "+k, err)
		}
		noCrossSlot(t, "Lax.Flush", l.Flush(ctx))
		vals, err := s.GetAll(ctx, anyKeys...)
		noCrossSlot(t, "GetAll", err)
		for i, v := range vals {
			if v != int64(1000+i+1) {
				t.Fatalf("prefix %q key %q = %d, want %d: keys share state", pre, anyKeys[i], v, 1000+i+1)
			}
		}

		ids := []string{"10.0.0.1:8080", "[2001:db8::1]:8080", "node{1}"}
		var ics []*instancecounter.Strict
		for _, id := range ids {
			ics = append(ics, newIC(t, b, instancecounter.Options{Prefix: pre, InstanceID: id}))
		}
		for i, c := range ics {
			for j, k := range anyKeys[:6] {
				_, _, err := c.Inc(ctx, k, int64(10*(i+1)+j))
				noCrossSlot(t, "instance Inc", err)
			}
		}
		noCrossSlot(t, "instance Close", ics[0].Close(ctx))
		for j, k := range anyKeys[:6] {
			cum, mine, err := ics[1].Get(ctx, k)
			noCrossSlot(t, "instance Get", err)
			if want := int64(20 + j + 30 + j); cum != want || mine != int64(20+j) {
				t.Fatalf("instance counter %q after %q left: (%d, %d), want (%d, %d)", k, ids[0], cum, mine, want, 20+j)
			}
		}

		var guards []*lock.Guard
		for i, name := range anyKeys[:7] {
			m, err := lock.NewMutex(b, name, lock.Options{Prefix: pre, Owner: anyKeys[len(anyKeys)-1-i]})
			noCrossSlot(t, "NewMutex", err)
			g, err := m.TryLock(ctx)
			noCrossSlot(t, "TryLock "+name, err) // distinct names are distinct locks
			guards = append(guards, g)
			if _, err := m.TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
				t.Fatalf("second TryLock of %q: %v, want ErrNotAcquired", name, err)
			}
		}
		for _, g := range guards {
			release(t, g)
		}

		r := newRedisRL(t, b, ratelimit.Options{Prefix: pre})
		hy := newHybridRL(t, b, ratelimit.Options{Prefix: pre + "h", SyncInterval: time.Hour})
		for _, k := range anyKeys[:4] {
			for _, p := range []interface {
				Allow(context.Context, string, ratelimit.Limit) (bool, error)
			}{r.Absolute(), hy.Absolute()} {
				ok, err := p.Allow(ctx, k, ratelimit.PerSecond(1))
				noCrossSlot(t, "Allow "+k, err)
				if !ok {
					t.Fatalf("first request of %q rejected: another key's traffic counted", k)
				}
				if ok, _ := p.Allow(ctx, k, ratelimit.PerSecond(1)); ok {
					t.Fatalf("second request of %q admitted at capacity 1", k)
				}
			}
		}
		noCrossSlot(t, "Hybrid.Sync", hy.Sync(ctx))
	}
}
