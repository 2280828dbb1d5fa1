// Package waitsub is a waiter's subscription to a primitive's channel,
// opened beside its attempts so that a slow or failing subscription never
// delays them; used by the lock's, the semaphore's and the election's waits.
//
//	sub := waitsub.Start(wctx, notifier, channel) // after the first refusal
//	defer sub.Close()
//	select {
//	case <-sub.Ready(): sub.SawReady() // subscribed: try again at once
//	case <-sub.Notify():              // something was released
//	case <-timer.C:                   // the polling fallback
//	}
package waitsub

import (
	"context"
	"sync"
	"time"

	"github.com/distkit-go/distkit/backend"
)

// Sub is one subscription. A nil *Sub is valid: its channels are nil
// (never ready), Close does nothing.
type Sub struct {
	cancel  context.CancelFunc
	ready   chan struct{} // closed once subscribed (ch is set before)
	started time.Time

	ch        <-chan struct{}
	seenReady bool

	mu     sync.Mutex
	closed bool
	failed bool
	unsub  func()
}

// Start subscribes to channel under ctx, on a goroutine of its own that
// ends with the subscription attempt. It returns nil when n is nil.
func Start(ctx context.Context, n backend.Notifier, channel string) *Sub {
	if n == nil {
		return nil
	}
	sctx, cancel := context.WithCancel(ctx)
	s := &Sub{cancel: cancel, ready: make(chan struct{}), started: time.Now()}
	go func() {
		ch, unsub, err := n.Subscribe(sctx, channel)
		s.mu.Lock()
		if err != nil || s.closed {
			s.failed = err != nil
			s.mu.Unlock()
			if err == nil {
				unsub()
			}
			return
		}
		s.ch, s.unsub = ch, unsub
		s.mu.Unlock()
		close(s.ready)
	}()
	return s
}

// Ready fires once when the subscription is confirmed.
func (s *Sub) Ready() <-chan struct{} {
	if s == nil || s.seenReady {
		return nil
	}
	return s.ready
}

// SawReady records that the caller saw Ready fire; Notify then delivers.
// Not safe for concurrent use with Ready and Notify (one waiter owns a Sub).
func (s *Sub) SawReady() { s.seenReady = true }

// Notify delivers notifications once the caller saw Ready.
func (s *Sub) Notify() <-chan struct{} {
	if s == nil || !s.seenReady {
		return nil
	}
	return s.ch
}

// Retryable reports whether the subscription failed more than a second ago,
// so that a new one may be started.
func (s *Sub) Retryable() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed && time.Since(s.started) > time.Second
}

// Close ends the subscription, or makes it end as soon as it is made.
func (s *Sub) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	unsub := s.unsub
	s.mu.Unlock()
	s.cancel()
	if unsub != nil {
		unsub()
	}
}
