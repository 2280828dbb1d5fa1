package redistest

import (
	"testing"
	"time"
)

// A Sentinel group starts with its replica in sync, and a manual failover
// promotes the replica.
func TestSentinelFailover(t *testing.T) {
	Require(t)
	g, err := StartSentinel(time.Second, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Stop()
	old, err := g.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	if old != g.Data[0].Addr {
		t.Fatalf("master %s, want %s", old, g.Data[0].Addr)
	}
	start := time.Now()
	m, err := g.Failover(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m != g.Data[1] {
		t.Fatalf("new master %s, want %s", m.Addr, g.Data[1].Addr)
	}
	t.Logf("manual failover: new master after %v", time.Since(start).Round(time.Millisecond))
	if err := g.WaitReplicas(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
