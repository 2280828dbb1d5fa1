package goredis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/go-redis/v9"

	goredisbackend "github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/primitives/counter"
)

// The driver wraps your client; closing the backend leaves the client open.
// MaxRetries: -1 turns off go-redis's own retries, which could apply a
// script twice after a lost reply. (Examples of this package need a Redis
// server, so they are compiled but not run.)
func ExampleNew() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	b, err := goredisbackend.New(client)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	c, err := counter.NewStrict(b, counter.Options{Prefix: "shop"})
	if err != nil {
		log.Fatal(err)
	}
	n, err := c.Inc(ctx, "orders", 1)
	fmt.Println(n, err)
}

// A Cluster: every distkit script touches a single hash slot.
func ExampleNew_cluster() {
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
	})
	defer client.Close()
	b, err := goredisbackend.New(client)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
}

// FromURL builds the client itself (with retries off); b.Close closes it.
func ExampleFromURL() {
	b, err := goredisbackend.FromURL("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
}
