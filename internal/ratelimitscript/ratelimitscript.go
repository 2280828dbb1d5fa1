// Package ratelimitscript holds the scripts of primitives/ratelimit, each
// Lua source with its Go twin; KEYS follow keyspace.RateLimit. The ratelimit
// package is their only user apart from distkit's own tests and tools that
// load every script (All).
//
// # Numbers
//
// Every count the scripts store or compare is an integer in [0, MaxCount]
// (2^53 − 1), the range in which Lua numbers (doubles) are exact, and the
// scripts check that they are: an amount arrives as a decimal string (no
// leading zero, as Redis writes integers) and is read digit-count first, so a larger one is never turned into an inexact
// number (an n beyond MaxCount "never fits"); a stored value outside the
// range is reported (DKCORRUPT), never used.
//
// # The window
//
// Time is the server's, in ms. A request at now_ms is counted in bucket
// floor(now_ms / B). Bucket b holds admissions made in [b·B, b·B + B − 1]
// and stays in the window while its last millisecond is within W = nb·B of
// now, i.e. while b ≥ floor((now_ms + 1) / B) − nb: up to nb + 1 buckets.
// So every admission is counted for at least W after it was made, and no
// interval (t − W, t], wherever t lies, holds more admissions than the
// limit the admitting calls checked. Bucket b leaves the window at
// (b + nb + 1)·B − 1.
package ratelimitscript

