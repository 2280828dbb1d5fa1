package goredis_test

import (
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

var driver = drivertest.Driver{Name: "goredis", Dial: dial, Kinds: drivertest.GoredisKinds,
	FromURL: func(url string) (backend.Backend, error) { return goredis.FromURL(url) }}

func TestMain(m *testing.M) { drivertest.Main(m, &env, driver) }

func TestDriver(t *testing.T) { drivertest.Run(t, &env, driver) }
