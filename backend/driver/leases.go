package driver

import (
	"context"
	"errors"
	"github.com/distkit-go/distkit/backend"
	"strconv"
	"time"
)

// LuaNowMillis is a Lua snippet that defines local now_ms, the server time
// in Unix milliseconds. Scripts that need time start with it.
const LuaNowMillis = `local __t = redis.call('TIME')
local now_ms = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)
`

// HeartbeatScript: KEYS[1] group (sorted set), ARGV[1] member, ARGV[2] ttl
// in ms. Scores the member with its expiry (server now + ttl) and makes the
// group key live at least as long as its longest-lived member. Returns the
// expiry in Unix ms.
var HeartbeatScript = NewScript("heartbeat", LuaNowMillis+`
local ttl = tonumber(ARGV[2])
local exp = now_ms + ttl
redis.call('ZADD', KEYS[1], string.format('%d', exp), ARGV[1])
local pttl = redis.call('PTTL', KEYS[1])
if pttl < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return exp
`, func(st Store, keys, args []string) (backend.Value, error) {
	ttl, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return backend.Value{}, err
	}
	exp := NowMillis(st) + ttl
	if err := st.ZAdd(keys[0], float64(exp), args[0]); err != nil {
		return backend.Value{}, err
	}
	if st.PTTL(keys[0]) < ttl {
		st.PExpire(keys[0], time.Duration(ttl)*time.Millisecond)
	}
	return backend.Int(exp), nil
})

// AcquireLeaseScript: KEYS[1] lease, ARGV[1] owner, ARGV[2] ttl ms. Takes a
// free lease or refreshes one already held by owner; returns 1 when owner
// holds it afterwards, else 0.
var AcquireLeaseScript = NewScript("acquire-lease", `
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`, func(st Store, keys, args []string) (backend.Value, error) {
	ttl, err := ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	cur, ok, err := st.Get(keys[0])
	if err != nil {
		return backend.Value{}, err
	}
	switch {
	case !ok:
		return backend.Int(1), st.Set(keys[0], args[0], ttl)
	case cur == args[0]:
		st.PExpire(keys[0], ttl)
		return backend.Int(1), nil
	}
	return backend.Int(0), nil
})

// RenewLeaseScript: KEYS[1] lease, ARGV[1] owner, ARGV[2] ttl ms. Resets the
// ttl when owner holds the lease; returns 1 if it did, else 0.
var RenewLeaseScript = NewScript("renew-lease", `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`, func(st Store, keys, args []string) (backend.Value, error) {
	ttl, err := ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	cur, ok, err := st.Get(keys[0])
	if err != nil || !ok || cur != args[0] {
		return backend.Int(0), err
	}
	st.PExpire(keys[0], ttl)
	return backend.Int(1), nil
})

// ReleaseLeaseScript: KEYS[1] lease, ARGV[1] owner. Deletes the lease when
// owner holds it; returns 1 if it did, else 0.
var ReleaseLeaseScript = NewScript("release-lease", `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`, func(st Store, keys, args []string) (backend.Value, error) {
	cur, ok, err := st.Get(keys[0])
	if err != nil || !ok || cur != args[0] {
		return backend.Int(0), err
	}
	st.Del(keys[0])
	return backend.Int(1), nil
})

// ParseMillis reads a positive millisecond argument (the inverse of
// Millis) for the Go twins of scripts; anything else is the error Redis
// gives for an invalid expire time.
func ParseMillis(s string) (time.Duration, error) {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return 0, errors.New("ERR invalid expire time " + strconv.Quote(s))
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// ScriptEvaluator is the part of Backend the lease helpers need.
type ScriptEvaluator interface {
	EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error)
}

// Millis formats d as whole milliseconds, at least 1, for script arguments.
func Millis(d time.Duration) string {
	ms := d.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

// EvalHeartbeat implements Backend.Heartbeat with HeartbeatScript; drivers
// may use it.
func EvalHeartbeat(ctx context.Context, e ScriptEvaluator, group, member string, ttl time.Duration) error {
	if ttl <= 0 {
		return NotApplied(errors.New("distkit: heartbeat ttl must be positive"))
	}
	_, err := e.EvalScript(ctx, HeartbeatScript, []string{group}, member, Millis(ttl))
	return err
}

// EvalLease implements the three lease methods of Backend with their
// scripts; ttl is ignored for release. Drivers may use it.
func EvalLease(ctx context.Context, e ScriptEvaluator, s backend.Script, key, owner string, ttl time.Duration) (bool, error) {
	args := []string{owner}
	if s != backend.Script(ReleaseLeaseScript) {
		if ttl <= 0 {
			return false, NotApplied(errors.New("distkit: lease ttl must be positive"))
		}
		args = append(args, Millis(ttl))
	}
	v, err := e.EvalScript(ctx, s, []string{key}, args...)
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n == 1, err
}
