//go:build chaos

package chaos

import (
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/icmodel"
	"github.com/distkit-go/distkit/internal/processtest"
	"github.com/distkit-go/distkit/internal/redistest"
)

// dialTarget builds a rueidis backend for target (worker processes use it
// too); the func closes its client.
func dialTarget(target redistest.Target) (backend.Backend, func(), error) {
	c, err := rd.NewClient(rd.ClientOption{InitAddress: target.Addrs, DisableCache: true})
	if err != nil {
		return nil, nil, err
	}
	b, err := rueidis.New(c)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return b, c.Close, nil
}

func connectTarget(t *testing.T, target redistest.Target) backend.Backend {
	b, closeFn, err := dialTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); closeFn() })
	return b
}

func seeds(from, n int) []uint64 {
	var out []uint64
	for i := range n {
		out = append(out, uint64(from+i))
	}
	return out
}

// TestInstanceModel: the model-based test of the instance counters with
// long seeds: on the memory backend, a redis-server restarted without
// persistence (in-process instances behind fault proxies, worker
// processes), and the Cluster. The figures are logged.
func TestInstanceModel(t *testing.T) {
	const dead = 300 * time.Millisecond
	var total icmodel.Stats
	t.Run("memory", func(t *testing.T) {
		total.Add(icmodel.Run(t, icmodel.NewMemoryEnv(), icmodel.Config{
			Seeds: seeds(100, 10), Steps: 200, Local: 5, CheckEach: 40, DeadAfter: dead}))
	})
	server := icmodel.Config{Seeds: seeds(200, 3), Steps: 200, Local: 3, Remote: 2, CheckEach: 40, DeadAfter: dead}
	cluster := icmodel.Config{Seeds: seeds(300, 3), Steps: 200, Local: 3, Remote: 2, CheckEach: 40, DeadAfter: dead}
	processtest.RunInstanceModel(t, &env, connectTarget, server, cluster)
	t.Logf("memory: %s", total)
}
