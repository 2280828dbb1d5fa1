package redistest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/faultproxy"
)

// Topologies a Deployment can have.
const (
	Standalone = "standalone"
	Clustered  = "cluster"
	Sentinel   = "sentinel"
)

// Deployment tells a client builder where the servers are. Its Dial routes
// every connection to a data server through that server's fault proxy
// (Sentinels are dialled directly); nil Dial means no proxies.
type Deployment struct {
	Topology      string   // Standalone, Clustered or Sentinel
	Addrs         []string // data servers (Cluster: every node; Sentinel: master and replica)
	SentinelAddrs []string // Sentinel only
	MasterName    string   // Sentinel only
	Dial          func(ctx context.Context, network, addr string) (net.Conn, error)
}

// FaultEnv owns the deployments of the fault matrix, each started on
// first use with AOF (appendfsync always) so a killed server restarts with
// every acknowledged write: a standalone server, a 3-master Cluster and a
// Sentinel group. Every data server sits behind a fault proxy.
type FaultEnv struct {
	mu     sync.Mutex
	server *Server
	clu    *Cluster
	sen    *SentinelGroup
	sets   map[string]*faultproxy.Set
}

// Deployment returns the deployment of topology (starting it first).
func (e *FaultEnv) Deployment(t *testing.T, topology string) Deployment {
	t.Helper()
	Require(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sets == nil {
		e.sets = map[string]*faultproxy.Set{}
	}
	aof := Options{AppendOnly: true}
	var d Deployment
	var err error
	switch topology {
	case Standalone:
		if e.server == nil {
			e.server, err = Start(aof)
		}
		if err == nil {
			d = Deployment{Topology: topology, Addrs: []string{e.server.Addr}}
		}
	case Clustered:
		if e.clu == nil {
			e.clu, err = StartClusterWith(3, 0, aof)
		}
		if err == nil {
			d = Deployment{Topology: topology, Addrs: e.clu.Addrs()}
		}
	case Sentinel:
		if e.sen == nil {
			// Failovers in the matrix are manual: down-after is long enough
			// that a restarted master is not failed over.
			e.sen, err = StartSentinel(5*time.Second, aof)
		}
		if err == nil {
			d = Deployment{Topology: topology, Addrs: e.sen.DataAddrs(), SentinelAddrs: e.sen.SentinelAddrs(), MasterName: e.sen.Name}
		}
	default:
		err = fmt.Errorf("redistest: unknown topology %q", topology)
	}
	if err != nil {
		t.Fatal(err)
	}
	set := e.sets[topology]
	if set == nil {
		if set, err = faultproxy.NewSet(d.Addrs...); err != nil {
			t.Fatal(err)
		}
		e.sets[topology] = set
	}
	d.Dial = set.Dial
	return d
}

// Proxies returns the proxy set of topology's data servers.
func (e *FaultEnv) Proxies(topology string) *faultproxy.Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sets[topology]
}

// Cluster returns the Cluster (nil before first use).
func (e *FaultEnv) Cluster() *Cluster {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clu
}

// SentinelGroup returns the Sentinel group (nil before first use).
func (e *FaultEnv) SentinelGroup() *SentinelGroup {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sen
}

// ServerFor returns the data server that serves key in topology (the
// master on Cluster and Sentinel).
func (e *FaultEnv) ServerFor(topology, key string) (*Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch topology {
	case Standalone:
		return e.server, nil
	case Clustered:
		slot, err := e.clu.KeySlot(key)
		if err != nil {
			return nil, err
		}
		return e.clu.MasterOf(slot)
	case Sentinel:
		return e.sen.Master()
	}
	return nil, fmt.Errorf("redistest: unknown topology %q", topology)
}

// DataServers returns the data servers of topology (every Cluster node;
// the Sentinel group's master and replica).
func (e *FaultEnv) DataServers(topology string) []*Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case topology == Standalone && e.server != nil:
		return []*Server{e.server}
	case topology == Clustered && e.clu != nil:
		return append([]*Server(nil), e.clu.Nodes...)
	case topology == Sentinel && e.sen != nil:
		return append([]*Server(nil), e.sen.Data...)
	}
	return nil
}

// Stop stops every deployment and proxy.
func (e *FaultEnv) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.sets {
		s.Close()
	}
	if e.server != nil {
		e.server.Stop()
	}
	if e.clu != nil {
		e.clu.Stop()
	}
	if e.sen != nil {
		e.sen.Stop()
	}
}
