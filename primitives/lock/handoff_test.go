package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// queued waits until name has n waiters in its queue.
func queued(t *testing.T, b *memory.Backend, name string, n int) {
	t.Helper()
	testkit.Eventually(t, 5*time.Second, "waiters in line", func() bool {
		prefix, _ := keyspace.Prefix("")
		l, err := inspect.ReadLock(context.Background(), b, prefix, name)
		return err == nil && len(l.Waiters) == n
	})
}

// Waiters get the lock in the order they queued, each from a release
// that hands it over, with rising tokens.
func TestHandoffFIFO(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	opts := lock.Options{RetryInterval: 20 * time.Millisecond}
	holder := testkit.NewMutex(t, b, "fifo", opts)
	g, err := holder.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		i int
		g *lock.Guard
	}
	order := make(chan got, 3)
	for i := range 3 {
		m := testkit.NewMutex(t, b, "fifo", opts)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			g, err := m.Lock(wctx)
			if err != nil {
				t.Error(err)
			}
			order <- got{i, g}
		}()
		queued(t, b, "fifo", i+1)
	}
	last := g.Token()
	for want := range 3 {
		if _, err := g.Release(ctx); err != nil {
			t.Fatal(err)
		}
		x := <-order
		if x.g == nil {
			t.FailNow()
		}
		if x.i != want || x.g.Token() <= last {
			t.Fatalf("acquisition %d went to waiter %d with token %d after %d", want, x.i, x.g.Token(), last)
		}
		g, last = x.g, x.g.Token()
	}
	g.Release(ctx)
}

// A lock handed to a waiter that crashed (queued, never claims) does not
// stay with it: its lease is what was left of the waiter's mark, and the
// next waiter in line gets the lock once it lapsed.
func TestHandoffToCrashedWaiterLapses(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	defer b.Close()
	opts := lock.Options{RetryInterval: 10 * time.Millisecond}
	g, err := testkit.NewMutex(t, b, "crash", opts).TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prefix, _ := keyspace.Prefix("")
	k := keyspace.Lock(prefix, "crash")
	keys := []string{k.Lock, k.Readers, k.WaitingWriter, k.Fence, k.Waiters, k.Queue, k.QueueExpiry}
	if v, err := b.EvalScript(ctx, lockscript.Acquire, keys, "dead:1", "30000", "0", "300"); err != nil || !v.Equal(backend.Int(-1)) {
		t.Fatalf("the crashed waiter's one attempt: %v %v", v, err)
	}
	queued(t, b, "crash", 1)
	done := make(chan *lock.Guard, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // far below the 30 s TTL
		defer cancel()
		g, err := testkit.NewMutex(t, b, "crash", opts).Lock(wctx)
		if err != nil {
			t.Error(err)
		}
		done <- g
	}()
	queued(t, b, "crash", 2)
	if _, err := g.Release(ctx); err != nil { // hands the lock to dead:1
		t.Fatal(err)
	}
	l, err := inspect.ReadLock(ctx, b, prefix, "crash")
	if err != nil || l.Holder == nil || l.Holder.Owner != "dead" || l.Holder.TTL > 300*time.Millisecond {
		t.Fatalf("after the release: %+v %v", l.Holder, err)
	}
	select {
	case g2 := <-done:
		if g2 == nil {
			t.FailNow()
		}
		if g2.Token() <= l.Holder.Token {
			t.Errorf("token %d after the crashed waiter's %d", g2.Token(), l.Holder.Token)
		}
		g2.Release(ctx)
	case <-time.After(8 * time.Second):
		t.Fatal("the lock handed to a crashed waiter stayed stuck")
	}
}
