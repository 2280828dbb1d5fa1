package driver

import (
	"context"
	"sync"
	"time"

	"github.com/distkit-go/distkit/backend"
)

// Fanout multiplexes local subscribers onto one server subscription per
// channel. Redis drivers implement Notifier with it: open starts the server
// subscription for a channel (returning once the server confirmed it, or
// an error, or when ctx ends) and returns the function that ends it; the
// driver calls Deliver for every message it receives. open runs on a
// goroutine of the Fanout's under a context of its own, cancelled when
// every subscriber waiting for it gave up (so that the first one giving up
// does not fail the others) or on Close.
//
// The server subscription must survive reconnects: when its connection is
// lost, the driver subscribes again by itself and, once the server
// confirmed it, calls Deliver(channel), because messages published in
// between were lost (a waiter woken by it retries at once).
//
// The operations on one channel's server subscription are strictly
// ordered: a new subscription of a channel is opened only after the
// previous one's stop returned, so that a late UNSUBSCRIBE can never undo
// a newer SUBSCRIBE, and every subscription opened is stopped exactly once
// (at the latest by Close).
//
// A server subscription outlives its last local subscriber by Linger, so
// that waiters coming and going (a contended lock) do not pay a SUBSCRIBE
// and an UNSUBSCRIBE round trip each time.
type Fanout struct {
	open   func(ctx context.Context, channel string) (stop func(), err error)
	linger time.Duration

	mu     sync.Mutex
	topics map[string]*topic
	closed bool
	wg     sync.WaitGroup // openings, linger timers armed and stops they run
}

type topic struct {
	subs  map[chan struct{}]struct{}
	ready chan struct{} // closed once open returned
	err   error
	stop  func()

	timer *time.Timer // lingering after the last subscriber left
	gen   int         // invalidates a linger timer that could not be stopped

	closing bool          // stop is running; the topic leaves the map after it
	ended   chan struct{} // closed when stop returned (closing topics)

	// The server subscription is opened under a context of the topic's
	// own, not the first subscriber's: it is cancelled only when every
	// subscriber waiting for it gave up (abandoned) or on Close, so that a
	// first subscriber giving up does not fail the others.
	cancelOpen context.CancelFunc
	abandoned  bool
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Linger is how long a server subscription stays open without local
// subscribers.
const Linger = 2 * time.Second

// NewFanout returns a Fanout that opens server subscriptions with open.
func NewFanout(open func(ctx context.Context, channel string) (stop func(), err error)) *Fanout {
	return &Fanout{open: open, linger: Linger, topics: map[string]*topic{}}
}

// Subscribe implements Notifier.Subscribe. It waits (within ctx) for a
// lingering subscription of channel that is being ended to end first, and
// for one being opened that every subscriber gave up to end.
func (f *Fanout) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	f.mu.Lock()
	var t *topic
	for {
		if f.closed {
			f.mu.Unlock()
			return nil, nil, NotApplied(backend.ErrClosed)
		}
		t = f.topics[channel]
		var wait chan struct{}
		switch {
		case t == nil:
		case t.closing:
			wait = t.ended
		case t.abandoned && !isClosed(t.ready): // its opening is being cancelled
			wait = t.ready
		}
		if wait == nil {
			break
		}
		f.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, NotApplied(ctx.Err())
		}
		f.mu.Lock()
	}
	if t == nil {
		octx, cancel := context.WithCancel(context.Background())
		t = &topic{subs: map[chan struct{}]struct{}{}, ready: make(chan struct{}), cancelOpen: cancel}
		f.topics[channel] = t
		f.wg.Add(1)
		go f.opening(octx, channel, t)
	}
	f.stopLinger(t)
	t.subs[ch] = struct{}{}
	f.mu.Unlock()

	select {
	case <-t.ready:
	case <-ctx.Done():
		f.unsubscribe(channel, t, ch)
		return nil, nil, NotApplied(ctx.Err())
	}
	if t.err != nil {
		f.unsubscribe(channel, t, ch)
		return nil, nil, t.err
	}
	var once sync.Once
	return ch, func() { once.Do(func() { f.unsubscribe(channel, t, ch) }) }, nil
}

// opening opens t's server subscription under ctx (t's own) and makes
// the outcome known to t's subscribers.
func (f *Fanout) opening(ctx context.Context, channel string, t *topic) {
	defer f.wg.Done()
	stop, err := f.open(ctx, channel)
	t.cancelOpen()
	f.mu.Lock()
	t.stop, t.err = stop, err
	if err == nil && f.closed { // Close ran while opening
		t.err = NotApplied(backend.ErrClosed)
	}
	if t.err != nil {
		if f.topics[channel] == t {
			delete(f.topics, channel)
		}
	} else {
		f.linger0(channel, t) // every subscriber may have left meanwhile
	}
	close(t.ready)
	f.mu.Unlock()
	if err == nil && t.err != nil {
		stop()
	}
}

// stopLinger cancels t's linger timer (f.mu held). A timer that already
// fired finds its generation outdated and does nothing.
func (f *Fanout) stopLinger(t *topic) {
	if t.timer == nil {
		return
	}
	if t.timer.Stop() {
		f.wg.Done() // it will not run
	}
	t.timer = nil
	t.gen++
}

// linger0 arms t's linger timer when t is open and has no subscriber
// (f.mu held).
func (f *Fanout) linger0(channel string, t *topic) {
	if len(t.subs) > 0 || f.topics[channel] != t || t.stop == nil || t.err != nil || f.closed || t.closing || t.timer != nil {
		return
	}
	f.wg.Add(1)
	t.gen++
	gen := t.gen
	t.timer = time.AfterFunc(f.linger, func() { f.expire(channel, t, gen) })
}

func (f *Fanout) unsubscribe(channel string, t *topic, ch chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(t.subs, ch)
	if len(t.subs) == 0 && !isClosed(t.ready) && !t.abandoned {
		t.abandoned = true // nobody waits for it any more
		t.cancelOpen()
	}
	f.linger0(channel, t)
}

// expire ends t's server subscription after its linger, unless a
// subscriber came back. The topic stays in the map, marked closing, until
// stop returned, so that a new subscriber of the channel waits for it.
func (f *Fanout) expire(channel string, t *topic, gen int) {
	defer f.wg.Done()
	f.mu.Lock()
	if t.gen != gen || len(t.subs) > 0 || f.topics[channel] != t || t.closing || f.closed {
		f.mu.Unlock()
		return
	}
	t.timer = nil
	t.closing = true
	t.ended = make(chan struct{})
	stop := t.stop
	f.mu.Unlock()
	stop()
	f.mu.Lock()
	if f.topics[channel] == t {
		delete(f.topics, channel)
	}
	close(t.ended)
	f.mu.Unlock()
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

// Close ends every server subscription and waits for those being ended
// or opened;
// later Subscribe calls fail with backend.ErrClosed. Subscribers'
// unsubscribe functions stay safe to call.
func (f *Fanout) Close() {
	f.mu.Lock()
	f.closed = true
	var stops []func()
	for name, t := range f.topics {
		f.stopLinger(t)
		if t.closing {
			continue // its expire is stopping it (f.wg)
		}
		select {
		case <-t.ready:
			if t.stop != nil && t.err == nil {
				stops = append(stops, t.stop)
			}
		default: // still opening: cancelled; its opener sees closed (f.wg)
			t.cancelOpen()
		}
		delete(f.topics, name)
	}
	f.mu.Unlock()
	for _, s := range stops {
		s()
	}
	f.wg.Wait()
}
