package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/lock"
)

// The memory backend stands in for Redis in tests: fault hooks make the
// next calls fail (before or after applying them), and Advance moves
// server time.
func ExampleNew() {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()

	c, _ := counter.NewStrict(b, counter.Options{Prefix: "shop"})
	b.FailNext(1, nil) // not applied: safe to retry
	_, err := c.Inc(ctx, "orders", 1)
	fmt.Println("not applied:", errors.Is(err, distkit.ErrNotApplied))
	b.FailAfterApply(1) // applied, but the reply is lost
	_, err = c.Inc(ctx, "orders", 1)
	n, _ := c.Get(ctx, "orders")
	fmt.Println("indeterminate:", errors.Is(err, distkit.ErrIndeterminate), "value:", n)

	m, _ := lock.NewMutex(b.Connect(), "report", lock.Options{TTL: time.Minute})
	stale, _ := m.TryLock(ctx)
	b.Advance(time.Hour) // leases, heartbeats and TTLs see an hour pass
	g, err := m.TryLock(ctx)
	fmt.Println("expired lease taken over:", err == nil)
	g.Release(ctx)
	_, err = stale.Release(ctx)
	fmt.Println("stale holder told:", errors.Is(err, distkit.ErrNotHeld))
	// Output:
	// not applied: true
	// indeterminate: true value: 1
	// expired lease taken over: true
	// stale holder told: true
}
