// Package electscript holds the scripts of primitives/election, each Lua
// source with its Go twin; KEYS follow keyspace.Election. The leader hash
// holds the fields id (the term's <owner>:<nonce>), token and value, and
// expires with the term's lease.
package electscript

import (
	"strconv"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/semscript"
)

const luaFmt = `local function fmt(n) return string.format('%d', n) end
`

// Campaign becomes leader when there is none.
// KEYS: leader, fence. ARGV: id, ttl ms, value, channel. Returns the new
// term's token; the current token when id already leads (a retry whose
// first try had an unknown outcome; the lease is extended, the value kept);
// 0 when someone else leads. An election publishes (best effort).
var Campaign = driver.NewScript("election-campaign", driver.LuaNowMillis+luaFmt+`
local cur = redis.call('HGET', KEYS[1], 'id')
if cur then
  if cur == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(redis.call('HGET', KEYS[1], 'token'))
  end
  return 0
end
local token = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, now_ms * 1000)
redis.call('SET', KEYS[2], fmt(token))
redis.call('HSET', KEYS[1], 'id', ARGV[1])
redis.call('HSET', KEYS[1], 'token', fmt(token))
redis.call('HSET', KEYS[1], 'value', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.pcall('PUBLISH', ARGV[4], 'elected')
return token
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	cur, ok, err := st.HGet(keys[0], "id")
	if err != nil {
		return backend.Value{}, err
	}
	if ok {
		if cur != args[0] {
			return backend.Int(0), nil
		}
		st.PExpire(keys[0], ttl)
		tok, _, err := st.HGet(keys[0], "token")
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(tok, 10, 64)
		return backend.Int(n), nil
	}
	token, err := semscript.NextToken(st, keys[1])
	if err != nil {
		return backend.Value{}, err
	}
	for _, f := range [][2]string{{"id", args[0]}, {"token", strconv.FormatInt(token, 10)}, {"value", args[2]}} {
		if err := st.HSet(keys[0], f[0], f[1]); err != nil {
			return backend.Value{}, err
		}
	}
	st.PExpire(keys[0], ttl)
	st.Publish(args[3], "elected")
	return backend.Int(token), nil
})

// Renew: KEYS leader; ARGV id, ttl ms. Extends the term of id; 1, or 0
// when id does not lead.
var Renew = driver.NewScript("election-renew", `
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	if cur, ok, err := st.HGet(keys[0], "id"); err != nil || !ok || cur != args[0] {
		return backend.Int(0), err
	}
	st.PExpire(keys[0], ttl)
	return backend.Int(1), nil
})

// Resign: KEYS leader; ARGV id, channel. Ends the term of id and publishes
// (best effort); 1, or 0 when id does not lead.
var Resign = driver.NewScript("election-resign", `
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], 'resigned')
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	if cur, ok, err := st.HGet(keys[0], "id"); err != nil || !ok || cur != args[0] {
		return backend.Int(0), err
	}
	st.Del(keys[0])
	st.Publish(args[1], "resigned")
	return backend.Int(1), nil
})

// Proclaim: KEYS leader; ARGV id, value, channel. Sets the leader's value
// while id leads and publishes (best effort); 1, or 0 when id does not
// lead.
var Proclaim = driver.NewScript("election-proclaim", `
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'value', ARGV[2])
  redis.pcall('PUBLISH', ARGV[3], 'proclaimed')
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	if cur, ok, err := st.HGet(keys[0], "id"); err != nil || !ok || cur != args[0] {
		return backend.Int(0), err
	}
	if err := st.HSet(keys[0], "value", args[1]); err != nil {
		return backend.Value{}, err
	}
	st.Publish(args[2], "proclaimed")
	return backend.Int(1), nil
})

// Leader: KEYS leader. Returns {token, value} (both strings) of the
// current term, or 0 when there is no leader.
var Leader = driver.NewScript("election-leader", `
local v = redis.call('HMGET', KEYS[1], 'token', 'value')
if not v[1] then return 0 end
return {v[1], v[2] or ''}
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
	tok, ok, err := st.HGet(keys[0], "token")
	if err != nil || !ok {
		return backend.Int(0), err
	}
	val, _, err := st.HGet(keys[0], "value")
	if err != nil {
		return backend.Value{}, err
	}
	return backend.Arr(backend.Str(tok), backend.Str(val)), nil
})

// All returns every script of the election package.
func All() []*driver.Script { return []*driver.Script{Campaign, Renew, Resign, Proclaim, Leader} }
