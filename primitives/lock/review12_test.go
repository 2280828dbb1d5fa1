package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// Guard.Release returns within its context even while the guard's
// background renewal waits on a backend that stopped answering (the
// renewal's own bound is TTL/3, far longer than the caller's context).
func TestReview12_ReleaseWithinCtxWhileRenewalHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	m, err := lock.NewMutex(hb, "order:42", lock.Options{TTL: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.TryLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hb.HangOn(func(n string) bool { return n == "RenewLease" })
	hb.WaitEntered(t, "RenewLease") // after TTL/3 = 2 s; it may hang 2 s more
	release := func(ctx context.Context) error { _, err := g.Release(ctx); return err }
	testkit.ReturnsWithin(t, "Guard.Release", 100*time.Millisecond, 900*time.Millisecond, release, func() {})
}

// A writer waiting in RWMutex.Lock returns when its context ends, even
// when the backend stopped answering: cleaning up its waiting-writer mark
// is best effort (the mark expires by itself) and may not hold the caller.
func TestReview12_WriterLockReturnsWithCtxWhileBackendHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	rw, err := lock.NewRWMutex(hb, "doc:7", lock.Options{TTL: 6 * time.Second, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := rw.TryRLock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		hb.HangOn(nil)
		r.Release(context.Background())
	}()
	lockW := func(ctx context.Context) error {
		go func() { // once the writer waits, the backend stops answering
			time.Sleep(50 * time.Millisecond)
			hb.HangOn(func(string) bool { return true })
		}()
		_, err := rw.Lock(ctx)
		return err
	}
	testkit.ReturnsWithin(t, "RWMutex.Lock", 300*time.Millisecond, 700*time.Millisecond, lockW, func() {})
	hb.WaitIdle(t, 5*time.Second) // the cleanup gives up within TTL/3
}
