package goredis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/primitives/counter"
)

// New refuses nil clients (also typed nil pointers) and client kinds whose
// retries it cannot control, with ErrInvalidOption.
func TestNewRefuses(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	for name, c := range map[string]redis.UniversalClient{
		"nil":                nil,
		"nil *Client":        (*redis.Client)(nil),
		"nil *ClusterClient": (*redis.ClusterClient)(nil),
		"*Ring":              ring,
	} {
		if b, err := goredis.New(c); !errors.Is(err, backend.ErrInvalidOption) || b != nil {
			t.Errorf("New(%s): %v, %v; want ErrInvalidOption", name, b, err)
		}
	}
}

// New leaves the user's client as it was (its options, its retries for its
// own commands) and Close does not close it.
func TestNewLeavesClientAlone(t *testing.T) {
	s := env.Server(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: 3})
	defer c.Close()
	b, err := goredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLease(context.Background(), "{new}:l", "o", time.Second); err != nil {
		t.Fatal(err)
	}
	if b.Client() == redis.UniversalClient(c) {
		t.Fatal("distkit's commands go through the user's client as it is")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if c.Options().MaxRetries != 3 || c.Options().DialerRetries != 5 || c.Options().ContextTimeoutEnabled {
		t.Fatalf("the user's options changed: %+v", c.Options())
	}
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the user's client after Backend.Close: %v", err)
	}
}

type countingLogger struct{ dial atomic.Int64 }

func (l *countingLogger) Printf(_ context.Context, format string, v ...any) {
	if strings.Contains(fmt.Sprintf(format, v...), "failed to dial") {
		l.dial.Add(1)
	}
}

// During an outage a call through a client built with go-redis's defaults
// is reported ErrNotApplied at once (one dial attempt, not the caller's
// deadline), and go-redis logs at most one line per call (no retries).
func TestOutageFast(t *testing.T) {
	s := env.Server(t)
	p, err := faultproxy.Start(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := redis.NewClient(&redis.Options{Addr: p.Addr})
	defer c.Close()
	b, err := goredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctr, _ := counter.NewStrict(b, counter.Options{Prefix: "outage"})
	if _, err := ctr.Inc(context.Background(), "k", 1); err != nil {
		t.Fatal(err)
	}
	logs := &countingLogger{}
	redis.SetLogger(logs)
	p.Cut()
	const calls = 10
	var slowest time.Duration
	for i := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := ctr.Inc(ctx, "k", 1)
		el := time.Since(start)
		cancel()
		slowest = max(slowest, el)
		if i > 0 && !errors.Is(err, backend.ErrNotApplied) {
			t.Errorf("call %d during the outage: %v, want ErrNotApplied", i, err)
		}
	}
	t.Logf("outage: %d calls, slowest %v, %d go-redis dial log lines", calls, slowest, logs.dial.Load())
	if slowest > time.Second {
		t.Errorf("a call during the outage took %v", slowest)
	}
	if n := logs.dial.Load(); n > calls {
		t.Errorf("%d dial log lines for %d calls: go-redis retried", n, calls)
	}
	p.Restore()
}
