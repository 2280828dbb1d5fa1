package ratelimit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Hybrid.Close returns within its context even while a decision (the
// first one for a new key reads the global count, here with a context that
// has no deadline) waits on a backend that stopped answering.
func TestReview12_HybridCloseWithinCtxWhileDecisionHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	h, err := ratelimit.NewHybrid(hb, ratelimit.Options{SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	userCtx, cancelUser := context.WithCancel(context.Background())
	defer cancelUser()
	if _, err := h.Absolute().Allow(userCtx, "::1", ratelimit.PerSecond(10)); err != nil { // an active key
		t.Fatal(err)
	}
	hb.HangOn(func(n string) bool { return n == "ratelimit-window" })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.Absolute().Allow(userCtx, "2001:db8::7", ratelimit.PerSecond(10))
	}()
	hb.WaitEntered(t, "ratelimit-window")
	testkit.ReturnsWithin(t, "Hybrid.Close", 200*time.Millisecond, 2*time.Second, h.Close, cancelUser)
	cancelUser()
	wg.Wait()
}
