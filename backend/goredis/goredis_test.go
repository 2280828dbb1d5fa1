package goredis_test

import (
	"context"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/internal/drivertest"
	"github.com/distkit-go/distkit/internal/redistest"
)

var env redistest.Env

// dial builds the client as a user would, with go-redis's defaults: New
// makes it safe.
func dial(target redistest.Target) (backend.Backend, func(), error) {
	var c redis.UniversalClient
	switch {
	case target.MasterName != "":
		c = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: target.MasterName, SentinelAddrs: target.Addrs})
	case target.Cluster:
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: target.Addrs})
	default:
		c = redis.NewClient(&redis.Options{Addr: target.Addrs[0]})
	}
	b, err := goredis.New(c)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return b, func() { c.Close() }, nil
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// kind is a fault-matrix client kind: mk builds the user's client.
func kind(name, topology string, mk func(d redistest.Deployment, dial dialFunc) redis.UniversalClient) drivertest.ClientKind {
	return drivertest.ClientKind{Name: name, Topology: topology,
		Build: func(d redistest.Deployment) (backend.Backend, func(), error) {
			c := mk(d, d.Dial)
			b, err := goredis.New(c)
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return b, func() { c.Close() }, nil
		}}
}

// kinds: every client kind a user can hand the driver, with go-redis's
// defaults and with the risky options (retries on).
var kinds = []drivertest.ClientKind{
	kind("Client", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: d.Addrs[0], Dialer: dial})
	}),
	kind("Client MaxRetries 3", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: d.Addrs[0], Dialer: dial, MaxRetries: 3})
	}),
	kind("Universal 1 addr", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: d.Addrs[:1], Dialer: dial})
	}),
	kind("ClusterClient", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial})
	}),
	kind("ClusterClient MaxRetries -1", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial, MaxRetries: -1})
	}),
	kind("ClusterClient MaxRetries 3", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial, MaxRetries: 3, MaxRedirects: 8})
	}),
	kind("Universal several addrs", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: d.Addrs, Dialer: dial})
	}),
	kind("FailoverClient", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.MasterName, SentinelAddrs: d.SentinelAddrs, Dialer: dial})
	}),
	kind("FailoverClient MaxRetries 3", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.MasterName, SentinelAddrs: d.SentinelAddrs, Dialer: dial, MaxRetries: 3})
	}),
	kind("Universal MasterName", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{MasterName: d.MasterName, Addrs: d.SentinelAddrs, Dialer: dial})
	}),
}

var driver = drivertest.Driver{Name: "goredis", Dial: dial, Kinds: kinds,
	FromURL: func(url string) (backend.Backend, error) { return goredis.FromURL(url) }}

func TestMain(m *testing.M) { drivertest.Main(m, &env, driver) }

func TestDriver(t *testing.T) { drivertest.Run(t, &env, driver) }
