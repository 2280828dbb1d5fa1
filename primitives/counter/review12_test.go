package counter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// Lax.Close returns within its context even while another call of the
// same Lax (here Set, with a context that has no deadline) waits on a
// backend that stopped answering.
func TestReview12_LaxCloseWithinCtxWhileCallHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	l, err := counter.NewLax(hb, counter.Options{AllowedLag: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	userCtx, cancelUser := context.WithCancel(context.Background())
	defer cancelUser()
	hb.HangOn(func(n string) bool { return n == "counter-set" })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Set(userCtx, "k", 1)
	}()
	hb.WaitEntered(t, "counter-set")
	testkit.ReturnsWithin(t, "Lax.Close", 200*time.Millisecond, 2*time.Second, l.Close, cancelUser)
	cancelUser()
	wg.Wait()
}
