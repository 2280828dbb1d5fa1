package redistest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SentinelMaster is the master name the Sentinels of a SentinelGroup
// monitor.
const SentinelMaster = "distkit"

// SentinelGroup is a Redis Sentinel deployment on loopback: one master,
// one replica and three Sentinels (redis-server --sentinel) with quorum 2.
type SentinelGroup struct {
	Name      string    // the monitored master's name
	Data      []*Server // master and replica (which is which changes on failover)
	Sentinels []*Server
}

// StartSentinel starts a master, a replica in sync with it and three
// Sentinels that monitor it, and waits until every Sentinel knows the
// replica and the other Sentinels. downAfter is the Sentinels'
// down-after-milliseconds (how long a master must be unreachable before a
// failover starts); data configures the master and the replica.
func StartSentinel(downAfter time.Duration, data Options) (*SentinelGroup, error) {
	g := &SentinelGroup{Name: SentinelMaster}
	mo := data
	mo.Args = append(append([]string(nil), data.Args...), "--repl-diskless-sync-delay", "0")
	master, err := Start(mo)
	if err != nil {
		return nil, err
	}
	g.Data = append(g.Data, master)
	// The replica is made one at run time, not with --replicaof: a server
	// restarted after a failover must come back with its data and no stale
	// role from its command line.
	replica, err := Start(mo)
	if err != nil {
		g.Stop()
		return nil, err
	}
	g.Data = append(g.Data, replica)
	if _, err := replica.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(master.Port)); err != nil {
		g.Stop()
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	if err := waitReplicaUp(replica, deadline); err != nil {
		g.Stop()
		return nil, err
	}
	for range 3 {
		s, err := startSentinel(g.Name, master.Port, downAfter)
		if err != nil {
			g.Stop()
			return nil, err
		}
		g.Sentinels = append(g.Sentinels, s)
	}
	for _, s := range g.Sentinels {
		for {
			info, err := s.Do("SENTINEL", "MASTER", g.Name)
			if err == nil && strings.Contains(info, "num-slaves\n1") && strings.Contains(info, "num-other-sentinels\n2") {
				break
			}
			if time.Now().After(deadline) {
				g.Stop()
				return nil, fmt.Errorf("redistest: sentinel %s does not see the group: %v\n%s", s.Addr, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return g, nil
}

func waitReplicaUp(replica *Server, deadline time.Time) error {
	for {
		info, err := replica.Do("INFO", "replication")
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: replica %s not in sync: %v", replica.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startSentinel starts redis-server --sentinel with a config file of its
// own (Sentinel rewrites it).
func startSentinel(name string, masterPort int, downAfter time.Duration) (*Server, error) {
	dir, err := os.MkdirTemp("", "distkit-sentinel-")
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freePort(false)
		if err != nil {
			return nil, err
		}
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s %d\n"+
			"sentinel failover-timeout %s 10000\n"+
			"sentinel parallel-syncs %s 1\n",
			port, dir, filepath.Join(dir, "redis.log"), name, masterPort, name, downAfter.Milliseconds(), name, name)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		s := &Server{Port: port, Addr: "127.0.0.1:" + strconv.Itoa(port), Dir: dir, ownDir: true,
			opts: Options{sentinelConf: conf}}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	os.RemoveAll(dir)
	return nil, lastErr
}

// SentinelAddrs returns the Sentinels' addresses.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.Sentinels))
	for i, s := range g.Sentinels {
		out[i] = s.Addr
	}
	return out
}

// DataAddrs returns the addresses of the master and the replica.
func (g *SentinelGroup) DataAddrs() []string {
	out := make([]string, len(g.Data))
	for i, s := range g.Data {
		out[i] = s.Addr
	}
	return out
}

// MasterAddr asks the Sentinels for the current master's address.
func (g *SentinelGroup) MasterAddr() (string, error) {
	var lastErr error
	for _, s := range g.Sentinels {
		r, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", g.Name)
		if err != nil {
			lastErr = err
			continue
		}
		host, port, ok := strings.Cut(r, "\n")
		if !ok {
			lastErr = fmt.Errorf("redistest: odd reply %q", r)
			continue
		}
		return host + ":" + port, nil
	}
	if lastErr == nil {
		lastErr = errors.New("redistest: no sentinel")
	}
	return "", lastErr
}

// Master returns the data server the Sentinels name as master.
func (g *SentinelGroup) Master() (*Server, error) {
	addr, err := g.MasterAddr()
	if err != nil {
		return nil, err
	}
	for _, s := range g.Data {
		if s.Addr == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("redistest: master %s is not one of ours", addr)
}

// WaitMaster waits until every Sentinel names a master other than old that
// reports role:master, and returns it.
func (g *SentinelGroup) WaitMaster(old string, timeout time.Duration) (*Server, error) {
	deadline := time.Now().Add(timeout)
	for {
		addr, err := g.MasterAddr()
		if err == nil && addr != old {
			for _, s := range g.Data {
				if s.Addr != addr {
					continue
				}
				if info, err := s.Do("INFO", "replication"); err == nil && strings.Contains(info, "role:master") {
					return s, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redistest: no new master within %v (still %s, %v)", timeout, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Failover asks a Sentinel for a manual failover and waits until the
// Sentinels name the old replica master and it reports role:master. The old
// master goes on taking writes until the Sentinels reconfigure it as a
// replica, several seconds later (WaitReplicas waits for that): Sentinel's
// own split-brain window.
func (g *SentinelGroup) Failover(timeout time.Duration) (*Server, error) {
	old, err := g.MasterAddr()
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	for {
		_, err = g.Sentinels[0].Do("SENTINEL", "FAILOVER", g.Name)
		if err == nil || !strings.Contains(err.Error(), "INPROG") && !strings.Contains(err.Error(), "NOGOODSLAVE") {
			break
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	return g.WaitMaster(old, time.Until(deadline))
}

// WaitReplicas waits until every running data server other than the
// master replicates from it.
func (g *SentinelGroup) WaitReplicas(timeout time.Duration) error {
	m, err := g.Master()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for _, s := range g.Data {
		if s != m && s.running() {
			if err := waitReplicaUp(s, deadline); err != nil {
				return err
			}
		}
	}
	return nil
}

// Stop stops every process.
func (g *SentinelGroup) Stop() {
	for _, s := range g.Sentinels {
		s.Stop()
	}
	for _, s := range g.Data {
		s.Stop()
	}
}

// sentinelArgs are the arguments of a Sentinel process.
func sentinelArgs(conf string) []string { return []string{conf, "--sentinel"} }

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}
