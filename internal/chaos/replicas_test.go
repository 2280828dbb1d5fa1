//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/primitives/lock"
)

// trials is the number of failovers per cell (DISTKIT_CHAOS_TRIALS
// overrides it).
func trials(def int) int {
	if n, err := strconv.Atoi(os.Getenv("DISTKIT_CHAOS_TRIALS")); err == nil && n > 0 {
		return n
	}
	return def
}

// replicaDeployment is a master and its replica that a test can fail over.
type replicaDeployment interface {
	// pair returns the master serving key and its replica.
	pair(t *testing.T, key string) (master, replica *redistest.Server)
	// promote makes replica the master after master was killed.
	promote(t *testing.T, master, replica *redistest.Server)
	// heal brings the killed master back as a replica of the new one.
	heal(t *testing.T, old, master *redistest.Server)
	client(t *testing.T) (backend.Backend, func())
}

// failoverCell counts one cell's trials.
type failoverCell struct {
	Deployment, Variant string
	MinReplicas         int
	Trials              int
	Granted             int // the first holder's Lock succeeded
	Refused             int // ErrNotReplicated: not granted
	SecondHolder        int // another client got the lock while the first holder's guard said Acquired
}

func (c failoverCell) String() string {
	return fmt.Sprintf("%-18s %-16s MinReplicas %d: %2d trials, granted %2d, refused (not replicated) %2d, second holder got in while the first held it: %2d",
		c.Deployment, c.Variant, c.MinReplicas, c.Trials, c.Granted, c.Refused, c.SecondHolder)
}

// TestLockReplicaFailover: a holder acquires a lock, the master is killed
// (kill -9) at once and its replica promoted; then another client tries
// the lock. Without Options.MinReplicas an acquisition the replica had not
// received is granted a second time; with it, an acquisition is granted
// only once the replica acknowledged it, so no second holder gets in while
// the first one holds the lock. Each cell runs with the replica in sync
// (kill right after the reply), slow (stopped with its link saturated, so
// that the acquisition waits in the master's output buffer, and resumed
// 150 ms later) and stopped until the master is killed. The counts are
// logged for the README.
func TestLockReplicaFailover(t *testing.T) {
	redistest.Require(t)
	var cells []failoverCell
	t.Run("Cluster-rueidis", func(t *testing.T) {
		cl, err := redistest.StartCluster(3, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Stop()
		d := &clusterDeployment{c: cl}
		cells = append(cells, runReplicaCells(t, "Cluster/rueidis", d, trials(6))...)
	})
	t.Run("Sentinel-goredis", func(t *testing.T) {
		g, err := redistest.StartSentinel(30*time.Second, redistest.Options{}) // failovers here are forced
		if err != nil {
			t.Fatal(err)
		}
		defer g.Stop()
		d := &sentinelDeployment{g: g}
		cells = append(cells, runReplicaCells(t, "Sentinel/go-redis", d, trials(4))...)
	})
	var b strings.Builder
	for _, c := range cells {
		b.WriteString("\n  " + c.String())
	}
	t.Logf("lock acquisitions across a failover right after them:%s", b.String())
}

// Replica behaviours of a trial.
const (
	replicaUp      = "plain"           // in sync: kill right after the reply
	replicaSlow    = "slow replica"    // stopped, its link saturated; resumes 150 ms into the acquisition
	replicaStopped = "stopped replica" // stopped, its link saturated; resumes after the kill
)

func runReplicaCells(t *testing.T, name string, d replicaDeployment, n int) []failoverCell {
	var cells []failoverCell
	for _, variant := range []string{replicaUp, replicaSlow, replicaStopped} {
		for _, minReplicas := range []int{0, 1} {
			c := failoverCell{Deployment: name, Variant: variant, MinReplicas: minReplicas}
			for i := range n {
				replicaTrial(t, d, &c, variant, fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(variant, " ", ""), minReplicas, i))
			}
			t.Log(c.String())
			cells = append(cells, c)
		}
	}
	// What the option promises: no second holder while the first holds.
	for _, c := range cells {
		if c.MinReplicas > 0 && c.SecondHolder > 0 {
			t.Errorf("with MinReplicas: %s", c)
		}
	}
	return cells
}

