package instancecounter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Lax.Close returns within its context even while another call of the
// same Lax (here Flush, with a context that has no deadline) waits on a
// backend that stopped answering.
func TestReview12_LaxCloseWithinCtxWhileFlushHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	l, err := instancecounter.NewLax(hb, instancecounter.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	userCtx, cancelUser := context.WithCancel(context.Background())
	defer cancelUser()
	l.Inc(userCtx, "k", 1)
	hb.HangOn(func(n string) bool { return n == "instancecounter-flush" })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Flush(userCtx)
	}()
	hb.WaitEntered(t, "instancecounter-flush")
	testkit.ReturnsWithin(t, "Lax.Close", 200*time.Millisecond, 2*time.Second, l.Close, cancelUser)
	cancelUser()
	wg.Wait()
}
