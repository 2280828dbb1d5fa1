package redistest

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/distkit-go/distkit/backend"
)

// Target describes the server a Connect function connects to.
type Target struct {
	Addrs   []string
	Cluster bool // Addrs are Cluster nodes
	// Emulated: miniredis, which lacks RESP3 push messages on a shared
	// connection (rueidis then needs AlwaysRESP2 for pub/sub).
	Emulated bool
	// Sentinel: Addrs are Sentinels monitoring MasterName.
	MasterName string
}

// Connect builds a backend client for a target. It registers the client's
// own cleanup with t.
type Connect func(t *testing.T, target Target) backend.Backend

// Env owns the servers one test binary shares: a standalone redis-server
// and a 3-master Cluster, each started on first use. Call Stop from
// TestMain after m.Run.
type Env struct {
	serverOnce  sync.Once
	server      *Server
	serverErr   error
	clusterOnce sync.Once
	cluster     *Cluster
	clusterErr  error
	sentOnce    sync.Once
	sentinel    *SentinelGroup
	sentErr     error

	// Faults holds the deployments of the fault matrix.
	Faults FaultEnv
}

// Sentinel returns the shared Sentinel group, starting it on first use.
func (e *Env) Sentinel(t *testing.T) *SentinelGroup {
	t.Helper()
	Require(t)
	g, err := e.SentinelGroup()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// SentinelGroup is Sentinel for code without a *testing.T (examples).
func (e *Env) SentinelGroup() (*SentinelGroup, error) {
	e.sentOnce.Do(func() { e.sentinel, e.sentErr = StartSentinel(5*time.Second, Options{}) })
	return e.sentinel, e.sentErr
}

// NewSentinelHarness returns a harness on e's Sentinel group: backends
// connect through the Sentinels.
func (e *Env) NewSentinelHarness(t *testing.T, connect Connect) *ServerHarness {
	g := e.Sentinel(t)
	return &ServerHarness{addrs: g.SentinelAddrs(), masterName: g.Name, connect: connect,
		flush: func() error {
			for _, s := range g.Data {
				if _, err := s.Do("SCRIPT", "FLUSH"); err != nil {
					return err
				}
			}
			return nil
		}}
}

// Server returns the shared standalone server, starting it on first use.
func (e *Env) Server(t *testing.T) *Server {
	t.Helper()
	Require(t)
	e.serverOnce.Do(func() { e.server, e.serverErr = Start(Options{}) })
	if e.serverErr != nil {
		t.Fatal(e.serverErr)
	}
	return e.server
}

// Cluster returns the shared 3-master Cluster, starting it on first use.
func (e *Env) Cluster(t *testing.T) *Cluster {
	t.Helper()
	Require(t)
	e.clusterOnce.Do(func() { e.cluster, e.clusterErr = StartCluster(3, 0) })
	if e.clusterErr != nil {
		t.Fatal(e.clusterErr)
	}
	return e.cluster
}

// Stop stops whatever was started.
func (e *Env) Stop() {
	if e.server != nil {
		e.server.Stop()
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
	if e.sentinel != nil {
		e.sentinel.Stop()
	}
	e.Faults.Stop()
}

// ServerHarness is a conformance harness on a real redis-server.
type ServerHarness struct {
	addrs      []string
	masterName string
	cluster    bool
	flush      func() error
	connect    Connect
}

// NewServerHarness returns a harness on e's standalone server.
func (e *Env) NewServerHarness(t *testing.T, connect Connect) *ServerHarness {
	s := e.Server(t)
	return &ServerHarness{addrs: []string{s.Addr}, connect: connect,
		flush: func() error { _, err := s.Do("SCRIPT", "FLUSH"); return err }}
}

// NewClusterHarness returns a harness on e's Cluster.
func (e *Env) NewClusterHarness(t *testing.T, connect Connect) *ServerHarness {
	c := e.Cluster(t)
	return &ServerHarness{addrs: c.Addrs(), cluster: true, connect: connect,
		flush: func() error { return c.Do("SCRIPT", "FLUSH") }}
}

// Addrs returns the server's (or Cluster's) addresses.
func (h *ServerHarness) Addrs() []string { return h.addrs }

// IsCluster reports whether Addrs are Cluster nodes.
func (h *ServerHarness) IsCluster() bool { return h.cluster }

// NewBackend connects a new client.
func (h *ServerHarness) NewBackend(t *testing.T) backend.Backend {
	return h.connect(t, Target{Addrs: h.addrs, Cluster: h.cluster, MasterName: h.masterName})
}

// Wait sleeps d plus a small margin for timer granularity.
func (h *ServerHarness) Wait(_ *testing.T, d time.Duration) { time.Sleep(d + 20*time.Millisecond) }

// FlushScripts empties the script cache of every node.
func (h *ServerHarness) FlushScripts(t *testing.T) {
	if err := h.flush(); err != nil {
		t.Fatal(err)
	}
}

// MiniHarness is a conformance harness on a fresh miniredis with a
// controlled clock: Wait advances both TIME and TTLs.
type MiniHarness struct {
	M       *miniredis.Miniredis
	now     time.Time
	mu      sync.Mutex
	connect Connect
}

// NewMiniHarness starts a miniredis that t's cleanup closes.
func NewMiniHarness(t *testing.T, connect Connect) *MiniHarness {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	now := time.Now()
	m.SetTime(now)
	return &MiniHarness{M: m, now: now, connect: connect}
}

// NewBackend connects a new client.
func (h *MiniHarness) NewBackend(t *testing.T) backend.Backend {
	return h.connect(t, Target{Addrs: []string{h.M.Addr()}, Emulated: true})
}

// Wait advances miniredis's time and TTLs by d.
func (h *MiniHarness) Wait(_ *testing.T, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
	h.M.SetTime(h.now)
	h.M.FastForward(d)
}

// FakeTime reports that miniredis's time moves only with Wait.
func (h *MiniHarness) FakeTime() bool { return true }

// FlushScripts empties miniredis's script cache.
func (h *MiniHarness) FlushScripts(t *testing.T) {
	if _, err := (&Server{Addr: h.M.Addr()}).Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
}

// InCI reports whether the CI environment variable is set.
func InCI() bool { return os.Getenv("CI") != "" }

// CrashHarness is a harness on a dedicated redis-server with AOF
// (appendfsync always) that can be killed with SIGKILL and restarted on
// the same port and directory.
type CrashHarness struct {
	ServerHarness
	S *Server
}

// NewCrashHarness starts a dedicated AOF server that t's cleanup stops.
func NewCrashHarness(t *testing.T, connect Connect) *CrashHarness {
	Require(t)
	s, err := Start(Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &CrashHarness{
		ServerHarness: ServerHarness{addrs: []string{s.Addr}, connect: connect,
			flush: func() error { _, err := s.Do("SCRIPT", "FLUSH"); return err }},
		S: s,
	}
}

// Crash kills the server with SIGKILL.
func (h *CrashHarness) Crash(*testing.T) { h.S.Kill() }

// Restart starts the server again from its AOF.
func (h *CrashHarness) Restart(t *testing.T) {
	if err := h.S.Restart(); err != nil {
		t.Fatal(err)
	}
}
