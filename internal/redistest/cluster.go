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
	return StartClusterWith(masters, replicas, Options{})
}

// StartClusterWith is StartCluster with options for every node (Cluster is
// set for them).
func StartClusterWith(masters, replicas int, opts Options) (*Cluster, error) {
	c := &Cluster{}
	total := masters * (1 + replicas)
	opts.Cluster = true
	for range total {
		s, err := Start(opts)
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
	if err := c.waitReplicas(masters*replicas, 30*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitReplicas waits until want replicas have finished their initial sync
// and every master is streaming to its replica: a probe write on each
// master is acknowledged (WAIT). Until a replica's first ACK its master
// only buffers writes, and a master killed then takes them all with it.
func (c *Cluster) waitReplicas(want int, timeout time.Duration) error {
	if want == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	var masters []*Server
	for {
		up := 0
		masters = masters[:0]
		for _, n := range c.Nodes {
			info, err := n.Do("INFO", "replication")
			switch {
			case err != nil:
			case strings.Contains(info, "master_link_status:up"):
				up++
			case strings.Contains(info, "role:master") && !strings.Contains(info, "connected_slaves:0"):
				masters = append(masters, n)
			}
		}
		if up == want {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: %d of %d replicas in sync", up, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range masters {
		if err := probeReplicated(m, time.Until(deadline)); err != nil {
			return err
		}
	}
	return nil
}

// probeReplicated writes a key that master n serves and waits, on the same
// connection, until a replica has acknowledged it.
func probeReplicated(n *Server, timeout time.Duration) error {
	ms := strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
	for i := 0; i < 1000; i++ {
		key := "redistest-probe-" + strconv.Itoa(i)
		r, err := n.DoAll([]string{"SET", key, "1"}, []string{"WAIT", "1", ms}, []string{"DEL", key})
		switch {
		case err != nil && strings.HasPrefix(err.Error(), "MOVED"):
			continue // another master serves this key
		case err != nil:
			return fmt.Errorf("redistest: probe on %s: %w", n.Addr, err)
		case r[1] == "0":
			return fmt.Errorf("redistest: no replica of %s acknowledged a write within %s ms", n.Addr, ms)
		}
		return nil
	}
	return fmt.Errorf("redistest: found no key served by %s", n.Addr)
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

// KeySlot returns the hash slot of key.
func (c *Cluster) KeySlot(key string) (int, error) {
	r, err := c.Nodes[0].Do("CLUSTER", "KEYSLOT", key)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(r)
}

// MasterOf returns the running master that serves slot, as the first
// running node reports it.
func (c *Cluster) MasterOf(slot int) (*Server, error) {
	var nodes string
	var err error
	for _, n := range c.Nodes {
		if nodes, err = n.Do("CLUSTER", "NODES"); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.Contains(f[2], "master") {
			continue
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a migration in progress
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			l, _ := strconv.Atoi(lo)
			h, _ := strconv.Atoi(hi)
			if slot >= l && slot <= h {
				addr := strings.Split(f[1], "@")[0]
				for _, n := range c.Nodes {
					if n.Addr == addr {
						return n, nil
					}
				}
			}
		}
	}
	return nil, fmt.Errorf("redistest: no master for slot %d", slot)
}

// MoveSlot migrates slot (and its keys) from its master to another master,
// the way redis-cli --cluster reshard does: IMPORTING/MIGRATING, MIGRATE of
// every key, then SETSLOT NODE on every node. Clients meet ASK during the
// move and MOVED after it. It returns the new master.
func (c *Cluster) MoveSlot(slot int) (*Server, error) {
	src, err := c.MasterOf(slot)
	if err != nil {
		return nil, err
	}
	var dst *Server
	for _, n := range c.Nodes {
		if n == src {
			continue
		}
		if info, err := n.Do("INFO", "replication"); err == nil && strings.Contains(info, "role:master") {
			dst = n
			break
		}
	}
	if dst == nil {
		return nil, fmt.Errorf("redistest: no other master")
	}
	srcID, err := src.Do("CLUSTER", "MYID")
	if err != nil {
		return nil, err
	}
	dstID, err := dst.Do("CLUSTER", "MYID")
	if err != nil {
		return nil, err
	}
	s := strconv.Itoa(slot)
	if _, err := dst.Do("CLUSTER", "SETSLOT", s, "IMPORTING", srcID); err != nil {
		return nil, err
	}
	if _, err := src.Do("CLUSTER", "SETSLOT", s, "MIGRATING", dstID); err != nil {
		return nil, err
	}
	for {
		keys, err := src.Do("CLUSTER", "GETKEYSINSLOT", s, "100")
		if err != nil {
			return nil, err
		}
		if keys == "" {
			break
		}
		args := []string{"MIGRATE", "127.0.0.1", strconv.Itoa(dst.Port), "", "0", "5000", "REPLACE", "KEYS"}
		args = append(args, strings.Split(keys, "\n")...)
		if _, err := src.Do(args...); err != nil {
			return nil, err
		}
	}
	for _, n := range append([]*Server{dst, src}, c.Nodes...) {
		if _, err := n.Do("CLUSTER", "SETSLOT", s, "NODE", dstID); err != nil && !strings.Contains(err.Error(), "I still hold keys") {
			return nil, fmt.Errorf("redistest: SETSLOT NODE on %s: %w", n.Addr, err)
		}
	}
	return dst, nil
}
