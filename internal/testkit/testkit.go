// Package testkit is what distkit's own test suites share: the harness
// shape (the same as conformance.Harness), unique prefixes, polling, test
// scripts with their Go twins and constructors that fail the test on error.
// It is test machinery, compiled only into tests and never into the
// library.
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Harness gives a suite backends and control over time; see
// conformance.Harness, which has the same methods.
type Harness interface {
	NewBackend(t *testing.T) backend.Backend
	Wait(t *testing.T, d time.Duration)
}

// NewHarness makes a fresh Harness for one test.
type NewHarness func(t *testing.T) Harness

// FakeTime is a Harness whose server time only moves with Wait (memory,
// miniredis).
type FakeTime interface {
	FakeTime() bool
}

// IsFakeTime reports whether h's server time only moves with Wait.
func IsFakeTime(h Harness) bool {
	f, ok := h.(FakeTime)
	return ok && f.FakeTime()
}

// Prefix returns a key prefix unique to this test run.
func Prefix(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	return "t-" + name + "-" + hex.EncodeToString(b[:])
}

// Tagged returns a raw Redis key in the hash slot of the plain prefix.
func Tagged(prefix, name string) string { return "{" + prefix + "}:" + name }

// Open returns a backend from h that is closed when t ends.
func Open(t *testing.T, h Harness) backend.Backend {
	t.Helper()
	b := h.NewBackend(t)
	t.Cleanup(func() { b.Close() })
	return b
}

// Eventually polls cond every 5 ms until it holds or d has passed.
func Eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Pass lets d of both real and server time go by: on a fake-time harness
// in small steps, so that renewals keep up.
func Pass(t *testing.T, h Harness, d time.Duration) {
	if IsFakeTime(h) {
		const step = 20 * time.Millisecond
		for el := time.Duration(0); el < d; el += step {
			time.Sleep(step)
			h.Wait(t, step)
		}
		return
	}
	time.Sleep(d)
}

// MaxInWindow is the most timestamps inside any half-open interval
// (t-d, t]: the worst sliding window of admissions, for rate-limit bound
// checks.
func MaxInWindow(ts []time.Time, d time.Duration) int {
	s := append([]time.Time(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	best, lo := 0, 0
	for hi := range s {
		for !s[lo].After(s[hi].Add(-d)) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// closeWithin closes something at the end of a test, bounded.
func closeWithin(f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	f(ctx)
}

// NewStrict returns a Strict counter closed when t ends.
func NewStrict(t *testing.T, b backend.Backend, prefix string) *counter.Strict {
	t.Helper()
	c, err := counter.NewStrict(b, counter.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// NewLax returns a Lax counter closed (within a second) when t ends.
func NewLax(t *testing.T, b backend.Backend, opts counter.Options) *counter.Lax {
	t.Helper()
	c, err := counter.NewLax(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(c.Close) })
	return c
}

// NewInstanceCounter returns an instance counter closed (within a second)
// when t ends.
func NewInstanceCounter(t *testing.T, b backend.Backend, opts instancecounter.Options) *instancecounter.Strict {
	t.Helper()
	c, err := instancecounter.NewStrict(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(c.Close) })
	return c
}

// NewMutex returns a Mutex.
func NewMutex(t *testing.T, b backend.Backend, name string, opts lock.Options) *lock.Mutex {
	t.Helper()
	m, err := lock.NewMutex(b, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// NewRWMutex returns an RWMutex.
func NewRWMutex(t *testing.T, b backend.Backend, name string, opts lock.Options) *lock.RWMutex {
	t.Helper()
	m, err := lock.NewRWMutex(b, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Release releases g and fails unless it was still held.
func Release(t *testing.T, g *lock.Guard) {
	t.Helper()
	if st, err := g.Release(context.Background()); err != nil || st != lock.Released {
		t.Fatalf("Release: %v, %v", st, err)
	}
}

// NewRedisLimiter returns a Redis rate-limit provider closed when t ends.
func NewRedisLimiter(t *testing.T, b backend.Backend, opts ratelimit.Options) *ratelimit.Redis {
	t.Helper()
	r, err := ratelimit.NewRedis(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(r.Close) })
	return r
}

// NewHybridLimiter returns a Hybrid rate-limit provider closed when t ends.
func NewHybridLimiter(t *testing.T, b backend.Backend, opts ratelimit.Options) *ratelimit.Hybrid {
	t.Helper()
	r, err := ratelimit.NewHybrid(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(r.Close) })
	return r
}
