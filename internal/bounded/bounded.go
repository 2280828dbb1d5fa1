// Package bounded runs a backend call so that its caller gets control back
// soon after the call's context ends, even when the driver does not honour
// the context (rueidis does not while it dials a new connection, for up to
// its dial timeout): the pattern of the lock's detached attempts and
// releases, shared by every primitive whose waits and releases must keep
// their caller's budget.
//
//	v, abandoned, err := bounded.Run(ctx, func() (int64, error) { return eval(ctx) },
//		func(v int64, err error) { undo(v, err) }) // cleans up after an abandoned call
package bounded

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/distkit-go/distkit/backend/driver"
)

// Grace is how long a call may overrun its context before Run stops
// waiting for it: a driver that honours its context returns well within
// it.
const Grace = 20 * time.Millisecond

// ErrAbandoned: a call overran its context and was left to finish on its
// own. Run's error wraps it.
var ErrAbandoned = errors.New("the backend did not return by the call's deadline")

// Run runs f on a goroutine of its own and returns its results, or, when f
// has not returned within Grace of ctx's end, returns abandoned set and an
// error matching distkit.ErrIndeterminate (wrapping ErrAbandoned and ctx's
// error); late, if not nil, is then called with f's results when f returns
// (on f's goroutine), to clean up what the call may have done. f should
// run under ctx (or a context that ends no later), so that a driver that
// honours it returns by itself. A ctx that can never end runs f on the
// caller's goroutine: nothing bounds it anyway.
func Run[T any](ctx context.Context, f func() (T, error), late func(T, error)) (v T, abandoned bool, err error) {
	if ctx.Done() == nil {
		v, err = f()
		return v, false, err
	}
	c := &call[T]{done: make(chan struct{})}
	go func() {
		v, err := f()
		c.mu.Lock()
		c.v, c.err = v, err
		left := c.left
		c.mu.Unlock()
		close(c.done)
		if left && late != nil {
			late(v, err)
		}
	}()
	select {
	case <-c.done:
		return c.v, false, c.err
	case <-ctx.Done():
	}
	grace := time.NewTimer(Grace)
	defer grace.Stop()
	select {
	case <-c.done:
		return c.v, false, c.err
	case <-grace.C:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return c.v, false, c.err
	default:
	}
	c.left = true
	var zero T
	return zero, true, driver.Indeterminate(fmt.Errorf("%w: %w", ErrAbandoned, ctx.Err()))
}

// call is one call running on a goroutine of its own.
type call[T any] struct {
	done chan struct{} // closed when v and err are set
	v    T
	err  error

	mu   sync.Mutex
	left bool // Run stopped waiting for it
}
