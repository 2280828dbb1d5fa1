package rueidis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/rueidis"

	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/primitives/counter"
)

// The driver wraps your client; closing the backend leaves the client open.
// (Examples of this package need a Redis server, so they are compiled but
// not run.)
func ExampleNew() {
	ctx := context.Background()
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	b, err := rueidisbackend.New(client)
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

// A Cluster: rueidis discovers the other nodes from any of them, and every
// distkit script touches a single hash slot.
func ExampleNew_cluster() {
	client, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	b, err := rueidisbackend.New(client)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
}

// FromURL builds the client itself; b.Close closes it.
func ExampleFromURL() {
	b, err := rueidisbackend.FromURL("redis://127.0.0.1:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
}
