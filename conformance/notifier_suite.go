package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

var publishScript = driver.NewScript("conf-publish", `return redis.call('PUBLISH', ARGV[1], 'x')`,
	func(st driver.Store, _, args []string) (backend.Value, error) {
		return backend.Int(int64(st.Publish(args[0], "x"))), nil
	})

func testNotifier(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	n, ok := b.(backend.Notifier)
	if !ok {
		t.Skip("backend is not a Notifier")
	}
	ch := tagged(prefix(t), "chan")
	c1, unsub1, err := n.Subscribe(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	c2, unsub2, err := n.Subscribe(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	pub := open(t, h) // another client publishes from a script
	if _, err := pub.EvalScript(ctx, publishScript, nil, ch); err != nil {
		t.Fatal(err)
	}
	for i, c := range []<-chan struct{}{c1, c2} {
		select {
		case <-c:
		case <-time.After(5 * time.Second):
			t.Fatalf("subscriber %d not notified", i+1)
		}
	}
	unsub1()
	unsub1() // idempotent
	pub.EvalScript(ctx, publishScript, nil, ch)
	select {
	case <-c2:
	case <-time.After(5 * time.Second):
		t.Fatal("remaining subscriber not notified after the other left")
	}
	unsub2()
	// Resubscribing after everyone left works.
	c3, unsub3, err := n.Subscribe(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	defer unsub3()
	pub.EvalScript(ctx, publishScript, nil, ch)
	select {
	case <-c3:
	case <-time.After(5 * time.Second):
		t.Fatal("resubscribed subscriber not notified")
	}
	// Subscribe is bounded by its context: a done one fails at once with
	// ErrNotApplied, also for a channel no one subscribed yet.
	done, cancel := context.WithCancel(ctx)
	cancel()
	start := time.Now()
	if _, _, err := n.Subscribe(done, tagged(prefix(t), "other")); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("Subscribe with a done context: %v, want ErrNotApplied", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Subscribe with a done context took %v", el)
	}
}
