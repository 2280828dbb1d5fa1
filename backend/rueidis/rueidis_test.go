package rueidis_test

import (
	"context"
	"os"
	"testing"

	rd "github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/backend/rueidis"
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
		// rueidis's Cluster client closes connections replaced by a topology
		// refresh from a goroutine that sleeps 5 s first; it belongs to the
		// client, is not started by distkit, and ends on its own.
		if err := goleak.Find(
			goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func connect(t *testing.T, target redistest.Target) backend.Backend {
	// rueidis detects Cluster by itself. DisableCache: miniredis has no
	// CLIENT TRACKING and distkit never reads through the client cache.
	// AlwaysRESP2 on miniredis: it cannot mix pub/sub and commands on one
	// RESP3 connection, so rueidis must use a dedicated pub/sub connection.
	c, err := rd.NewClient(rd.ClientOption{InitAddress: target.Addrs, DisableCache: true, AlwaysRESP2: target.Emulated})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return rueidis.New(c)
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
	}{{"rueidis+miniredis", mini}, {"rueidis+redis", real}, {"rueidis+cluster", cluster}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("Backend", func(t *testing.T) { conformance.RunBackend(t, tc.h) })
			t.Run("Primitives", func(t *testing.T) { conformance.RunPrimitives(t, tc.h) })
			t.Run("Parity", func(t *testing.T) { conformance.RunParity(t, mem, tc.h) })
		})
	}
}

func TestFromURL(t *testing.T) {
	s := env.Server(t)
	b, err := rueidis.FromURL("redis://" + s.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AcquireLease(context.Background(), "{fromurl}:l", "o", 1e9); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rueidis.FromURL("http://nope"); err == nil {
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

func dial(addrs []string, _ bool) (backend.Backend, func(), error) {
	c, err := rd.NewClient(rd.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		return nil, nil, err
	}
	return rueidis.New(c), c.Close, nil
}

func TestProcesses(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(t *testing.T) conformance.ProcessHarness
	}{
		{"rueidis+redis", func(t *testing.T) conformance.ProcessHarness { return env.NewServerHarness(t, connect) }},
		{"rueidis+cluster", func(t *testing.T) conformance.ProcessHarness { return env.NewClusterHarness(t, connect) }},
	} {
		t.Run(tc.name, func(t *testing.T) { conformance.RunProcesses(t, tc.h) })
	}
}
