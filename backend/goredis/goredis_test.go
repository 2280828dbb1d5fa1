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

// dial builds the client the way distkit needs it: MaxRetries -1, so each
// operation is one attempt.
func dial(target redistest.Target) (backend.Backend, func(), error) {
	var c redis.UniversalClient
	if target.Cluster {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: target.Addrs, MaxRetries: -1})
	} else {
		c = redis.NewClient(&redis.Options{Addr: target.Addrs[0], MaxRetries: -1})
	}
	return goredis.New(c), func() { c.Close() }, nil
}

var driver = drivertest.Driver{Name: "goredis", Dial: dial,
	FromURL: func(url string) (backend.Backend, error) { return goredis.FromURL(url) }}

func TestMain(m *testing.M) { drivertest.Main(m, &env, driver) }

func TestDriver(t *testing.T) { drivertest.Run(t, &env, driver) }