func replicaTrial(t *testing.T, d replicaDeployment, c *failoverCell, variant, name string) {
	lag := variant != replicaUp
	ctx := context.Background()
	c.Trials++
	prefix := "chaos-repl"
	key := keyspace.Lock(prefix, name).Lock
	master, replica := d.pair(t, key)
	ba, closeA := d.client(t)
	defer closeA()
	first, err := lock.NewMutex(ba, name, lock.Options{Prefix: prefix, TTL: 30 * time.Second,
		MinReplicas: c.MinReplicas, ReplicaTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if lag {
		// Stop the replica and fill the link (kernel buffers, then the
		// master's output buffer) so that what comes next stays on the
		// master.
		if err := replica.Pause(); err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("x", 1<<20)
		var cmds [][]string
		for _, k := range fillKeys(key) {
			cmds = append(cmds, []string{"SET", k, big})
		}
		// Right after the previous trial's failover a node may still
		// report the cluster down for a moment: wait that out.
		for wait := time.Now().Add(30 * time.Second); ; {
			_, err := master.DoAll(cmds...)
			if err == nil {
				break
			}
			if !strings.Contains(err.Error(), "CLUSTERDOWN") || time.Now().After(wait) {
				replica.Resume()
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var resume *time.Timer
	if variant == replicaSlow {
		resume = time.AfterFunc(150*time.Millisecond, func() { replica.Resume() })
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	g, err := first.Lock(cctx)
	cancel()
	master.Kill() // at once
	if resume != nil {
		resume.Stop()
	}
	if lag {
		replica.Resume()
	}
	switch {
	case err == nil:
		c.Granted++
	case errors.Is(err, distkit.ErrNotReplicated):
		c.Refused++
	default:
		t.Fatalf("first holder: %v", err)
	}
	d.promote(t, master, replica)
	if lag {
		replica.Do(append([]string{"DEL"}, fillKeys(key)...)...) // what of it arrived
	}
	// Another client asks the new master: granted, or held?
	bb, closeB := d.client(t)
	defer closeB()
	second, err := lock.NewMutex(bb, name, lock.Options{Prefix: prefix, TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		g2, err := second.TryLock(ctx)
		if err == nil {
			if g != nil && g.State() == lock.Acquired {
				c.SecondHolder++
			}
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			g2.Release(rctx)
			rcancel()
			break
		}
		if errors.Is(err, distkit.ErrNotAcquired) {
			break // the new master has the first holder's lease
		}
		if time.Now().After(deadline) {
			t.Fatalf("second client: no answer from the new master within 20 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if g != nil {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		g.Release(rctx)
		rcancel()
	}
	d.heal(t, master, replica)
}

// fillKeys are 24 keys in key's hash slot, for 24 MB that saturate a
// replica's link.
func fillKeys(key string) []string {
	tag := key[:strings.Index(key, "}")+1]
	out := make([]string, 24)
	for i := range out {
		out[i] = tag + ":fill:" + strconv.Itoa(i)
	}
	return out
}

// clusterDeployment fails a Cluster master over to its replica with
// CLUSTER FAILOVER TAKEOVER.
type clusterDeployment struct{ c *redistest.Cluster }

func (d *clusterDeployment) pair(t *testing.T, key string) (*redistest.Server, *redistest.Server) {
	if err := d.c.WaitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	slot, err := d.c.KeySlot(key)
	if err != nil {
		t.Fatal(err)
	}
	m, err := d.c.MasterOf(slot)
	if err != nil {
		t.Fatal(err)
	}
	// Gossip (CLUSTER NODES) may lag behind; every replica's own INFO
	// says whom it replicates.
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, n := range d.c.Nodes {
			info, err := n.Do("INFO", "replication")
			if err == nil && strings.Contains(info, "role:slave") &&
				regexp.MustCompile(`master_port:`+strconv.Itoa(m.Port)+`\b`).MatchString(info) &&
				strings.Contains(info, "master_link_status:up") {
				return m, n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica of %s in sync", m.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *clusterDeployment) promote(t *testing.T, _, replica *redistest.Server) {
	if _, err := replica.Do("CLUSTER", "FAILOVER", "TAKEOVER"); err != nil {
		t.Fatal(err)
	}
	waitRole(t, replica, "role:master")
}

func (d *clusterDeployment) heal(t *testing.T, old, master *redistest.Server) {
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	waitRole(t, old, "master_link_status:up") // it rejoins as the new master's replica
	if err := d.c.WaitOK(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func (d *clusterDeployment) client(t *testing.T) (backend.Backend, func()) {
	c, err := rd.NewClient(rd.ClientOption{InitAddress: d.c.Addrs(), DisableCache: true,
		Dialer: netDialer()})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return b, func() { b.Close(); c.Close() }
}

// sentinelDeployment fails the master over with SENTINEL FAILOVER.
type sentinelDeployment struct{ g *redistest.SentinelGroup }

func (d *sentinelDeployment) pair(t *testing.T, _ string) (*redistest.Server, *redistest.Server) {
	m, err := d.g.Master()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.g.Data {
		if s != m {
			return m, s
		}
	}
	t.Fatal("no replica")
	return nil, nil
}

func (d *sentinelDeployment) promote(t *testing.T, _, _ *redistest.Server) {
	if _, err := d.g.Failover(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func (d *sentinelDeployment) heal(t *testing.T, old, master *redistest.Server) {
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(master.Port)); err != nil {
		t.Fatal(err)
	}
	waitRole(t, old, "master_link_status:up")
	// The next forced failover needs every Sentinel to see the replica
	// again (they keep the old master in their tables and notice it back).
	deadline := time.Now().Add(30 * time.Second)
	port := "\nport\n" + strconv.Itoa(old.Port) + "\n"
	for _, s := range d.g.Sentinels {
		for {
			r, err := s.Do("SENTINEL", "REPLICAS", d.g.Name)
			if err == nil && strings.Contains(r, port) && strings.Contains(r, "flags\nslave\n") &&
				strings.Contains(r, "master-link-status\nok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sentinel %s does not see the replica %s: %v\n%s", s.Addr, old.Addr, err, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (d *sentinelDeployment) client(t *testing.T) (backend.Backend, func()) {
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.g.Name, SentinelAddrs: d.g.SentinelAddrs(),
		DialerRetries: 1})
	b, err := goredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	return b, func() { b.Close(); c.Close() }
}

// waitRole waits until s's INFO replication contains want.
func waitRole(t *testing.T, s *redistest.Server, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := s.Do("INFO", "replication")
		if err == nil && strings.Contains(info, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q within 30 s: %v\n%s", s.Addr, want, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
