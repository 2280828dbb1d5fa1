package goredis_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	bdriver "github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/goredis"
)

// Close may run while calls are in flight (a guard's renewal or release, a
// wait's clean-up in the background): the Backend is safe for concurrent
// use, Close included. A call that passed the closed check just before
// Close must not register itself (inflight.Add) while Close waits for the
// calls in flight (inflight.Wait): the race detector reports that misuse
// of the WaitGroup (seen in LockFaults/ClusterClient/BoundedWaits, a
// wait's background clean-up against the test's Close).
func TestReview15_CloseWhileCallsInFlight(t *testing.T) {
	mr := miniredis.RunT(t)
	for range 30 {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		b, err := goredis.New(c)
		if err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 200 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					_, err := b.EvalScript(ctx, bdriver.RenewLeaseScript, []string{"k"}, "o", "1000")
					cancel()
					if errors.Is(err, backend.ErrClosed) {
						return
					}
				}
			}()
		}
		close(start)
		time.Sleep(time.Millisecond)
		b.Close()
		wg.Wait()
		c.Close()
	}
}
