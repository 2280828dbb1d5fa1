package instancecounter_test

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func Example() {
	ctx := context.Background()
	b := memory.New(memory.Options{})

	// Two processes (instances) count their open connections.
	nodeA, _ := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "ws", InstanceID: "node-a"})
	nodeB, _ := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "ws", InstanceID: "node-b"})

	total, mine, _ := nodeA.Inc(ctx, "connections", 3)
	fmt.Println("node-a:", total, mine)
	total, mine, _ = nodeB.Inc(ctx, "connections", 2)
	fmt.Println("node-b:", total, mine)

	// node-a shuts down: its slice leaves the total (it would also leave,
	// DeadAfter later, if node-a crashed).
	nodeA.Close(ctx)
	total, mine, _ = nodeB.Get(ctx, "connections")
	fmt.Println("after node-a left:", total, mine)
	nodeB.Close(ctx)
	// Output:
	// node-a: 3 3
	// node-b: 5 2
	// after node-a left: 2 2
}

func ExampleStrict_Set() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	a, _ := instancecounter.NewStrict(b, instancecounter.Options{InstanceID: "a"})
	o, _ := instancecounter.NewStrict(b, instancecounter.Options{InstanceID: "o"})
	defer a.Close(ctx)
	defer o.Close(ctx)

	a.Inc(ctx, "sessions", 4)
	o.Inc(ctx, "sessions", 6)
	// A global reset: the total becomes 1, all of it a's; o's old slice is
	// from an older epoch and will not be counted again.
	total, mine, _ := a.Set(ctx, "sessions", 1)
	fmt.Println(total, mine)
	total, mine, _ = o.Inc(ctx, "sessions", 1)
	fmt.Println(total, mine)
	// Output:
	// 1 1
	// 2 1
}

// Lax counts in process and flushes in the background; Get, Flush and
// every call other than Inc and Dec see the server's state.
func ExampleLax() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	web1, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "ws", InstanceID: "web-1"})
	if err != nil {
		panic(err)
	}
	web2, err := instancecounter.NewLax(b, instancecounter.Options{Prefix: "ws", InstanceID: "web-2"})
	if err != nil {
		panic(err)
	}
	defer web2.Close(ctx)

	for range 3 {
		web1.Inc(ctx, "sessions", 1) // no I/O
	}
	web2.Inc(ctx, "sessions", 2)
	total, mine, _ := web1.Get(ctx, "sessions") // flushes web-1's pending deltas first
	fmt.Println("web-1 sees", total, mine)
	web2.Flush(ctx)
	total, mine, _ = web1.Get(ctx, "sessions")
	fmt.Println("after web-2 flushed", total, mine)

	web1.Close(ctx) // flushes, then takes web-1's slices out
	total, mine, _ = web2.Get(ctx, "sessions")
	fmt.Println("after web-1 left", total, mine)
	// Output:
	// web-1 sees 3 3
	// after web-2 flushed 5 3
	// after web-1 left 2 2
}

// Counter lets a caller choose Strict or Lax without touching call sites.
func ExampleCounter() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	var conns instancecounter.Counter
	conns, err := instancecounter.NewStrict(b, instancecounter.Options{InstanceID: "10.0.0.7:8080"})
	if err != nil {
		panic(err)
	}
	defer conns.Close(ctx)
	total, mine, _ := conns.Inc(ctx, "connections", 1)
	fmt.Println(conns.InstanceID(), total, mine)
	// Output:
	// 10.0.0.7:8080 1 1
}
