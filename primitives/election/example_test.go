package election_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/election"
)

// Two candidates: the first leads until it resigns, then the second is
// elected with a higher fencing token; an observer follows each change.
func ExampleElection() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	a, _ := election.New(b, "scheduler", election.Options{TTL: 10 * time.Second})
	c, _ := election.New(b, "scheduler", election.Options{TTL: 10 * time.Second})

	octx, stop := context.WithCancel(ctx)
	defer stop()
	terms := a.Observe(octx)

	la, err := a.Campaign(ctx, "host-a")
	if err != nil {
		panic(err)
	}
	fmt.Println("observed:", (<-terms).Value)

	elected := make(chan *election.Leadership)
	go func() {
		lc, err := c.Campaign(ctx, "host-c") // waits while host-a leads
		if err != nil {
			panic(err)
		}
		elected <- lc
	}()
	la.Proclaim(ctx, "host-a (draining)")
	fmt.Println("observed:", (<-terms).Value)
	la.Resign(ctx) // hand over at once
	lc := <-elected
	fmt.Println("observed:", (<-terms).Value)
	fmt.Println("higher token:", lc.Token() > la.Token())

	lc.Resign(ctx)
	_, err = a.Leader(ctx)
	fmt.Println("no leader:", errors.Is(err, distkit.ErrNoLeader))
	// Output:
	// observed: host-a
	// observed: host-a (draining)
	// observed: host-c
	// higher token: true
	// no leader: true
}
