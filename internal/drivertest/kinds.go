package drivertest

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/redis/go-redis/v9"
	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/conformance"
	"github.com/distkit-go/distkit/internal/redistest"
)

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// goredisKind is a fault-matrix client kind: mk builds the user's client.
func goredisKind(name, topology string, mk func(d redistest.Deployment, dial dialFunc) redis.UniversalClient) ClientKind {
	return ClientKind{Name: name, Topology: topology,
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

// GoredisKinds are the go-redis client kinds of the fault matrix: every
// kind a user can hand the driver, with go-redis's defaults and with the
// risky options (retries on).
var GoredisKinds = []ClientKind{
	goredisKind("Client", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: d.Addrs[0], Dialer: dial})
	}),
	goredisKind("Client MaxRetries 3", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClient(&redis.Options{Addr: d.Addrs[0], Dialer: dial, MaxRetries: 3})
	}),
	goredisKind("Universal 1 addr", redistest.Standalone, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: d.Addrs[:1], Dialer: dial})
	}),
	goredisKind("ClusterClient", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial})
	}),
	goredisKind("ClusterClient MaxRetries -1", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial, MaxRetries: -1})
	}),
	goredisKind("ClusterClient MaxRetries 3", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: d.Addrs, Dialer: dial, MaxRetries: 3, MaxRedirects: 8})
	}),
	goredisKind("Universal several addrs", redistest.Clustered, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: d.Addrs, Dialer: dial})
	}),
	goredisKind("FailoverClient", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.MasterName, SentinelAddrs: d.SentinelAddrs, Dialer: dial})
	}),
	goredisKind("FailoverClient MaxRetries 3", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: d.MasterName, SentinelAddrs: d.SentinelAddrs, Dialer: dial, MaxRetries: 3})
	}),
	goredisKind("Universal MasterName", redistest.Sentinel, func(d redistest.Deployment, dial dialFunc) redis.UniversalClient {
		return redis.NewUniversalClient(&redis.UniversalOptions{MasterName: d.MasterName, Addrs: d.SentinelAddrs, Dialer: dial})
	}),
}

// rueidisKind is a fault-matrix client kind: opt is the user's option, its
// connections routed through the deployment's proxies.
func rueidisKind(name, topology string, opt func(d redistest.Deployment) rd.ClientOption) ClientKind {
	return ClientKind{Name: name, Topology: topology,
		Build: func(d redistest.Deployment) (backend.Backend, func(), error) {
			o := opt(d)
			if d.Dial != nil {
				o.DialCtxFn = func(ctx context.Context, dst string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
					return d.Dial(ctx, "tcp", dst)
				}
			}
			c, err := rd.NewClient(o)
			if err != nil {
				return nil, nil, err
			}
			b, err := rueidis.New(c)
			if err != nil {
				c.Close()
				return nil, nil, err
			}
			return b, c.Close, nil
		}}
}

// RueidisFaults sizes the fault matrix for rueidis: a call may overrun its
// deadline by rueidis's dial-and-handshake timeout (Dialer.Timeout, 5 s by
// default) while rueidis reconnects, which does not honour the call's
// context (seen on Cluster in a blackhole).
var RueidisFaults = conformance.FaultOptions{ConnectSlack: rd.DefaultDialTimeout}

// RueidisKinds are the rueidis client kinds of the fault matrix:
// standalone, Cluster and Sentinel with rueidis's defaults, and standalone
// with retries disabled.
var RueidisKinds = []ClientKind{
	rueidisKind("Client", redistest.Standalone, func(d redistest.Deployment) rd.ClientOption {
		return rd.ClientOption{InitAddress: d.Addrs[:1]}
	}),
	rueidisKind("Client DisableRetry", redistest.Standalone, func(d redistest.Deployment) rd.ClientOption {
		return rd.ClientOption{InitAddress: d.Addrs[:1], DisableRetry: true}
	}),
	rueidisKind("Cluster", redistest.Clustered, func(d redistest.Deployment) rd.ClientOption {
		return rd.ClientOption{InitAddress: d.Addrs}
	}),
	rueidisKind("Sentinel", redistest.Sentinel, func(d redistest.Deployment) rd.ClientOption {
		return rd.ClientOption{InitAddress: d.SentinelAddrs, Sentinel: rd.SentinelOption{MasterSet: d.MasterName}}
	}),
}
