package counter

import (
	"context"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/gcommit"
)

// Group commit: Strict's Inc, Dec, Get, Set and Del on one prefix (one
// hash, one hash tag) go out through a gcommit.Group (see package gcommit
// for the mechanism): a call made while the counter is idle is sent at
// once as its own single-operation script; calls that arrive while two are
// in flight are queued and sent together as one counterscript.Batch call.
//
// Each operation takes effect inside its caller's call, at its place in
// the batch, and its result is what its own script would have returned at
// that place: a Strict counter stays linearizable, and every result and
// error class is what one call per operation gives.

// gop is one operation of the group.
type gop struct{ op, field, arg string }

type group = gcommit.Group[gop]

func newGroup(b backend.Backend, keys []string) *group {
	single := func(ctx context.Context, o gop) (backend.Value, error) {
		return b.EvalScript(ctx, counterscript.Single(o.op), keys, counterscript.SingleArgs(o.op, o.field, o.arg)...)
	}
	batch := func(ctx context.Context, ops []gop) ([]backend.Result, error) {
		args := make([]string, 0, 3*len(ops))
		names := make([]string, len(ops))
		for i, o := range ops {
			args = counterscript.BatchArgs(args, o.op, o.field, o.arg)
			names[i] = o.op
		}
		v, err := b.EvalScript(ctx, counterscript.Batch, keys, args...)
		if err != nil {
			return nil, err
		}
		return counterscript.BatchReply(v, names) // an error: the script ran, what it did is unknown (gcommit: ErrIndeterminate)
	}
	return gcommit.New(single, batch, distkit.ErrClosed)
}
