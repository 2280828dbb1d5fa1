package goredis_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	dkdriver "github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/internal/faultproxy"
)

// review11Witness counts its executions in KEYS[1].
var review11Witness = dkdriver.NewScript("review11-witness", `return redis.call('INCR', KEYS[1])`,
	func(st dkdriver.Store, keys, _ []string) (backend.Value, error) {
		cur, _, err := st.Get(keys[0])
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(cur, 10, 64)
		n++
		return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), 0)
	})

type dialFn = func(ctx context.Context, network, addr string) (net.Conn, error)

// r11Kinds are the three go-redis client kinds over the shared servers,
// every data server behind a proxy of set; opts adjusts the options.
func r11Kinds(t *testing.T) map[string]func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
	return map[string]func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient){
		"Client": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			set, err := faultproxy.NewSet(env.Server(t).Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.Dialer = []string{env.Server(t).Addr}, set.Dial
				return redis.NewClient(o.Simple())
			}
		},
		"ClusterClient": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			set, err := faultproxy.NewSet(env.Cluster(t).Addrs()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.Dialer = env.Cluster(t).Addrs(), set.Dial
				return redis.NewClusterClient(o.Cluster())
			}
		},
		"FailoverClient": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			g := env.Sentinel(t)
			set, err := faultproxy.NewSet(g.DataAddrs()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.MasterName, o.Dialer = g.SentinelAddrs(), g.Name, set.Dial
				return redis.NewFailoverClient(o.Failover())
			}
		},
	}
}

func r11Backend(t *testing.T, c redis.UniversalClient) backend.Backend {
	t.Cleanup(func() { c.Close() })
	b, err := goredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A user's client with ReadTimeout/WriteTimeout -2 ("no deadline calls"):
// the package doc promises that distkit's commands are bounded by the
// call's context (ContextTimeoutEnabled). In a blackhole a call with a
// 300 ms deadline must end long before the blackhole does.
func TestReview11_NoDeadlineCallsOptionIgnoresContext(t *testing.T) {
	for name, kind := range r11Kinds(t) {
		t.Run(name, func(t *testing.T) {
			set, mk := kind(t)
			b := r11Backend(t, mk(&redis.UniversalOptions{ReadTimeout: -2, WriteTimeout: -2}))
			key := "{r11}:nodeadline:" + name
			if _, err := b.EvalScript(context.Background(), review11Witness, []string{key}); err != nil {
				t.Fatal(err)
			}
			set.Blackhole(true)
			unblock := time.AfterFunc(5*time.Second, func() { set.Blackhole(false) })
			defer unblock.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			_, err := b.EvalScript(ctx, review11Witness, []string{key})
			el := time.Since(start)
			cancel()
			set.Restore()
			if el > 2*time.Second {
				t.Errorf("a call with a 300 ms deadline took %v in a blackhole (%v)", el, err)
			}
			if !errors.Is(err, backend.ErrIndeterminate) && !errors.Is(err, backend.ErrNotApplied) {
				t.Errorf("outcome %v", err)
			}
		})
	}
}
