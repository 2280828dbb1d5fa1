package rueidis_test

import (
	"testing"

	rd "github.com/redis/rueidis"
	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/drivertest"
	"github.com/distkit-go/distkit/internal/redistest"
)

var env redistest.Env

// dial: rueidis detects Cluster by itself. DisableCache: miniredis has no
// CLIENT TRACKING and distkit never reads through the client cache.
// AlwaysRESP2 on miniredis: it cannot mix pub/sub and commands on one RESP3
// connection, so rueidis must use a dedicated pub/sub connection there.
func dial(target redistest.Target) (backend.Backend, func(), error) {
	opt := rd.ClientOption{InitAddress: target.Addrs, DisableCache: true, AlwaysRESP2: target.Emulated}
	opt.Sentinel.MasterSet = target.MasterName
	c, err := rd.NewClient(opt)
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

var driver = drivertest.Driver{Name: "rueidis", Dial: dial, Kinds: drivertest.RueidisKinds,
	Faults:  drivertest.RueidisFaults,
	FromURL: func(url string) (backend.Backend, error) { return rueidis.FromURL(url) },
	// rueidis's Cluster client closes connections replaced by a topology
	// refresh from a goroutine that sleeps 5 s first; it belongs to the
	// client, is not started by distkit, and ends on its own.
	// A redirect schedules a delayed topology refresh (singleflight
	// DelayDo), which sleeps first and ends on its own too.
	IgnoreLeaks: []goleak.Option{goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1")}}

func TestMain(m *testing.M) { drivertest.Main(m, &env, driver) }

func TestDriver(t *testing.T) { drivertest.Run(t, &env, driver) }
