package rueidis_test

import (
	"errors"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
)

// New refuses nil clients and clients built with ConnLifetime, on every
// topology. rueidis answers commands left unanswered on a connection that
// reached its lifetime with an internal "connection is expired" error
// (pipe.go, _backgroundRead) and re-sends every command that gets it
// (client.go, cluster.go, sentinel.go: goto retry), written or not.
func TestNewRefuses(t *testing.T) {
	if _, err := rueidis.New(nil); !errors.Is(err, backend.ErrInvalidOption) {
		t.Fatalf("New(nil): %v", err)
	}
	var typedNil *struct{ rd.Client }
	if _, err := rueidis.New(typedNil); !errors.Is(err, backend.ErrInvalidOption) {
		t.Fatalf("New(typed nil): %v", err)
	}
	g := env.Sentinel(t)
	for name, opt := range map[string]rd.ClientOption{
		"standalone": {InitAddress: []string{env.Server(t).Addr}},
		"cluster":    {InitAddress: env.Cluster(t).Addrs()},
		"sentinel":   {InitAddress: g.SentinelAddrs(), Sentinel: rd.SentinelOption{MasterSet: g.Name}},
	} {
		opt.DisableCache = true
		c, err := rd.NewClient(opt)
		if err != nil {
			t.Fatal(name, err)
		}
		b, err := rueidis.New(c)
		if err != nil {
			t.Fatalf("%s without ConnLifetime: %v", name, err)
		}
		b.Close()
		c.Close()
		opt.ConnLifetime = time.Minute
		if c, err = rd.NewClient(opt); err != nil {
			t.Fatal(name, err)
		}
		if _, err := rueidis.New(c); !errors.Is(err, backend.ErrInvalidOption) {
			t.Errorf("%s with ConnLifetime: New returned %v, want ErrInvalidOption", name, err)
		}
		c.Close()
	}
}
