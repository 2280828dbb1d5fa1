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
