package redistest

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Cluster is a local Redis Cluster of redis-server processes.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns every node's address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// StartCluster starts masters × (1 + replicas) nodes, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok.
func StartCluster(masters, replicas int) (*Cluster, error) {
	c := &Cluster{}
	total := masters * (1 + replicas)
	for range total {
		s, err := Start(Options{Cluster: true})
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		c.Stop()
		return nil, fmt.Errorf("redistest: redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitOK(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.waitReplicas(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitReplicas waits until every replica has finished its initial sync
// (a replica without data cannot take over from its master).
func (c *Cluster) waitReplicas(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		for {
			info, err := n.Do("INFO", "replication")
			if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("redistest: replica %s not in sync: %v %s", n.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// WaitOK waits until every running node reports cluster_state:ok and
// knows all 16384 slots.
func (c *Cluster) WaitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		for {
			info, err := n.Do("CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("redistest: cluster node %s not ok: %v %s", n.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// Do sends a command to every node, returning the first error.
func (c *Cluster) Do(args ...string) error {
	for _, n := range c.Nodes {
		if _, err := n.Do(args...); err != nil && !strings.HasPrefix(err.Error(), "READONLY") {
			return fmt.Errorf("%s: %w", n.Addr, err)
		}
	}
	return nil
}

// Stop kills every node and removes their directories.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}
