package counter

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/counterscript"
)

// Group commit: Strict's Inc, Dec, Get, Set and Del on one prefix (one
// hash, one hash tag) go out through a group. A call that finds fewer than
// groupMaxInFlight script calls of the group in flight and nobody queued
// is sent at once by its own goroutine, as its own single-operation
// script: the idle path costs what one call per operation costs. Otherwise
// it joins the queue, and when a call in flight returns, everything queued
// (up to groupMaxBatch operations) goes out as one counterscript.Batch
// call, sent by a flusher goroutine that keeps sending while anything is
// queued and then ends. The batch size thus follows the load: about the
// number of callers that arrived during one round trip.
//
// Each operation takes effect inside its caller's call (it is sent after
// the call began and the caller waits for its outcome), at its place in
// the batch, and its result is what its own script would have returned at
// that place: a Strict counter stays linearizable, and every result and
// error class is what one call per operation gives.
const (
	groupMaxInFlight = 2
	groupMaxBatch    = 256
)

// gop is one queued operation.
type gop struct {
	op, field, arg string
	done           chan struct{} // closed once res is set
	res            backend.Result
	state          uint8   // under group.mu
	bt             *gbatch // once sent
}

const (
	opQueued uint8 = iota
	opSent
	opWithdrawn
)

// gbatch is one script call of the group.
type gbatch struct {
	ops     []*gop
	waiting int // callers still waiting (under group.mu)
	ctx     context.Context
	cancel  context.CancelFunc
}

type group struct {
	b    backend.Backend
	keys []string

	mu       sync.Mutex
	queue    []*gop
	inFlight int // script calls of the group in flight, direct ones included
	flushers int // flusher goroutines
	closing  bool
	quiet    chan struct{} // Close waits: closed when nothing is in flight or queued
	gone     chan struct{} // Close waits: closed when no flusher runs

	ctx  context.Context // batches run under it; stop ends them (Close)
	stop context.CancelFunc
}

func newGroup(b backend.Backend, keys []string) *group {
	ctx, stop := context.WithCancel(context.Background())
	return &group{b: b, keys: keys, ctx: ctx, stop: stop}
}

// do runs one operation and returns what its own script returns.
func (g *group) do(ctx context.Context, op, field, arg string) (backend.Value, error) {
	if err := ctx.Err(); err != nil {
		return backend.Value{}, driver.NotApplied(err)
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		return backend.Value{}, driver.NotApplied(errClosed)
	}
	if g.inFlight < groupMaxInFlight && len(g.queue) == 0 {
		g.inFlight++
		g.mu.Unlock()
		v, err := g.b.EvalScript(ctx, counterscript.Single(op), g.keys, counterscript.SingleArgs(op, field, arg)...)
		g.mu.Lock()
		g.inFlight--
		g.dispatchLocked()
		g.signalLocked()
		g.mu.Unlock()
		return v, err
	}
	o := &gop{op: op, field: field, arg: arg, done: make(chan struct{})}
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
func (g *group) dispatchLocked() {
	if bt := g.takeLocked(); bt != nil {
		g.flushers++
		go g.flusher(bt)
	}
}

// signalLocked wakes Close when what it waits for happened.
func (g *group) signalLocked() {
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
func (g *group) takeLocked() *gbatch {
	if g.inFlight >= groupMaxInFlight || len(g.queue) == 0 {
		return nil
	}
	n := min(len(g.queue), groupMaxBatch)
	ops := make([]*gop, n)
	copy(ops, g.queue)
	rest := copy(g.queue, g.queue[n:])
	clear(g.queue[rest:])
	g.queue = g.queue[:rest]
	ctx, cancel := context.WithCancel(g.ctx)
	bt := &gbatch{ops: ops, waiting: n, ctx: ctx, cancel: cancel}
	for _, o := range ops {
		o.state, o.bt = opSent, bt
	}
	g.inFlight++
	return bt
}

// flusher sends bt, then every batch queued meanwhile, and ends when
// nothing is queued (or the calls in flight are enough).
func (g *group) flusher(bt *gbatch) {
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
func (g *group) send(bt *gbatch) {
	defer bt.cancel()
	res := make([]backend.Result, len(bt.ops))
	if err := bt.ctx.Err(); err != nil {
		// Close ended the batches before this one went out: it never will.
		for i := range res {
			res[i].Err = driver.NotApplied(err)
		}
	} else if len(bt.ops) == 1 {
		o := bt.ops[0]
		res[0].Value, res[0].Err = g.b.EvalScript(bt.ctx, counterscript.Single(o.op), g.keys, counterscript.SingleArgs(o.op, o.field, o.arg)...)
	} else {
		args := make([]string, 0, 3*len(bt.ops))
		ops := make([]string, len(bt.ops))
		for i, o := range bt.ops {
			args = append(args, o.op, o.field, o.arg)
			ops[i] = o.op
		}
		v, err := g.b.EvalScript(bt.ctx, counterscript.Batch, g.keys, args...)
		if err == nil {
			var rs []backend.Result
			if rs, err = counterscript.BatchReply(v, ops); err == nil {
				res = rs
			} else {
				err = driver.Indeterminate(err) // the script ran; what it did is unknown
			}
		}
		if err != nil {
			// The batch as a whole failed: not applied, or possibly applied
			// in part (a script error other than the per-operation ones,
			// which the script reports in its reply, means it stopped
			// midway: no operation may claim that error as its own).
			// Every operation shares the batch's class.
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

// close refuses new operations, waits until the operations already made
// have returned or ctx ends, then cancels the batches still in flight
// (their callers, if still waiting, get ErrIndeterminate; queued ones are
// not sent: ErrNotApplied) and waits for the flusher goroutines to end.
func (g *group) close(ctx context.Context) {
	g.mu.Lock()
	g.closing = true
	var quiet chan struct{}
	if g.inFlight > 0 || len(g.queue) > 0 {
		quiet = make(chan struct{})
		g.quiet = quiet
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
	var gone chan struct{}
	if g.flushers > 0 {
		gone = make(chan struct{})
		g.gone = gone
	}
	g.mu.Unlock()
	if gone != nil {
		<-gone
	}
}

var errClosed = distkit.ErrClosed
