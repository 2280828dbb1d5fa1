// Package gcommit is group commit for a primitive's small independent
// scripts on one hash tag: concurrent operations of one object are
// coalesced into one script call. counter.Strict and instancecounter.Strict
// use it.
//
// A call that finds fewer than MaxInFlight script calls of the group in
// flight and nobody queued is sent at once by its own goroutine, as its own
// single-operation script: the idle path costs what one call per operation
// costs. Otherwise it joins the queue, and when a call in flight returns,
// everything queued (up to MaxBatch operations) goes out as one batch
// script call, sent by a flusher goroutine that keeps sending while
// anything is queued and then ends. The batch size thus follows the load:
// about the number of callers that arrived during one round trip.
//
// Each operation takes effect inside its caller's call (it is sent after
// the call began and the caller waits for its outcome), at its place in
// the batch; the batch script must give every operation the result its
// own script would have given at that place, so results and error classes
// are those of one call per operation:
//   - a caller whose context ends while its operation is queued gets
//     ErrNotApplied (it is never sent);
//   - one whose context ends while its batch is in flight gets
//     ErrIndeterminate (the batch is cancelled once nobody waits for it);
//   - a batch that fails as a whole gives every operation ErrNotApplied
//     when nothing was applied, else ErrIndeterminate (a script error
//     other than the per-operation ones, which the batch reports in its
//     reply, means it stopped midway: no operation may claim it).
package gcommit

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Limits of a group.
const (
	MaxInFlight = 2   // script calls of one group in flight
	MaxBatch    = 256 // operations in one batch
)

// Single sends one operation as its own script and returns that script's
// outcome.
type Single[O any] func(ctx context.Context, op O) (backend.Value, error)

// Batch sends ops (at least two) as one script and returns one result per
// operation, in order, each what the operation's own script would have
// given at its place; or an error when the batch failed as a whole.
type Batch[O any] func(ctx context.Context, ops []O) ([]backend.Result, error)

// gop is one queued operation.
type gop[O any] struct {
	op    O
	done  chan struct{} // closed once res is set
	res   backend.Result
	state uint8      // under Group.mu
	bt    *gbatch[O] // once sent
}

const (
	opQueued uint8 = iota
	opSent
	opWithdrawn
)

// gbatch is one script call of the group.
type gbatch[O any] struct {
	ops     []*gop[O]
	waiting int // callers still waiting (under Group.mu)
	ctx     context.Context
	cancel  context.CancelFunc
}

// Group coalesces the operations of one object. It is safe for concurrent
// use.
type Group[O any] struct {
	single Single[O]
	batch  Batch[O]
	closed error // returned (as ErrNotApplied) to calls after Close began

	mu       sync.Mutex
	queue    []*gop[O]
	inFlight int // script calls of the group in flight, direct ones included
	flushers int // flusher goroutines
	closing  bool
	quiet    chan struct{} // Close waits: closed when nothing is in flight or queued
	gone     chan struct{} // Close waits: closed when no flusher runs

	ctx  context.Context // batches run under it; stop ends them (Close)
	stop context.CancelFunc
}

// New returns a group sending through single and batch; closed is the
// error (wrapped in ErrNotApplied) of calls made after Close began.
func New[O any](single Single[O], batch Batch[O], closed error) *Group[O] {
	ctx, stop := context.WithCancel(context.Background())
	return &Group[O]{single: single, batch: batch, closed: closed, ctx: ctx, stop: stop}
}

