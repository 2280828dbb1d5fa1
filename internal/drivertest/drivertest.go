// Package drivertest is the shared test runner of the Redis drivers: each
// driver package's test file is its Dial plus calls to Main and Run.
package drivertest

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/icmodel"
	"github.com/distkit-go/distkit/internal/parity"
	"github.com/distkit-go/distkit/internal/processtest"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
)

// Driver describes a Redis driver to the shared driver tests: each driver
// package's test file is its Dial plus two calls, Main and Run.
type Driver struct {
	Name string // "goredis", "rueidis": prefixes the subtest names
	// Dial builds a client for target; the func closes it.
	Dial func(target redistest.Target) (backend.Backend, func(), error)
	// FromURL is the driver's convenience constructor.
	FromURL func(url string) (backend.Backend, error)
	// IgnoreLeaks names goroutines of the client library itself that may
	// outlive the tests.
	IgnoreLeaks []goleak.Option
	// Kinds are the client kinds the fault matrix runs on.
	Kinds []ClientKind
	// Faults sizes the fault matrix.
	Faults conformance.FaultOptions
}

// connect dials target and closes the client when t ends.
func (d Driver) connect(t *testing.T, target redistest.Target) backend.Backend {
	b, closeFn, err := d.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return b
}

// Main is the driver test binary's TestMain: it runs a worker when the
// binary was re-executed as one, else the tests, then stops the shared
// servers and checks for leaked goroutines.
func Main(m *testing.M, env *redistest.Env, d Driver) {
	if processtest.WorkerMain(func(addrs []string, cluster bool) (backend.Backend, func(), error) {
		return d.Dial(redistest.Target{Addrs: addrs, Cluster: cluster})
	}) {
		return
	}
	code := m.Run()
	env.Stop()
	if code == 0 {
		if err := findLeaks(d.IgnoreLeaks...); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// findLeaks is goleak.Find, given longer to settle: the client libraries'
// own goroutines of a closed client end on their own but may first finish
// a sleep or a dial (go-redis's pool re-dial loop sleeps 1 s between
// attempts and dials with DialTimeout, 5 s by default). A goroutine still
// there after 15 s is reported.
func findLeaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Run runs every suite against the driver: the backend contract, every
// primitive and Lua/Go parity on miniredis, a real redis-server and a real
// 3-master Cluster; FromURL; crash tests on an AOF server; multi-process
// tests on the server and the Cluster.
func Run(t *testing.T, env *redistest.Env, d Driver) {
	mem := conformance.MemoryHarness
	mini := func(t *testing.T) conformance.Harness { return redistest.NewMiniHarness(t, d.connect) }
	harnesses := []struct {
		name string
		h    conformance.NewHarness
	}{
		{d.Name + "+miniredis", mini},
		{d.Name + "+redis", func(t *testing.T) conformance.Harness { return env.NewServerHarness(t, d.connect) }},
		{d.Name + "+cluster", func(t *testing.T) conformance.Harness { return env.NewClusterHarness(t, d.connect) }},
		{d.Name + "+sentinel", func(t *testing.T) conformance.Harness { return env.NewSentinelHarness(t, d.connect) }},
	}
	t.Run("Conformance", func(t *testing.T) {
		for _, tc := range harnesses {
			t.Run(tc.name, func(t *testing.T) {
				t.Run("Backend", func(t *testing.T) { conformance.RunBackend(t, tc.h) })
				t.Run("Primitives", func(t *testing.T) { conformance.RunPrimitives(t, tc.h) })
				t.Run("Parity", func(t *testing.T) { conformance.RunParity(t, mem, tc.h) })
			})
		}
	})
	t.Run("Observed", func(t *testing.T) {
		t.Run(d.Name+"+miniredis", func(t *testing.T) { runObserved(t, mini) })
		t.Run(d.Name+"+redis", func(t *testing.T) { runObserved(t, harnesses[1].h) })
	})
	t.Run("Faults", func(t *testing.T) { RunFaults(t, &env.Faults, d.Name, d.Kinds, d.Faults) })
	t.Run("LockFaults", func(t *testing.T) { RunLockFaults(t, &env.Faults, d.Name, d.Kinds) })
	t.Run("ReleaseWithoutChannelPermission", func(t *testing.T) { releaseWithoutPublish(t, env, d) })
	t.Run("ScriptDeniedAfterWrite", func(t *testing.T) { deniedAfterWrite(t, env, d) })
	t.Run("ParityCatchesDisagreement", func(t *testing.T) {
		parity.CheckParityCatchesDisagreement(t,
			func(t *testing.T) testkit.Harness { return mem(t) }, func(t *testing.T) testkit.Harness { return mini(t) })
	})
	t.Run("FromURL", func(t *testing.T) {
		s := env.Server(t)
		b, err := d.FromURL("redis://" + s.Addr + "/0")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.AcquireLease(context.Background(), "{fromurl}:l", "o", 1e9); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.FromURL("http://nope"); err == nil {
			t.Fatal("bad URL accepted")
		}
	})
	t.Run("Crash", func(t *testing.T) {
		processtest.RunCrash(t, func(t *testing.T) processtest.CrashHarness { return redistest.NewCrashHarness(t, d.connect) })
	})
	t.Run("Processes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			h    func(t *testing.T) processtest.ProcessHarness
		}{
			{d.Name + "+redis", func(t *testing.T) processtest.ProcessHarness { return env.NewServerHarness(t, d.connect) }},
			{d.Name + "+cluster", func(t *testing.T) processtest.ProcessHarness { return env.NewClusterHarness(t, d.connect) }},
		} {
			t.Run(tc.name, func(t *testing.T) { processtest.RunProcesses(t, tc.h) })
		}
	})
	t.Run("InstanceModel", func(t *testing.T) {
		processtest.RunInstanceModel(t, env, d.connect, InstanceModelServer, InstanceModelCluster)
	})
}

// The model-based test of the instance counters in make test: short
// seeds (internal/chaos runs long ones).
var (
	InstanceModelServer  = icmodel.Config{Seeds: []uint64{11, 15}, Steps: 60, Local: 2, Remote: 2, CheckEach: 30, DeadAfter: 300 * time.Millisecond}
	InstanceModelCluster = icmodel.Config{Seeds: []uint64{12, 22}, Steps: 60, Local: 2, Remote: 2, CheckEach: 30, DeadAfter: 300 * time.Millisecond}
)
