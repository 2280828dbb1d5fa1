package rueidis_test

import (
	"context"
	"fmt"
	"strings"

	rd "github.com/redis/rueidis"

	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
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

// A rueidis client on Redis Sentinel (ClientOption.Sentinel) handed to New:
// InitAddress lists the Sentinels, MasterSet names the master.
func Example_sentinel() {
	ctx := context.Background()
	client, err := rd.NewClient(rd.ClientOption{
		InitAddress: sentinels(), // e.g. "10.0.0.1:26379", …
		Sentinel:    rd.SentinelOption{MasterSet: "distkit"},
	})
	if err != nil {
		panic(err)
	}
	defer client.Close()
	b, err := rueidisbackend.New(client)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	orders, _ := counter.NewStrict(b, counter.Options{Prefix: "example-rueidis-sentinel"})
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
	b, err := rueidisbackend.FromURL(url) // Close closes the client FromURL built
	if err != nil {
		panic(err)
	}
	defer b.Close()
	orders, _ := counter.NewStrict(b, counter.Options{Prefix: "example-rueidis-sentinel-url"})
	n, err := orders.Inc(ctx, "eu", 2)
	fmt.Println(n, err)
	// Output: 2 <nil>
}
