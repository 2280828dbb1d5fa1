package drivertest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/redistest"
)

// ClientKind is one way a user builds a client of a driver: a client type
// and its options, on one topology.
type ClientKind struct {
	Name     string // "Client", "ClusterClient MaxRetries 3", …
	Topology string // redistest.Standalone, Clustered or Sentinel
	// Build builds the user's client for d (its connections through d.Dial)
	// and a backend over it; closeClient closes the user's client.
	Build func(d redistest.Deployment) (b backend.Backend, closeClient func(), err error)
}

// faultHarness is conformance.FaultHarness for one ClientKind.
type faultHarness struct {
	env  *redistest.FaultEnv
	kind ClientKind
	dep  redistest.Deployment
}

var (
	_ conformance.FaultHarness = (*faultHarness)(nil)
	_ conformance.Resharder    = (*clusterFaultHarness)(nil)
	_ conformance.Failoverer   = (*sentinelFaultHarness)(nil)
	_ conformance.PubSubKiller = (*faultHarness)(nil)
)

type clusterFaultHarness struct{ *faultHarness }
type sentinelFaultHarness struct{ *faultHarness }

func newFaultHarness(t *testing.T, env *redistest.FaultEnv, k ClientKind) conformance.FaultHarness {
	h := &faultHarness{env: env, kind: k, dep: env.Deployment(t, k.Topology)}
	switch k.Topology {
	case redistest.Clustered:
		return clusterFaultHarness{h}
	case redistest.Sentinel:
		return sentinelFaultHarness{h}
	}
	return h
}

func (h *faultHarness) build(t *testing.T, d redistest.Deployment) (backend.Backend, func()) {
	b, closeClient, err := h.kind.Build(d)
	if err != nil {
		t.Fatalf("%s: %v", h.kind.Name, err)
	}
	var once sync.Once
	closeOnce := func() { once.Do(closeClient) }
	t.Cleanup(func() { b.Close(); closeOnce() })
	return b, closeOnce
}

func (h *faultHarness) NewClient(t *testing.T) (backend.Backend, func()) { return h.build(t, h.dep) }

func (h *faultHarness) Direct(t *testing.T) backend.Backend {
	d := h.dep
	d.Dial = nil
	b, _ := h.build(t, d)
	return b
}

func (h *faultHarness) Faults() conformance.FaultInjector { return h.env.Proxies(h.kind.Topology) }

func (h *faultHarness) Restart(t *testing.T, key string) {
	s, err := h.env.ServerFor(h.kind.Topology, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if c := h.env.Cluster(); h.kind.Topology == redistest.Clustered && c != nil {
		if err := c.WaitOK(20 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// KillPubSub kills every pub/sub connection on the data servers.
func (h *faultHarness) KillPubSub(t *testing.T) {
	for _, s := range h.env.DataServers(h.kind.Topology) {
		if _, err := s.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Fatalf("CLIENT KILL on %s: %v", s.Addr, err)
		}
	}
}

func (h clusterFaultHarness) MoveSlot(t *testing.T, key string) {
	c := h.env.Cluster()
	slot, err := c.KeySlot(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.MoveSlot(slot); err != nil {
		t.Fatal(err)
	}
}

func (h sentinelFaultHarness) Failover(t *testing.T) {
	g := h.env.SentinelGroup()
	if _, err := g.Failover(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Calls go on through Sentinel's split-brain window, until the old
	// master replicates from the new one.
	if err := g.WaitReplicas(60 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// RunFaults runs the fault matrix (conformance.RunFaults) on every client
// kind and logs the counts per cell.
func RunFaults(t *testing.T, env *redistest.FaultEnv, driver string, kinds []ClientKind, o conformance.FaultOptions) {
	var report []string
	var mu sync.Mutex
	for _, k := range kinds {
		t.Run(strings.ReplaceAll(k.Name, " ", "_"), func(t *testing.T) {
			bound := o
			cells := conformance.RunFaults(t, newFaultHarness(t, env, k), bound)
			var b strings.Builder
			fmt.Fprintf(&b, "%s / %s (%s):", driver, k.Name, k.Topology)
			for _, c := range cells {
				b.WriteString("\n    " + c.String())
			}
			mu.Lock()
			report = append(report, b.String())
			mu.Unlock()
		})
	}
	t.Logf("fault matrix (witness-checked outcomes per cell):\n%s", strings.Join(report, "\n"))
}

// RunLockFaults runs conformance.RunLockFaults on the first client kind of
// each topology and on kinds with client retries disabled, and logs the
// bounded-wait timings.
func RunLockFaults(t *testing.T, env *redistest.FaultEnv, driver string, kinds []ClientKind) {
	seen := map[string]bool{}
	var report []string
	for _, k := range kinds {
		if seen[k.Topology] && !strings.Contains(k.Name, "DisableRetry") {
			continue
		}
		seen[k.Topology] = true
		t.Run(strings.ReplaceAll(k.Name, " ", "_"), func(t *testing.T) {
			timings := conformance.RunLockFaults(t, newFaultHarness(t, env, k), conformance.LockFaultOptions{})
			var b strings.Builder
			fmt.Fprintf(&b, "%s / %s (%s):", driver, k.Name, k.Topology)
			for _, w := range timings {
				b.WriteString("\n    " + w.String())
			}
			report = append(report, b.String())
		})
	}
	t.Logf("lock waits (budget vs time taken):\n%s", strings.Join(report, "\n"))
}