// Queued reports how many operations wait in the queue.
func (g *Group[O]) Queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// Do runs one operation and returns what its own script returns.
func (g *Group[O]) Do(ctx context.Context, op O) (backend.Value, error) {
	if err := ctx.Err(); err != nil {
		return backend.Value{}, driver.NotApplied(err)
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return backend.Value{}, driver.NotApplied(g.closed)
	}
	if g.inFlight < MaxInFlight && len(g.queue) == 0 {
		g.inFlight++
		g.mu.Unlock()
		v, err := g.single(ctx, op)
		g.mu.Lock()
		g.inFlight--
		g.dispatchLocked()
		g.signalLocked()
		g.mu.Unlock()
		return v, err
	}
	o := &gop[O]{op: op, done: make(chan struct{})}
	g.queue = append(g.queue, o)
	g.mu.Unlock()
	select {
	case <-o.done:
		return o.res.Value, o.res.Err
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch o.state {
	case opQueued:
		// Not sent, and now never will be.
		o.state = opWithdrawn
		if i := slices.Index(g.queue, o); i >= 0 {
			g.queue = slices.Delete(g.queue, i, i+1)
		}
		g.signalLocked()
		return backend.Value{}, driver.NotApplied(ctx.Err())
	default:
		select {
		case <-o.done:
			return o.res.Value, o.res.Err
		default:
		}
		if o.bt.waiting--; o.bt.waiting == 0 {
			o.bt.cancel() // nobody waits for this batch any more
		}
		return backend.Value{}, driver.Indeterminate(ctx.Err())
	}
}

// dispatchLocked starts a flusher when something is queued and a call may
// go out.
func (g *Group[O]) dispatchLocked() {
	if bt := g.takeLocked(); bt != nil {
		g.flushers++
		go g.flusher(bt)
	}
}

// signalLocked wakes Close when what it waits for happened.
func (g *Group[O]) signalLocked() {
	if g.quiet != nil && g.inFlight == 0 && len(g.queue) == 0 {
		close(g.quiet)
		g.quiet = nil
	}
	if g.gone != nil && g.flushers == 0 {
		close(g.gone)
		g.gone = nil
	}
}

// takeLocked takes the next batch off the queue, or nil.
func (g *Group[O]) takeLocked() *gbatch[O] {
	if g.inFlight >= MaxInFlight || len(g.queue) == 0 {
		return nil
	}
	n := min(len(g.queue), MaxBatch)
	ops := make([]*gop[O], n)
	copy(ops, g.queue)
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	ctx, cancel := context.WithCancel(g.ctx)
	bt := &gbatch[O]{ops: ops, waiting: n, ctx: ctx, cancel: cancel}
	for _, o := range ops {
		o.state, o.bt = opSent, bt
	}
	g.inFlight++
	return bt
}

// flusher sends bt, then every batch queued meanwhile, and ends when
// nothing is queued (or the calls in flight are enough).
func (g *Group[O]) flusher(bt *gbatch[O]) {
	for bt != nil {
		g.send(bt)
		g.mu.Lock()
		g.inFlight--
		if bt = g.takeLocked(); bt == nil {
			g.flushers--
		}
		g.signalLocked()
		g.mu.Unlock()
	}
}

// send runs one batch and hands every operation its own outcome.
func (g *Group[O]) send(bt *gbatch[O]) {
	defer bt.cancel()
	res := make([]backend.Result, len(bt.ops))
	if err := bt.ctx.Err(); err != nil {
		// Close ended the batches before this one went out: it never will.
		for i := range res {
			res[i].Err = driver.NotApplied(err)
		}
	} else if len(bt.ops) == 1 {
		res[0].Value, res[0].Err = g.single(bt.ctx, bt.ops[0].op)
	} else {
		ops := make([]O, len(bt.ops))
		for i, o := range bt.ops {
			ops[i] = o.op
		}
		rs, err := g.batch(bt.ctx, ops)
		if err == nil && len(rs) != len(ops) {
			err = driver.Indeterminate(errors.New("gcommit: a batch returned a result count that does not match its operations"))
		}
		if err == nil {
			res = rs
		} else {
			// The batch as a whole failed: not applied, or possibly applied
			// in part. Every operation shares the batch's class.
			switch {
			case errors.Is(err, backend.ErrNotApplied), errors.Is(err, backend.ErrIndeterminate):
			case errors.Is(err, backend.ErrScript):
				err = driver.Indeterminate(errors.New(err.Error()))
			default:
				err = driver.Indeterminate(err)
			}
			for i := range res {
				res[i].Err = err
			}
		}
	}
	for i, o := range bt.ops {
		o.res = res[i]
		close(o.done)
	}
}

// Close refuses new operations, waits until the operations already made
// have returned or ctx ends, then cancels the batches still in flight
// (their callers, if still waiting, get ErrIndeterminate; queued ones are
// not sent: ErrNotApplied) and waits for the flusher goroutines to end.
func (g *Group[O]) Close(ctx context.Context) {
	g.mu.Lock()
	g.closing = true
	var quiet chan struct{}
	if g.inFlight > 0 || len(g.queue) > 0 {
		if g.quiet == nil { // a concurrent Close may wait already: share its channel
			g.quiet = make(chan struct{})
		}
		quiet = g.quiet
	}
	g.mu.Unlock()
	if quiet != nil {
		select {
		case <-quiet:
		case <-ctx.Done():
		}
	}
	g.stop()
	g.mu.Lock()
	// Calls still queued are never sent: settle them now, since the calls
	// in flight they wait behind may be direct ones (no flusher to take
	// them off the queue) that last as long as their callers' contexts.
	for _, o := range g.queue {
		o.state = opWithdrawn
		o.res = backend.Result{Err: driver.NotApplied(g.closed)}
		close(o.done)
	}
	clear(g.queue)
	g.queue = g.queue[:0]
	var gone chan struct{}
	if g.flushers > 0 {
		if g.gone == nil {
			g.gone = make(chan struct{})
		}
		gone = g.gone
	}
	g.mu.Unlock()
	if gone != nil {
		<-gone
	}
}
