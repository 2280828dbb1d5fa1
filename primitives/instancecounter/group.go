package instancecounter

import (
	"context"
	"fmt"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/gcommit"
	"github.com/distkit-go/distkit/internal/icscript"
)

// Group commit (Strict): the operations of one object go out through a
// gcommit.Group (see package gcommit): one made while the object is idle
// is sent at once as its own Op script; those that arrive while two
// script calls of the object are in flight are queued and sent together as
// one icscript.OpBatch call, which gives each the reply its own Op would
// have given at its place. Every caller then does with its reply what it
// did with Op's: records it (the slot keeps the reply of the call that
// executed last: operations of a batch are numbered in batch order), or,
// told this instance is absent (the whole batch is then refused, nothing
// applied), rejoins and retries.

// icop is one operation: Op's ARGV 4 to 8.
type icop struct{ mode, field, op, x, n string }

// sendOp runs o as its own Op script.
func (c *core) sendOp(ctx context.Context, o icop) (backend.Value, error) {
	return c.b.EvalScript(ctx, icscript.Op, c.keys, c.nonce, c.me, c.daArg, o.mode, o.field, o.op, o.x, o.n)
}

// sendBatch runs ops as one OpBatch script and splits its reply into the
// reply each operation's Op would have given.
func (c *core) sendBatch(ctx context.Context, ops []icop) ([]backend.Result, error) {
	args := make([]string, 0, 3+5*len(ops))
	args = append(args, c.nonce, c.me, c.daArg)
	for _, o := range ops {
		args = append(args, o.mode, o.field, o.op, o.x, o.n)
	}
	v, err := c.b.EvalScript(ctx, icscript.OpBatch, c.keys, args...)
	if err != nil {
		return nil, err
	}
	return splitBatch(v, len(ops))
}

// splitBatch splits OpBatch's reply for n operations. An error means the
// reply does not have OpBatch's shape (the script ran: what it did is
// unknown).
func splitBatch(v backend.Value, n int) ([]backend.Result, error) {
	arr, err := v.Array()
	if err != nil || len(arr) == 0 {
		return nil, fmt.Errorf("instancecounter: malformed batch reply %v", v)
	}
	st, err := arr[0].Text()
	if err != nil {
		return nil, fmt.Errorf("instancecounter: malformed batch reply %v", v)
	}
	out := make([]backend.Result, n)
	if st != icscript.StatusOK {
		// Refused as a whole (absent, dup): what each Op would have said.
		if len(arr) != 1 {
			return nil, fmt.Errorf("instancecounter: malformed batch reply %v", v)
		}
		for i := range out {
			out[i].Value = backend.Arr(backend.Str(st))
		}
		return out, nil
	}
	if len(arr) != n+1 {
		return nil, fmt.Errorf("instancecounter: malformed batch reply: %d results for %d operations", len(arr)-1, n)
	}
	for i, e := range arr[1:] {
		sub, err := e.Array()
		if err != nil {
			return nil, fmt.Errorf("instancecounter: malformed batch reply: result %d: %v", i, e)
		}
		if len(sub) == 1 { // the error Op would have raised
			msg, err := sub[0].Text()
			if err != nil {
				return nil, fmt.Errorf("instancecounter: malformed batch reply: result %d: %w", i, err)
			}
			out[i].Err = driver.ClassifyReply(icscript.Op.Name(), msg)
			continue
		}
		out[i].Value = e
	}
	return out, nil
}

// newGroup returns c's group.
func (c *core) newGroup() *gcommit.Group[icop] {
	return gcommit.New(c.sendOp, c.sendBatch, errClosed)
}

// closeGroup ends c's group (its flusher goroutines), waiting at most
// until ctx ends.
func (c *core) closeGroup(ctx context.Context) error {
	if c.grp == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		c.grp.Close(ctx)
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return driver.Indeterminate(fmt.Errorf("instancecounter: close: the backend did not answer the calls in flight: %w", ctx.Err()))
	}
}
