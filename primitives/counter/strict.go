package counter

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Strict is a counter whose every call is one atomic script and one round
// trip; reads are always current. It is safe for concurrent use.
//
// Group commit (on unless Options.DisableGroupCommit): concurrent Inc,
// Dec, Get, Set and Del calls on one Strict share script calls. A call made
// while the counter is idle is sent at once as its own script, so a lone
// caller waits one round trip, as without group commit; calls that arrive
// while two calls of the counter are in flight are queued and sent
// together, in one script that applies them in arrival order, as soon as
// one of those returns. Every call still takes effect inside its own call
// and returns exactly what it would have returned had it run alone at that
// point, with the same error classes; only the number of round trips
// changes (throughput rises several times under concurrency). A goroutine
// sends the batches while there is a queue and ends when there is none.
type Strict struct {
	b      backend.Backend
	k      keys
	g      *group // nil when group commit is off
	closed atomic.Bool
}

// NewStrict returns a Strict counter over b. It fails with
// distkit.ErrInvalidKey when opts.Prefix is invalid.
func NewStrict(b backend.Backend, opts Options) (*Strict, error) {
	if b == nil {
		return nil, fmt.Errorf("counter: %w: backend is nil", distkit.ErrInvalidOption)
	}
	k, err := newKeys(opts.Prefix)
	if err != nil {
		return nil, err
	}
	c := &Strict{b: b, k: k}
	if !opts.DisableGroupCommit {
		c.g = newGroup(b, k.hashKeys)
	}
	return c, nil
}

// run runs one single-key operation: through the group when group commit
// is on, else as its own script.
func (c *Strict) run(ctx context.Context, op, field, arg string) (backend.Value, error) {
	if c.g != nil {
		return c.g.Do(ctx, gop{op: op, field: field, arg: arg})
	}
	return c.b.EvalScript(ctx, counterscript.Single(op), c.k.hashKeys, counterscript.SingleArgs(op, field, arg)...)
}

// Prefix returns the counter's prefix.
func (c *Strict) Prefix() string { return c.k.prefix }

func (c *Strict) check(key string) error {
	if c.closed.Load() {
		return fmt.Errorf("counter: %w", distkit.ErrClosed)
	}
	return validKey(key)
}

// Inc adds delta to key and returns the new value. It fails with
// distkit.ErrOverflow, changing nothing, when the result would not fit an
// int64.
func (c *Strict) Inc(ctx context.Context, key string, delta int64) (int64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	v, err := c.run(ctx, counterscript.OpInc, keyspace.CounterField(key), strconv.FormatInt(delta, 10))
	if err != nil {
		return 0, wrapErr("inc", key, err)
	}
	return v.Int64()
}

// Dec subtracts delta from key and returns the new value.
func (c *Strict) Dec(ctx context.Context, key string, delta int64) (int64, error) {
	d, err := negate("dec", key, delta)
	if err != nil {
		return 0, err
	}
	return c.Inc(ctx, key, d)
}

// Get returns the value of key, 0 when absent.
func (c *Strict) Get(ctx context.Context, key string) (int64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	v, err := c.run(ctx, counterscript.OpGet, keyspace.CounterField(key), "")
	if err != nil {
		return 0, wrapErr("get", key, err)
	}
	return intValue(v)
}

// Set sets key to v and returns v.
func (c *Strict) Set(ctx context.Context, key string, v int64) (int64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	r, err := c.run(ctx, counterscript.OpSet, keyspace.CounterField(key), strconv.FormatInt(v, 10))
	if err != nil {
		return 0, wrapErr("set", key, err)
	}
	return r.Int64()
}

// Del removes key and returns the value it had (0 when absent).
func (c *Strict) Del(ctx context.Context, key string) (int64, error) {
	if err := c.check(key); err != nil {
		return 0, err
	}
	v, err := c.run(ctx, counterscript.OpDel, keyspace.CounterField(key), "")
	if err != nil {
		return 0, wrapErr("del", key, err)
	}
	return intValue(v)
}

// Clear removes every counter of this prefix in one atomic step.
func (c *Strict) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return fmt.Errorf("counter: %w", distkit.ErrClosed)
	}
	if _, err := c.b.EvalScript(ctx, counterscript.Clear, c.k.hashKeys); err != nil {
		return wrapErr("clear", "", err)
	}
	return nil
}

// IncIf adds delta to key when cmp matches its current value (0 when
// absent) and returns (new, old); otherwise it changes nothing and returns
// (current, current).
func (c *Strict) IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cur, prev int64, err error) {
	return c.oneIf(ctx, "incif", "inc", key, cmp, delta)
}

// SetIf sets key to v when cmp matches its current value and returns
// (v, old); otherwise it changes nothing and returns (current, current).
func (c *Strict) SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cur, prev int64, err error) {
	return c.oneIf(ctx, "setif", "set", key, cmp, v)
}

func (c *Strict) oneIf(ctx context.Context, op, mode, key string, cmp distkit.Comparator, n int64) (int64, int64, error) {
	if err := c.check(key); err != nil {
		return 0, 0, err
	}
	res, err := evalAllIf(ctx, c.b, c.k.hash, op, mode, []Update{{Key: key, Cmp: cmp, Delta: n}})
	if err != nil {
		return 0, 0, err
	}
	return res[0].Cur, res[0].Prev, nil
}

// IncAllIf applies IncIf to every update in input order as one atomic
// script: a later update sees the effect of an earlier one on the same key,
// and an overflow anywhere (distkit.ErrOverflow) leaves every key
// unchanged. An invalid key fails the whole batch before any I/O; an empty
// batch returns an empty result without touching the backend.
func (c *Strict) IncAllIf(ctx context.Context, updates []Update) ([]Result, error) {
	if err := c.check("-"); err != nil {
		return nil, err
	}
	return evalAllIf(ctx, c.b, c.k.hash, "incallif", "inc", updates)
}

// SetAllIf applies SetIf to every update (Delta is the value to set) in
// input order as one atomic script, with the rules of IncAllIf.
func (c *Strict) SetAllIf(ctx context.Context, updates []Update) ([]Result, error) {
	if err := c.check("-"); err != nil {
		return nil, err
	}
	return evalAllIf(ctx, c.b, c.k.hash, "setallif", "set", updates)
}

// GetAll returns the values of keys in order (0 for absent keys) from one
// atomic read.
func (c *Strict) GetAll(ctx context.Context, keys ...string) ([]int64, error) {
	if err := c.check("-"); err != nil {
		return nil, err
	}
	return evalGetAll(ctx, c.b, c.k.hash, keys)
}

// Close marks the counter closed; later calls fail with distkit.ErrClosed.
// It waits for the batches of group commit in flight to return; if ctx
// ends first, it cancels them (callers still waiting get
// distkit.ErrIndeterminate) and waits for their goroutine to end. Strict
// holds nothing to flush, so Close never fails. It does not close the
// backend.
func (c *Strict) Close(ctx context.Context) error {
	c.closed.Store(true)
	if c.g != nil {
		c.g.Close(ctx)
	}
	return nil
}
