package goredis_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/primitives/counter"
)

// sentinels starts (once per test binary) a master, a replica and three
// Sentinels monitoring them as "distkit", and returns the Sentinels'
// addresses.
func sentinels() []string {
	g, err := env.SentinelGroup()
	if err != nil {
		panic(err)
	}
	return g.SentinelAddrs()
}

// A failover client (Redis Sentinel) handed to New: distkit's commands
// follow the master with it and are never re-sent by go-redis.
func Example_sentinel() {
	ctx := context.Background()
	client := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "distkit",
		SentinelAddrs: sentinels(), // e.g. "10.0.0.1:26379", …
	})
	defer client.Close()
	b, err := goredisbackend.New(client)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	orders, _ := counter.NewStrict(b, counter.Options{Prefix: "example-goredis-sentinel"})
	n, err := orders.Inc(ctx, "eu", 3)
	fmt.Println(n, err)
	// Output: 3 <nil>
}

// FromURL's Sentinel form: the hosts are Sentinels, master_set names the
// master.
func ExampleFromURL_sentinel() {
	ctx := context.Background()
	s := sentinels()
	url := "redis://" + s[0] + "/0?addr=" + strings.Join(s[1:], "&addr=") + "&master_set=distkit"
	b, err := goredisbackend.FromURL(url) // Close closes the client FromURL built
	if err != nil {
		panic(err)
	}
	defer b.Close()
	orders, _ := counter.NewStrict(b, counter.Options{Prefix: "example-goredis-sentinel-url"})
	n, err := orders.Inc(ctx, "eu", 2)
	fmt.Println(n, err)
	// Output: 2 <nil>
}
