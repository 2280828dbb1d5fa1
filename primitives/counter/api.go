package counter

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/counterscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Counter is what Strict and Lax both implement, so callers can swap
// guarantees without touching call sites.
type Counter interface {
	// Inc adds delta to key and returns the new value.
	Inc(ctx context.Context, key string, delta int64) (int64, error)
	// Dec subtracts delta from key and returns the new value.
	Dec(ctx context.Context, key string, delta int64) (int64, error)
	// Get returns the value of key, 0 when absent.
	Get(ctx context.Context, key string) (int64, error)
	// Set sets key to v and returns v.
	Set(ctx context.Context, key string, v int64) (int64, error)
	// Del removes key and returns the value it had.
	Del(ctx context.Context, key string) (int64, error)
	// Clear removes every counter of the prefix.
	Clear(ctx context.Context) error
	// IncIf adds delta when cmp matches the current value and returns
	// (new, old); otherwise it changes nothing and returns (cur, cur).
	IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cur, prev int64, err error)
	// SetIf sets v when cmp matches the current value and returns (v, old);
	// otherwise it changes nothing and returns (cur, cur).
	SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cur, prev int64, err error)
	// IncAllIf applies IncIf to every update, in order, as one atomic unit.
	IncAllIf(ctx context.Context, updates []Update) ([]Result, error)
	// SetAllIf applies SetIf to every update, in order, as one atomic unit.
	SetAllIf(ctx context.Context, updates []Update) ([]Result, error)
	// GetAll returns the values of keys, in order.
	GetAll(ctx context.Context, keys ...string) ([]int64, error)
	// Close releases the counter; Lax flushes first.
	Close(ctx context.Context) error
}

var (
	_ Counter = (*Strict)(nil)
	_ Counter = (*Lax)(nil)
)

// Update is one item of IncAllIf or SetAllIf.
type Update struct {
	Key string
	// Cmp is checked against the key's current value, which includes the
	// effect of earlier items of the same batch. The zero value matches
	// always.
	Cmp distkit.Comparator
	// Delta is the amount to add (IncAllIf) or the value to set (SetAllIf).
	Delta int64
}

// Result is the outcome of one Update: Cur is the value afterwards, Prev
// the value before. A failed comparison gives Cur == Prev, unchanged.
type Result struct {
	Key  string
	Cur  int64
	Prev int64
}

// allIfArgs validates updates and encodes them for counterscript.AllIf.
func allIfArgs(mode string, updates []Update) ([]string, error) {
	args := make([]string, 0, 1+4*len(updates))
	args = append(args, mode)
	for i, u := range updates {
		if err := distkit.ValidateKey("key", u.Key); err != nil {
			return nil, fmt.Errorf("counter: update %d: %w", i, err)
		}
		if err := u.Cmp.Validate(); err != nil {
			return nil, fmt.Errorf("counter: update %d (key %q): %w", i, u.Key, err)
		}
		args = append(args, keyspace.CounterField(u.Key), u.Cmp.Op.String(), strconv.FormatInt(u.Cmp.Operand, 10), strconv.FormatInt(u.Delta, 10))
	}
	return args, nil
}

// allIfResults decodes counterscript.AllIf's reply.
func allIfResults(updates []Update, v backend.Value) ([]Result, error) {
	nums, err := v.Int64s()
	if err != nil {
		return nil, err
	}
	if len(nums) != 2*len(updates) {
		return nil, fmt.Errorf("counter: %d values in reply for %d updates", len(nums), len(updates))
	}
	out := make([]Result, len(updates))
	for i, u := range updates {
		out[i] = Result{Key: u.Key, Cur: nums[2*i], Prev: nums[2*i+1]}
	}
	return out, nil
}

// evalAllIf runs one conditional batch on the hash.
func evalAllIf(ctx context.Context, b backend.Backend, hash, op, mode string, updates []Update) ([]Result, error) {
	if len(updates) == 0 {
		return []Result{}, nil
	}
	args, err := allIfArgs(mode, updates)
	if err != nil {
		return nil, err
	}
	v, err := b.EvalScript(ctx, counterscript.AllIf, []string{hash}, args...)
	if err != nil {
		key := ""
		if len(updates) == 1 {
			key = updates[0].Key
		}
		return nil, wrapErr(op, key, err)
	}
	return allIfResults(updates, v)
}

// evalGetAll reads keys from the hash.
func evalGetAll(ctx context.Context, b backend.Backend, hash string, keys []string) ([]int64, error) {
	if len(keys) == 0 {
		return []int64{}, nil
	}
	for i, k := range keys {
		if err := distkit.ValidateKey("key", k); err != nil {
			return nil, fmt.Errorf("counter: getall key %d: %w", i, err)
		}
	}
	fields := make([]string, len(keys))
	for i, k := range keys {
		fields[i] = keyspace.CounterField(k)
	}
	v, err := b.EvalScript(ctx, counterscript.GetAll, []string{hash}, fields...)
	if err != nil {
		return nil, wrapErr("getall", "", err)
	}
	arr, err := v.Array()
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(keys))
	for i, e := range arr {
		if out[i], err = intValue(e); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func negate(op, key string, delta int64) (int64, error) {
	if delta == math.MinInt64 {
		return 0, fmt.Errorf("counter: %s %q by %d: %w", op, key, delta, distkit.ErrOverflow)
	}
	return -delta, nil
}
