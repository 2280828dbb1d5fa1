// Package inspect reads, and where an operator asks repairs, the live state
// of distkit's primitives in a backend: what cmd/distkit shows.
//
// Every view is one atomic script (all keys of one counter prefix, lock or
// rate-limited key share a Cluster slot) that reads the stored values
// together with the server's clock, so a snapshot is consistent and its
// TTLs are measured on the server. Each script has its Go twin, so the views
// also work, and are tested, on the memory backend. Key names come only
// from internal/keyspace; the stored values of each primitive are decoded
// by one function per primitive (decodeCounters, decodeLock,
// decodeInstances, decodeInstanceCounters, decodeLimit), which is the one
// place to adapt when a primitive changes what it stores.
//
// Nothing here registers an instance, takes a lease or otherwise changes
// state, except the repair an operator asks for by name: BreakLock (a rate
// limit is reset with the rate limiter's own Reset).
package inspect

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// ErrLayout reports stored data that does not have the shape a primitive
// writes: another program's keys under distkit's names, or a layout from a
// different distkit version.
var ErrLayout = errors.New("inspect: unexpected stored data")

func layoutErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrLayout}, args...)...)
}

// luaZScores appends the members of sorted set k with their scores as
// integers (Unix ms in every distkit zset that has meaningful scores) to
// table t.
const luaZScores = `local function zscores(k, t)
  local z = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
  for i = 1, #z, 2 do
    t[#t + 1] = z[i]
    t[#t + 1] = tonumber(z[i + 1])
  end
  return t
end
`

// goZScores is luaZScores's twin.
func goZScores(st driver.Store, key string) ([]backend.Value, error) {
	ms, err := st.ZRangeByScore(key, -1e300, 1e300)
	if err != nil {
		return nil, err
	}
	out := make([]backend.Value, 0, 2*len(ms))
	for _, m := range ms {
		out = append(out, backend.Str(m.Member), backend.Int(int64(m.Score)))
	}
	return out, nil
}

// goGet returns GET key as Lua sees it (false → Nil).
func goGet(st driver.Store, key string) (backend.Value, error) {
	v, ok, err := st.Get(key)
	if err != nil || !ok {
		return backend.Nil(), err
	}
	return backend.Str(v), nil
}

// goHGet returns HGET key field as Lua sees it.
func goHGet(st driver.Store, key, field string) (backend.Value, error) {
	v, ok, err := st.HGet(key, field)
	if err != nil || !ok {
		return backend.Nil(), err
	}
	return backend.Str(v), nil
}

// goHGetAll returns HGETALL as a flat array, fields sorted (Redis's order
// is unspecified; decoders never rely on it).
func goHGetAll(st driver.Store, key string) ([]backend.Value, error) {
	m, err := st.HGetAll(key)
	if err != nil {
		return nil, err
	}
	fs := make([]string, 0, len(m))
	for f := range m {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	out := make([]backend.Value, 0, 2*len(fs))
	for _, f := range fs {
		out = append(out, backend.Str(f), backend.Str(m[f]))
	}
	return out, nil
}

// reply is a decoding cursor over a script's array reply.
type reply struct {
	a   []backend.Value
	err error
}

func newReply(v backend.Value, n int) *reply {
	a, err := v.Array()
	if err == nil && len(a) != n {
		err = fmt.Errorf("%d elements, want %d", len(a), n)
	}
	if err != nil {
		return &reply{err: layoutErr("reply %v: %v", v, err)}
	}
	return &reply{a: a}
}

func (r *reply) fail(i int, what string, err error) {
	if r.err == nil {
		r.err = layoutErr("reply element %d (%s): %v", i, what, err)
	}
}

// str returns element i as a string and whether it was present (not Nil).
func (r *reply) str(i int, what string) (string, bool) {
	if r.err != nil || r.a[i].IsNil() {
		return "", false
	}
	s, err := r.a[i].Text()
	if err != nil {
		r.fail(i, what, err)
	}
	return s, err == nil
}

func (r *reply) int(i int, what string) int64 {
	if r.err != nil {
		return 0
	}
	n, err := r.a[i].Int64()
	if err != nil {
		r.fail(i, what, err)
	}
	return n
}

func (r *reply) arr(i int, what string) []backend.Value {
	if r.err != nil {
		return nil
	}
	a, err := r.a[i].Array()
	if err != nil {
		r.fail(i, what, err)
	}
	return a
}

// pairs turns a flat [k1 v1 k2 v2 …] array into (key, value) pairs.
func pairs(a []backend.Value, what string) ([][2]backend.Value, error) {
	if len(a)%2 != 0 {
		return nil, layoutErr("%s: odd number of elements", what)
	}
	out := make([][2]backend.Value, 0, len(a)/2)
	for i := 0; i < len(a); i += 2 {
		out = append(out, [2]backend.Value{a[i], a[i+1]})
	}
	return out, nil
}

// decimal parses a stored decimal int64.
func decimal(v backend.Value, what string) (int64, error) {
	s, err := v.Text()
	if err == nil {
		var n int64
		if n, err = strconv.ParseInt(s, 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, layoutErr("%s %v is not a decimal int64", what, v)
}

// serverTime converts the scripts' now_ms.
func serverTime(ms int64) time.Time { return time.UnixMilli(ms) }

// ttl converts a PTTL reply: the key's remaining time, or 0 with ok false
// when it has no expiry (-1) or does not exist (-2).
func ttl(pttl int64) (time.Duration, bool) {
	if pttl < 0 {
		return 0, false
	}
	return time.Duration(pttl) * time.Millisecond, true
}

// escapeAll applies esc (a keyspace field encoder) to every key.
func escapeAll(keys []string, esc func(string) string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = esc(k)
	}
	return out
}
