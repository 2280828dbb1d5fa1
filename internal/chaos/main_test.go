//go:build chaos

package chaos

import (
	"math/rand/v2"
	"os"
	"testing"
	"time"

	rd "github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/internal/processtest"
	"github.com/distkit-go/distkit/internal/redistest"
)

var (
	env      redistest.Env
	faultEnv redistest.FaultEnv
)

func TestMain(m *testing.M) {
	if processtest.WorkerMain(func(addrs []string, cluster bool) (backend.Backend, func(), error) {
		return dialTarget(redistest.Target{Addrs: addrs, Cluster: cluster})
	}) {
		return
	}
	code := m.Run()
	env.Stop()
	faultEnv.Stop()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// seed is fixed so a failing run can be replayed; it is logged.
const seed = 20261128

func rng(t *testing.T) *rand.Rand {
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, uint64(len(t.Name()))))
}

// client is one simulated process: its own proxy and its own connection.
type client struct {
	proxy *faultproxy.Proxy
	b     backend.Backend
}

func newClient(t *testing.T, target string) *client {
	t.Helper()
	p, err := faultproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{p.Addr}, DisableCache: true,
		ConnWriteTimeout: 500 * time.Millisecond, Dialer: netDialer()})
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	b, err := rueidis.New(c)
	if err != nil {
		c.Close()
		p.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); c.Close(); p.Close() })
	return &client{proxy: p, b: b}
}
