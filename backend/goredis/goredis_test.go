package goredis_test

import (
	"context"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/redistest"
)

var env redistest.Env

func TestMain(m *testing.M) {
	if conformance.WorkerMain(dial) {
		return
	}
	code := m.Run()
	env.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func connect(t *testing.T, target redistest.Target) backend.Backend {
	var c redis.UniversalClient
	if target.Cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: target.Addrs, MaxRetries: -1})
	} else {
		c = redis.NewClient(&redis.Options{Addr: target.Addrs[0], MaxRetries: -1})
	}
	t.Cleanup(func() { c.Close() })
	return goredis.New(c)
}

func mini(t *testing.T) conformance.Harness { return redistest.NewMiniHarness(t, connect) }
func real(t *testing.T) conformance.Harness { return env.NewServerHarness(t, connect) }
func cluster(t *testing.T) conformance.Harness {
	return env.NewClusterHarness(t, connect)
}
func mem(*testing.T) conformance.Harness {
	return conformance.NewMemoryHarness(memory.New(memory.Options{}))
}

func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    conformance.NewHarness
	}{{"goredis+miniredis", mini}, {"goredis+redis", real}, {"goredis+cluster", cluster}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("Backend", func(t *testing.T) { conformance.RunBackend(t, tc.h) })
			t.Run("Primitives", func(t *testing.T) { conformance.RunPrimitives(t, tc.h) })
			t.Run("Parity", func(t *testing.T) { conformance.RunParity(t, mem, tc.h) })
		})
	}
}

func TestFromURL(t *testing.T) {
	s := env.Server(t)
	b, err := goredis.FromURL("redis://" + s.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLease(context.Background(), "{fromurl}:l", "o", 1e9); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := goredis.FromURL("http://nope"); err == nil {
		t.Fatal("bad URL accepted")
	}
}

func TestParityCatchesDisagreement(t *testing.T) {
	conformance.CheckParityCatchesDisagreement(t, mem, mini)
}

func TestCrash(t *testing.T) {
	conformance.RunCrash(t, func(t *testing.T) conformance.CrashHarness {
		return redistest.NewCrashHarness(t, connect)
	})
}

func dial(addrs []string, cluster bool) (backend.Backend, func(), error) {
	var c redis.UniversalClient
	if cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, MaxRetries: -1})
	} else {
		c = redis.NewClient(&redis.Options{Addr: addrs[0], MaxRetries: -1})
	}
	return goredis.New(c), func() { c.Close() }, nil
}

func TestProcesses(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(t *testing.T) conformance.ProcessHarness
	}{
		{"goredis+redis", func(t *testing.T) conformance.ProcessHarness { return env.NewServerHarness(t, connect) }},
		{"goredis+cluster", func(t *testing.T) conformance.ProcessHarness { return env.NewClusterHarness(t, connect) }},
	} {
		t.Run(tc.name, func(t *testing.T) { conformance.RunProcesses(t, tc.h) })
	}
}
