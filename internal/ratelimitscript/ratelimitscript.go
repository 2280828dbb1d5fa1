// Package ratelimitscript holds the scripts of primitives/ratelimit, each
// Lua source with its Go twin; KEYS follow keyspace.RateLimit. The ratelimit
// package is their only user apart from distkit's own tests and tools that
// load every script (All).
package ratelimitscript

import (
	"math"
	"strconv"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Window is every Redis-side decision and the Hybrid sync.
// KEYS: counts hash (bucket index → count, plus "t" = window total),
// index zset (bucket indexes). ARGV: mode, bucket ms, buckets per window,
// limit (a float: capacity for "abs", hard limit for "sup"), n, ttl ms.
//
//	abs:  add n when total + n <= limit
//	sup:  always add n (Suppressed counts offered traffic); allowed while
//	      total <= limit; the caller applies the suppression factor
//	push: add n (Hybrid's local increments), allowed = 1
//
// Returns {allowed, total after, retry-after ms (0 when allowed), now ms}.
// Time is the server's: clients' clocks never decide window boundaries.
var Window = driver.NewScript("ratelimit-window", driver.LuaNowMillis+`
local function fmt(n) return string.format('%d', n) end
local mode, B, nb = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, n = tonumber(ARGV[4]), tonumber(ARGV[5])
local cur = math.floor(now_ms / B)
local oldest = cur - nb + 1
local total = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(oldest))
for _, b in ipairs(old) do
  total = total - tonumber(redis.call('HGET', KEYS[1], b) or '0')
  redis.call('HDEL', KEYS[1], b)
end
if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(oldest)) end
local allowed = 1
if mode == 'abs' then
  if total + n > limit then allowed = 0 end
end
if allowed == 1 or mode == 'sup' then
  local f = fmt(cur)
  redis.call('HINCRBY', KEYS[1], f, n)
  redis.call('ZADD', KEYS[2], f, f)
  total = total + n
  if mode == 'sup' and total > limit then allowed = 0 end
end
redis.call('HSET', KEYS[1], 't', fmt(total))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local retry = 0
if allowed == 0 then
  local need = total - limit
  if mode == 'abs' then need = total + n - limit end
  local freed = 0
  retry = -1
  for _, b in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    freed = freed + tonumber(redis.call('HGET', KEYS[1], b) or '0')
    if freed >= need then
      retry = (tonumber(b) + nb) * B - now_ms
      break
    end
  end
end
return {allowed, total, retry, now_ms}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	mode := args[0]
	B, _ := strconv.ParseInt(args[1], 10, 64)
	nb, _ := strconv.ParseInt(args[2], 10, 64)
	limit, _ := strconv.ParseFloat(args[3], 64)
	n, _ := strconv.ParseInt(args[4], 10, 64)
	ttl, err := driver.ParseMillis(args[5])
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	cur := now / B
	oldest := cur - nb + 1
	get := func(f string) (int64, error) {
		v, ok, err := st.HGet(keys[0], f)
		if err != nil || !ok {
			return 0, err
		}
		return strconv.ParseInt(v, 10, 64)
	}
	total, err := get("t")
	if err != nil {
		return backend.Value{}, err
	}
	old, err := st.ZRangeByScore(keys[1], math.Inf(-1), float64(oldest)-0.5)
	if err != nil {
		return backend.Value{}, err
	}
	for _, m := range old {
		c, _ := get(m.Member)
		total -= c
		st.HDel(keys[0], m.Member)
		st.ZRem(keys[1], m.Member)
	}
	allowed := int64(1)
	if mode == "abs" && float64(total+n) > limit {
		allowed = 0
	}
	if allowed == 1 || mode == "sup" {
		f := strconv.FormatInt(cur, 10)
		c, _ := get(f)
		st.HSet(keys[0], f, strconv.FormatInt(c+n, 10))
		st.ZAdd(keys[1], float64(cur), f)
		total += n
		if mode == "sup" && float64(total) > limit {
			allowed = 0
		}
	}
	st.HSet(keys[0], "t", strconv.FormatInt(total, 10))
	st.PExpire(keys[0], ttl)
	st.PExpire(keys[1], ttl)
	retry := int64(0)
	if allowed == 0 {
		need := float64(total) - limit
		if mode == "abs" {
			need = float64(total+n) - limit
		}
		freed := int64(0)
		retry = -1
		all, _ := st.ZRangeByScore(keys[1], math.Inf(-1), math.Inf(1))
		for _, m := range all {
			c, _ := get(m.Member)
			freed += c
			if float64(freed) >= need {
				b, _ := strconv.ParseInt(m.Member, 10, 64)
				retry = (b+nb)*B - now
				break
			}
		}
	}
	return backend.Arr(backend.Int(allowed), backend.Int(total), backend.Int(retry), backend.Int(now)), nil
})

// All returns every script of the package, e.g. to SCRIPT LOAD them.
func All() []*driver.Script { return []*driver.Script{Window} }
