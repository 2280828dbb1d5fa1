package redistest

import (
	"strings"
	"testing"
)

// After StartCluster with replicas, every master has a replica that has
// acknowledged replication traffic (a non-zero offset).
func TestClusterReplicasStreaming(t *testing.T) {
	Require(t)
	c, err := StartCluster(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	masters := 0
	for _, n := range c.Nodes {
		info, err := n.Do("INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(info, "role:master") {
			continue
		}
		masters++
		if strings.Contains(info, "connected_slaves:0") {
			t.Fatalf("master %s has no replica", n.Addr)
		}
		if !strings.Contains(info, "slave0:") || strings.Contains(info, ",offset=0,") {
			t.Fatalf("master %s: replica has acknowledged nothing:\n%s", n.Addr, info)
		}
	}
	if masters != 3 {
		t.Fatalf("%d masters", masters)
	}
}
