package driver

import (
	"context"
	"github.com/distkit-go/distkit/backend"
	"sync"
	"time"
)

// Fanout multiplexes local subscribers onto one server subscription per
// channel. Redis drivers implement Notifier with it: open starts the server
// subscription for a channel (returning once the server confirmed it, or
// an error) and returns the function that ends it; the driver calls Deliver
// for every message it receives.
//
// A server subscription outlives its last local subscriber by Linger, so
// that waiters coming and going (a contended lock) do not pay a SUBSCRIBE
// and an UNSUBSCRIBE round trip each time.
type Fanout struct {
	open   func(ctx context.Context, channel string) (stop func(), err error)
	linger time.Duration

	mu       sync.Mutex
	topics   map[string]*topic
	closed   bool
	expiring sync.WaitGroup
}

type topic struct {
	subs  map[chan struct{}]struct{}
	ready chan struct{} // closed once open returned
	err   error
	stop  func()
	timer *time.Timer // lingering after the last subscriber left
}

// Linger is how long a server subscription stays open without local
// subscribers.
const Linger = 2 * time.Second

// NewFanout returns a Fanout that opens server subscriptions with open.
func NewFanout(open func(ctx context.Context, channel string) (stop func(), err error)) *Fanout {
	return &Fanout{open: open, linger: Linger, topics: map[string]*topic{}}
}

// Subscribe implements Notifier.Subscribe.
func (f *Fanout) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, nil, NotApplied(backend.ErrClosed)
	}
	t := f.topics[channel]
	if t != nil && t.timer != nil {
		if t.timer.Stop() {
			t.timer = nil
			f.expiring.Done() // it will not run
		} else { // expiring right now: start afresh
			delete(f.topics, channel)
			t = nil
		}
	}
	first := t == nil
	if first {
		t = &topic{subs: map[chan struct{}]struct{}{}, ready: make(chan struct{})}
		f.topics[channel] = t
	}
	t.subs[ch] = struct{}{}
	f.mu.Unlock()

	if first {
		stop, err := f.open(ctx, channel)
		f.mu.Lock()
		t.stop, t.err = stop, err
		if err != nil && f.topics[channel] == t {
			delete(f.topics, channel)
		}
		if err == nil && f.closed { // Close ran while opening
			t.err = NotApplied(backend.ErrClosed)
		}
		close(t.ready)
		f.mu.Unlock()
		if err == nil && t.err != nil {
			stop()
		}
	} else {
		select {
		case <-t.ready:
		case <-ctx.Done():
			f.unsubscribe(channel, t, ch)
			return nil, nil, NotApplied(ctx.Err())
		}
	}
	if t.err != nil {
		return nil, nil, t.err
	}
	var once sync.Once
	return ch, func() { once.Do(func() { f.unsubscribe(channel, t, ch) }) }, nil
}

func (f *Fanout) unsubscribe(channel string, t *topic, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(t.subs, ch)
	if len(t.subs) > 0 || f.topics[channel] != t || t.stop == nil || f.closed {
		return
	}
	f.expiring.Add(1)
	t.timer = time.AfterFunc(f.linger, func() {
		defer f.expiring.Done()
		f.mu.Lock()
		var stop func()
		if f.topics[channel] == t && len(t.subs) == 0 {
			delete(f.topics, channel)
			stop = t.stop
		}
		f.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
}

// Deliver wakes every local subscriber of channel (coalescing: a
// subscriber holds at most one pending notification).
func (f *Fanout) Deliver(channel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.topics[channel]; t != nil {
		for ch := range t.subs {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// Close ends every server subscription; later Subscribe calls fail with
// backend.ErrClosed. Subscribers' unsubscribe functions stay safe to call.
func (f *Fanout) Close() {
	f.mu.Lock()
	f.closed = true
	var stops []func()
	for name, t := range f.topics {
		if t.timer != nil && t.timer.Stop() {
			f.expiring.Done() // it will not run
		}
		select {
		case <-t.ready:
			if t.stop != nil {
				stops = append(stops, t.stop)
			}
		default: // still opening; its opener sees closed below
		}
		delete(f.topics, name)
	}
	f.mu.Unlock()
	for _, s := range stops {
		s()
	}
	f.expiring.Wait()
}
