package inspect

import (
	"context"
	"fmt"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Counter is one counter of primitives/counter as stored.
type Counter struct {
	Key    string
	Value  int64 // 0 when absent
	Exists bool  // the key has a stored value
}

// counterRead: KEYS[1] the counter hash; ARGV fields. Returns each
// field's value or nil.
var counterRead = driver.NewScript("inspect-counter-read", `
local out = {}
for i, f in ipairs(ARGV) do out[i] = redis.call('HGET', KEYS[1], f) end
return out
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	out := make([]backend.Value, len(args))
	for i, f := range args {
		v, err := goHGet(st, keys[0], f)
		if err != nil {
			return backend.Value{}, err
		}
		out[i] = v
	}
	return backend.Arr(out...), nil
})

// Counters reads keys of prefix's counters in one atomic step.
func Counters(ctx context.Context, b backend.Backend, prefix string, keys []string) ([]Counter, error) {
	v, err := b.EvalScript(ctx, counterRead, []string{keyspace.CounterHash(prefix)}, escapeAll(keys, keyspace.CounterField)...)
	if err != nil {
		return nil, err
	}
	return decodeCounters(keys, v)
}

// decodeCounters decodes counterRead's reply: a counter is a decimal
// int64 in its field of the prefix's hash.
func decodeCounters(keys []string, v backend.Value) ([]Counter, error) {
	r := newReply(v, len(keys))
	out := make([]Counter, len(keys))
	for i, k := range keys {
		out[i].Key = k
		if _, ok := r.str(i, "counter"); ok {
			n, err := decimal(r.a[i], fmt.Sprintf("counter %q", k))
			if err != nil {
				return nil, err
			}
			out[i].Value, out[i].Exists = n, true
		}
	}
	return out, r.err
}

// DecodeCounterEntries decodes field/value pairs read from a prefix's
// counter hash (HSCAN) into counters; a field that is not a counter
// (ErrLayout) is an error naming it.
func DecodeCounterEntries(kv []string) ([]Counter, error) {
	if len(kv)%2 != 0 {
		return nil, layoutErr("counter hash: odd number of elements")
	}
	out := make([]Counter, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, err := keyspace.CounterKey(kv[i])
		if err != nil {
			return nil, layoutErr("counter field %q: %v", kv[i], err)
		}
		n, err := decimal(backend.Str(kv[i+1]), fmt.Sprintf("counter %q", k))
		if err != nil {
			return nil, err
		}
		out = append(out, Counter{Key: k, Value: n, Exists: true})
	}
	return out, nil
}
