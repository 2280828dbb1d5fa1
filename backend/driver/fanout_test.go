package driver

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeServer models a Redis server's subscriptions of one connection:
// SUBSCRIBE sets a channel, UNSUBSCRIBE clears it, whoever sent them.
type fakeServer struct {
	mu     sync.Mutex
	subbed map[string]bool
	opens  int
	stops  int
	rtt    time.Duration
}

func (s *fakeServer) open(_ context.Context, ch string) (func(), error) {
	time.Sleep(s.rtt)
	s.mu.Lock()
	s.subbed[ch] = true
	s.opens++
	s.mu.Unlock()
	return func() {
		time.Sleep(s.rtt) // the UNSUBSCRIBE's round trip
		s.mu.Lock()
		s.subbed[ch] = false
		s.stops++
		s.mu.Unlock()
	}, nil
}

func (s *fakeServer) subscribed(ch string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subbed[ch]
}

// TestFanoutOrdersSubscriptions: a subscriber arriving while the lingering
// server subscription of its channel is being ended must end up subscribed
// on the server (the UNSUBSCRIBE may not overtake its SUBSCRIBE), and every
// server subscription opened is ended exactly once (none leaks).
func TestFanoutOrdersSubscriptions(t *testing.T) {
	srv := &fakeServer{subbed: map[string]bool{}, rtt: time.Millisecond}
	f := NewFanout(srv.open)
	f.linger = 2 * time.Millisecond
	ctx := context.Background()
	lost := 0
	for i := range 300 {
		_, u1, err := f.Subscribe(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		u1()
		time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond) // around the linger's end
		ch2, u2, err := f.Subscribe(ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond) // a late UNSUBSCRIBE has landed by now
		if !srv.subscribed("c") {
			lost++
			if lost == 1 {
				t.Errorf("round %d: a local subscriber is registered but the server is not subscribed: its notifications are lost", i)
			}
		} else {
			f.Deliver("c")
			select {
			case <-ch2:
			default:
				t.Fatalf("round %d: delivery to a subscriber failed", i)
			}
		}
		u2()
	}
	f.Close()
	if lost > 0 {
		t.Errorf("%d of 300 rounds lost their server subscription", lost)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.opens != srv.stops {
		t.Errorf("%d server subscriptions opened, %d ended: %d leaked", srv.opens, srv.stops, srv.opens-srv.stops)
	}
	for ch, on := range srv.subbed {
		if on {
			t.Errorf("channel %q still subscribed on the server after Close", ch)
		}
	}
}