import (
	"errors"
	"math"
	"strconv"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// MaxCount is the largest count a window holds, a limit may be, or an
// amount may be and still fit: 2^53 − 1.
const MaxCount = 1<<53 - 1

// ProfileMax is the most (bucket, count) pairs a sync reply carries.
const ProfileMax = 64

// Reply statuses of the decision modes.
const (
	Rejected = 0
	Admitted = 1 // "sup": at or below the hard limit (the caller applies suppression)
)

// RetryNever is the retry value of a request that can never fit: n above
// the limit.
const RetryNever = -1

// Window is every Redis-side decision and the Hybrid sync.
//
// KEYS: counts hash (bucket index → count, plus "t" = window total), index
// zset (bucket indexes, scored by index).
//
// ARGV of "abs" and "sup": mode, B (bucket ms), nb (buckets per window),
// limit (1..MaxCount: capacity for "abs", hard limit for "sup"), n (≥ 1,
// decimal digits, any length), ttl ms. Returns {status, total after,
// retry ms, now ms}:
//
//	abs: add n when total + n <= limit (status 1), else status 0
//	sup: add n (Suppressed counts offered traffic) unless the window total
//	     would pass MaxCount; status 1 while total after <= limit
//
// An n above limit never fits: status 0, nothing added, retry RetryNever.
// On a rejection retry is how long until enough buckets have left for the
// same request to fit (> 0), or 0 when the window does not tell.
//
// ARGV of "sync": mode, B, nb, push (0..MaxCount), ttl ms, room
// (0..MaxCount), max pairs (0..ProfileMax). Adds push to the current bucket
// (saturating the window total at MaxCount) and returns {total after, now
// ms, b1, c1, b2, c2, …}: when the total exceeds room, the oldest live
// buckets with their counts, as many as it takes for the counts to reach
// total − room, at most max pairs; none otherwise. (Hybrid passes as room
// what the window can hold before its largest request no longer fits, so
// that it can tell a rejected request when enough has left.)
//
// A script writes only when the window changed (buckets left, an amount
// was added); both keys then live ttl ms (W + B) from that write.
var Window = driver.NewScript("ratelimit-window", driver.LuaNowMillis+`
local MAXC = 9007199254740991
local function int(s)
  if type(s) ~= 'string' or #s == 0 or #s > 16 or string.find(s, '^%d+$') == nil or (#s > 1 and string.byte(s, 1) == 48) then return nil end
  local v = tonumber(s)
  if v > MAXC then return nil end
  return v
end
local function fmt(n) return string.format('%d', n) end
local h, z = KEYS[1], KEYS[2]
local mode = ARGV[1]
local B, nb, ttl = int(ARGV[2]), int(ARGV[3]), ARGV[6]
if mode == 'sync' then ttl = ARGV[5] end
if not B or B < 1 or not nb or nb < 1 or not int(ttl) then
  return redis.error_reply('DKARG bucket, window or ttl')
end
local cur = math.floor(now_ms / B)
local oldest = math.floor((now_ms + 1) / B) - nb
local total = 0
local tv = redis.call('HGET', h, 't')
if tv then
  total = int(tv)
  if not total then return redis.error_reply('DKCORRUPT t') end
end
local curf = fmt(cur)
local cv = redis.call('HGET', h, curf)
if cv and not int(cv) then return redis.error_reply('DKCORRUPT ' .. curf) end
local old = redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. fmt(oldest))
local gone = 0
for _, b in ipairs(old) do
  local v = redis.call('HGET', h, b)
  if v then
    local c = int(v)
    if not c then return redis.error_reply('DKCORRUPT ' .. b) end
    gone = gone + c
  end
end
local changed = false
if #old > 0 then
  for _, b in ipairs(old) do redis.call('HDEL', h, b) end
  redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. fmt(oldest))
  total = math.max(0, total - gone)
  changed = true
end
local function add(n)
  redis.call('HINCRBY', h, curf, fmt(n))
  redis.call('ZADD', z, curf, curf)
  total = total + n
  changed = true
end
local function done()
  if changed then
    redis.call('HSET', h, 't', fmt(total))
    redis.call('PEXPIRE', h, ttl)
    redis.call('PEXPIRE', z, ttl)
  end
end
if mode == 'sync' then
  local push, room, maxp = int(ARGV[4]), int(ARGV[6]), int(ARGV[7])
  if not push or not room or not maxp then return redis.error_reply('DKARG sync') end
  if push > 0 then
    local n = math.min(push, MAXC - total)
    if n > 0 then add(n) end
  end
  done()
  local out = {total, now_ms}
  local cover = total - room
  if cover > 0 and maxp > 0 then
    local got = 0
    for _, b in ipairs(redis.call('ZRANGE', z, 0, maxp - 1)) do
      local c = int(redis.call('HGET', h, b) or '0') or 0
      out[#out + 1] = tonumber(b)
      out[#out + 1] = c
      got = got + c
      if got >= cover then break end
    end
  end
  return out
end
local limit, nd = int(ARGV[4]), ARGV[5]
if not limit or limit < 1 or (mode ~= 'abs' and mode ~= 'sup') or type(nd) ~= 'string' or string.find(nd, '^%d+$') == nil then
  return redis.error_reply('DKARG mode, limit or n')
end
local n = int(nd)
if n == 0 then return redis.error_reply('DKARG n') end
if not n or n > limit then
  done()
  return {0, total, -1, now_ms}
end
local status, added = 0, false
if mode == 'abs' then
  if n <= limit - total then add(n); added = true end
else
  if n <= MAXC - total then add(n); added = true end
end
if added and total <= limit then status = 1 end
done()
local retry = 0
if status == 0 then
  local need = total + n - limit
  local freed = 0
  for _, b in ipairs(redis.call('ZRANGE', z, 0, -1)) do
    freed = freed + (int(redis.call('HGET', h, b) or '0') or 0)
    if freed >= need then
      retry = (tonumber(b) + nb + 1) * B - 1 - now_ms
      break
    end
  end
end
return {status, total, retry, now_ms}
`, window)

// window is Window's Go twin.
func window(st driver.Store, keys, args []string) (backend.Value, error) {
	if len(keys) != 2 || len(args) < 1 || (args[0] == "sync" && len(args) != 7) || (args[0] != "sync" && len(args) != 6) {
		return backend.Value{}, errors.New("DKARG arity")
	}
	h, z := keys[0], keys[1]
	mode := args[0]
	B, okB := Int(args[1])
	nb, okN := Int(args[2])
	ttlArg := args[5]
	if mode == "sync" {
		ttlArg = args[4]
	}
	ttlMs, okT := Int(ttlArg)
	if !okB || B < 1 || !okN || nb < 1 || !okT {
		return backend.Value{}, errors.New("DKARG bucket, window or ttl")
	}
	ttl, err := driver.ParseMillis(strconv.FormatInt(ttlMs, 10))
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	cur := now / B
	oldest := (now+1)/B - nb
	total := int64(0)
	if tv, ok, err := st.HGet(h, "t"); err != nil {
		return backend.Value{}, err
	} else if ok {
		if total, ok = Int(tv); !ok {
			return backend.Value{}, errors.New("DKCORRUPT t")
		}
	}
	curf := strconv.FormatInt(cur, 10)
	curv, curOK, err := st.HGet(h, curf)
	if err != nil {
		return backend.Value{}, err
	}
	if _, ok := Int(curv); curOK && !ok {
		return backend.Value{}, errors.New("DKCORRUPT " + curf)
	}
	old, err := st.ZRangeByScore(z, math.Inf(-1), float64(oldest)-0.5)
	if err != nil {
		return backend.Value{}, err
	}
	gone := int64(0)
	for _, m := range old {
		v, ok, err := st.HGet(h, m.Member)
		if err != nil {
			return backend.Value{}, err
		}
		if ok {
			c, ok := Int(v)
			if !ok {
				return backend.Value{}, errors.New("DKCORRUPT " + m.Member)
			}
			gone += c
		}
	}
	changed := false
	if len(old) > 0 {
		for _, m := range old {
			st.HDel(h, m.Member)
			st.ZRem(z, m.Member)
		}
		total = max(0, total-gone)
		changed = true
	}
	add := func(n int64) error {
		c, _ := Int(curv)
		if err := st.HSet(h, curf, strconv.FormatInt(c+n, 10)); err != nil {
			return err
		}
		curv = strconv.FormatInt(c+n, 10)
		if err := st.ZAdd(z, float64(cur), curf); err != nil {
			return err
		}
		total += n
		changed = true
		return nil
	}
	done := func() error {
		if !changed {
			return nil
		}
		if err := st.HSet(h, "t", strconv.FormatInt(total, 10)); err != nil {
			return err
		}
		st.PExpire(h, ttl)
		st.PExpire(z, ttl)
		return nil
	}
	// live lists the live buckets oldest first with their counts.
	live := func(limit int) ([]int64, error) {
		all, err := st.ZRangeByScore(z, math.Inf(-1), math.Inf(1))
		if err != nil {
			return nil, err
		}
		var out []int64
		for i, m := range all {
			if limit >= 0 && i >= limit {
				break
			}
			b, _ := strconv.ParseInt(m.Member, 10, 64)
			v, _, _ := st.HGet(h, m.Member)
			c, _ := Int(v)
			out = append(out, b, c)
		}
		return out, nil
	}
	if mode == "sync" {
		push, ok1 := Int(args[3])
		room, ok2 := Int(args[5])
		maxp, ok3 := Int(args[6])
		if !ok1 || !ok2 || !ok3 {
			return backend.Value{}, errors.New("DKARG sync")
		}
		if push > 0 {
			if n := min(push, MaxCount-total); n > 0 {
				if err := add(n); err != nil {
					return backend.Value{}, err
				}
			}
		}
		if err := done(); err != nil {
			return backend.Value{}, err
		}
		out := []backend.Value{backend.Int(total), backend.Int(now)}
		if cover := total - room; cover > 0 && maxp > 0 {
			pairs, err := live(int(min(maxp, math.MaxInt32)))
			if err != nil {
				return backend.Value{}, err
			}
			got := int64(0)
			for i := 0; i < len(pairs); i += 2 {
				out = append(out, backend.Int(pairs[i]), backend.Int(pairs[i+1]))
				got += pairs[i+1]
				if got >= cover {
					break
				}
			}
		}
		return backend.Arr(out...), nil
	}
	limit, okL := Int(args[3])
	nd := args[4]
	if !okL || limit < 1 || (mode != "abs" && mode != "sup") || !digits(nd) {
		return backend.Value{}, errors.New("DKARG mode, limit or n")
	}
	n, okn := Int(nd)
	if okn && n == 0 {
		return backend.Value{}, errors.New("DKARG n")
	}
	if !okn || n > limit {
		if err := done(); err != nil {
			return backend.Value{}, err
		}
		return reply(Rejected, total, RetryNever, now), nil
	}
	added := false
	if (mode == "abs" && n <= limit-total) || (mode == "sup" && n <= MaxCount-total) {
		if err := add(n); err != nil {
			return backend.Value{}, err
		}
		added = true
	}
	status := int64(Rejected)
	if added && total <= limit {
		status = Admitted
	}
	if err := done(); err != nil {
		return backend.Value{}, err
	}
	retry := int64(0)
	if status == Rejected {
		need := total + n - limit
		pairs, err := live(-1)
		if err != nil {
			return backend.Value{}, err
		}
		freed := int64(0)
		for i := 0; i < len(pairs); i += 2 {
			freed += pairs[i+1]
			if freed >= need {
				retry = (pairs[i]+nb+1)*B - 1 - now
				break
			}
		}
	}
	return reply(status, total, retry, now), nil
}

func reply(status, total, retry, now int64) backend.Value {
	return backend.Arr(backend.Int(status), backend.Int(total), backend.Int(retry), backend.Int(now))
}

// digits reports whether s is a non-empty string of ASCII digits.
func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Int reads a count the way the scripts do: at most 16 decimal digits, no
// sign, no leading zero (Redis' HINCRBY refuses one), at most MaxCount; ok
// is false otherwise.
func Int(s string) (v int64, ok bool) {
	if len(s) > 16 || !digits(s) || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > MaxCount {
		return 0, false
	}
	return v, true
}

// All returns every script of the package, e.g. to SCRIPT LOAD them.
func All() []*driver.Script { return []*driver.Script{Window} }
