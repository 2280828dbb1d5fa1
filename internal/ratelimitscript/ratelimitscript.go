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
// leading zero, as Redis writes integers) and is read digit-count first,
// so a larger one is never turned into an inexact number (an n beyond
// MaxCount "never fits"); a stored value outside the range is reported
// (DKCORRUPT), never used. Sums that could pass 2^53 are written in an
// order that stays exact ((total − limit) + n, not total + n − limit).
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
// (b + nb + 1)·B − 1. B and nb come with every call (a Limit's period cut
// into buckets); the window stores the pair it was last written with
// ("g"), and a call with another pair re-dates what the old pair still
// counts into its current bucket.
package ratelimitscript

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/scriptlib"
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

// Window is every Redis-side operation on one key's window: decisions,
// the read-only peek, the Hybrid sync, the conditional set and reset.
//
// KEYS: counts hash (bucket index → count, "t" → window total, "g" → the
// geometry "B/nb" the window was last written with), index zset (bucket
// indexes, scored by index).
//
// ARGV[1] is the mode; every mode but "reset" then takes B (bucket ms), nb
// (buckets per window) and ttl ms (≥ 1 for the modes that write; ignored
// by "peek"). Then, per mode:
//
//	abs, sup  limit (1..MaxCount: capacity for abs, hard limit for sup),
//	          n (≥ 1, decimal digits, any length).
//	          → {status, total after, retry ms, now ms, release ms}
//	          abs: add n when total + n <= limit (status 1), else status 0
//	          sup: add n (Suppressed counts offered traffic) unless the
//	          window total would pass MaxCount; status 1 while total after
//	          <= limit
//	          An n above limit never fits: status 0, nothing added, retry
//	          RetryNever. On a rejection retry is how long until enough
//	          buckets have left for the same request to fit (> 0), or 0 when
//	          the window does not tell.
//	peek      limit, n: like abs, but writes nothing.
//	          → {total, retry ms for n (0: fits now, RetryNever), now ms, release ms}
//	sync      push (0..MaxCount), room (0..MaxCount), max pairs (0..ProfileMax).
//	          Adds push to the current bucket (saturating the total at
//	          MaxCount).
//	view      like sync, but writes nothing (like peek): push is ignored. → {total after, now ms, b1, c1, b2, c2, …}: the
//	          oldest live buckets with their counts, as many as it takes for
//	          the counts to reach total − room (at least the oldest one when
//	          the window holds anything), at most max pairs. (Hybrid passes
//	          as room what the window can hold before its largest request no
//	          longer fits, so that it can tell a rejected request when enough
//	          has left, and when the window next releases units.)
//	set       push, op, operand (canonical int64), value (0..MaxCount),
//	          history ("keep" or "replace"). Adds push like sync, then
//	          compares the window total with op/operand (the comparators of
//	          package distkit). On a match the total becomes value: "keep"
//	          adds the difference to the current bucket or removes it from
//	          the newest buckets first; "replace" drops every bucket and
//	          puts value in the current one (value 0: the keys are deleted).
//	          → {matched (0/1), total after, total before, now ms}
//	reset     deletes both keys. → how many existed.
//
// release is how long until the oldest bucket holding anything leaves the
// window (0 when the window is empty): when the window next counts less.
//
// A key last written with another geometry (another B or nb, or before
// the geometry was stored) is first re-dated: what its old geometry still
// counts is moved into the current bucket, which never lets more through
// than either geometry would. "peek" reports the window as the next write
// will see it. Arguments are all checked before anything is written; a
// script writes only when the window changed (buckets left, an amount was
// added or set); both keys then live ttl ms from the write that created
// their newest bucket (or wrote them anew): a bucket outlives its last
// moment in the window.
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
if mode == 'reset' then return redis.call('DEL', h, z) end
if mode ~= 'abs' and mode ~= 'sup' and mode ~= 'peek' and mode ~= 'sync' and mode ~= 'view' and mode ~= 'set' then
  return redis.error_reply('DKARG mode')
end
local write = mode ~= 'peek' and mode ~= 'view'
if mode == 'view' then mode = 'sync' end
local B, nb, ttl = int(ARGV[2]), int(ARGV[3]), int(ARGV[4])
if not B or B < 1 or not nb or nb < 1 or not ttl or (write and ttl < 1) then
  return redis.error_reply('DKARG bucket, window or ttl')
end
local limit, n, push, room, maxp, op, operand, value, hist
if mode == 'abs' or mode == 'sup' or mode == 'peek' then
  limit = int(ARGV[5])
  local nd = ARGV[6]
  if not limit or limit < 1 or type(nd) ~= 'string' or string.find(nd, '^%d+$') == nil then
    return redis.error_reply('DKARG limit or n')
  end
  n = int(nd)
  if n == 0 then return redis.error_reply('DKARG n') end
elseif mode == 'sync' then
  push, room, maxp = int(ARGV[5]), int(ARGV[6]), int(ARGV[7])
  if not push or not room or not maxp then return redis.error_reply('DKARG sync') end
else
  push, op, operand, value, hist = int(ARGV[5]), ARGV[6], ARGV[7], int(ARGV[8]), ARGV[9]
  local ok = type(operand) == 'string'
  if ok then -- operand: a canonical int64
    local neg = string.sub(operand, 1, 1) == '-'
    local d = operand
    if neg then d = string.sub(operand, 2) end
    if d == '0' then
      ok = not neg
    elseif string.find(d, '^[1-9]%d*$') == nil or #d > 19 then
      ok = false
    elseif #d == 19 then
      local m = '9223372036854775807'
      if neg then m = '9223372036854775808' end
      ok = d <= m
    end
  end
  local ops = {always = true, eq = true, ne = true, lt = true, gt = true, le = true, ge = true}
  if not push or not ops[op] or not ok or not value or (hist ~= 'keep' and hist ~= 'replace') then
    return redis.error_reply('DKARG set')
  end
end
local cur = math.floor(now_ms / B)
local oldest = math.floor((now_ms + 1) / B) - nb
local curf = fmt(cur)
local geo = ARGV[2] .. '/' .. ARGV[3]
local total = 0
local st = redis.call('HMGET', h, 't', 'g', curf)
local tv, g, cv = st[1], st[2], st[3]
if tv then
  total = int(tv)
  if not total then return redis.error_reply('DKCORRUPT t') end
end
local changed, collapsed, fresh = false, false, false -- fresh: a bucket was created (the keys' ttl is renewed)
if g ~= geo and (g or tv or redis.call('ZCARD', z) > 0) then
  local live = total
  if g then
    local ob, onb = string.match(g, '^(%d+)/(%d+)$')
    ob, onb = int(ob), int(onb)
    if not ob or ob < 1 or not onb or onb < 1 then return redis.error_reply('DKCORRUPT g') end
    live = 0
    for _, b in ipairs(redis.call('ZRANGEBYSCORE', z, fmt(math.floor((now_ms + 1) / ob) - onb), '+inf')) do
      local c = int(redis.call('HGET', h, b) or '0')
      if not c then return redis.error_reply('DKCORRUPT ' .. b) end
      live = math.min(live + c, MAXC)
    end
  end
  total = live
  if write then
    redis.call('DEL', h, z)
    cv, fresh = false, true -- the keys are written anew
    if live > 0 then
      redis.call('HSET', h, curf, fmt(live))
      redis.call('ZADD', z, curf, curf)
      cv = true
    end
    changed = true
  else
    collapsed = true
  end
else
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
  if #old > 0 then
    total = math.max(0, total - gone)
    if write then
      for _, b in ipairs(old) do redis.call('HDEL', h, b) end
      redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. fmt(oldest))
      changed = true
    end
  end
end
local function add(k)
  redis.call('HINCRBY', h, curf, fmt(k))
  if not cv then
    redis.call('ZADD', z, curf, curf)
    cv, fresh = true, true
  end
  total = total + k
  changed = true
end
local function done()
  if changed then
    if g ~= geo then
      redis.call('HSET', h, 't', fmt(total), 'g', geo)
    else
      redis.call('HSET', h, 't', fmt(total))
    end
    if fresh then -- a bucket lives ttl from its first write: past the moment it leaves the window
      redis.call('PEXPIRE', h, ttl)
      redis.call('PEXPIRE', z, ttl)
    end
  end
end
local function leave(b) return (b + nb + 1) * B - 1 - now_ms end
local function live(maxb)
  local out = {}
  if collapsed then
    if total > 0 then out = {cur, total} end
    return out
  end
  local bs
  if maxb then
    bs = redis.call('ZRANGEBYSCORE', z, fmt(oldest), '+inf', 'LIMIT', 0, maxb)
  else
    bs = redis.call('ZRANGEBYSCORE', z, fmt(oldest), '+inf')
  end
  for _, b in ipairs(bs) do
    out[#out + 1] = tonumber(b)
    out[#out + 1] = int(redis.call('HGET', h, b) or '0') or 0
  end
  return out
end
local function retry(need)
  local freed = 0
  local l = live(nil)
  for i = 1, #l, 2 do
    freed = freed + l[i + 1]
    if freed >= need then return leave(l[i]) end
  end
  return 0
end
local function release()
  if total <= 0 then return 0 end
  if collapsed then return leave(cur) end
  local f
  if write then -- what left the window is deleted: the first bucket is the oldest live one
    f = redis.call('ZRANGE', z, 0, 0)
  else
    f = redis.call('ZRANGEBYSCORE', z, fmt(oldest), '+inf', 'LIMIT', 0, 1)
  end
  if #f == 0 then return 0 end
  return leave(tonumber(f[1]))
end
if mode == 'peek' then
  local r = 0
  if not n or n > limit then
    r = -1
  elseif n > limit - total then
    r = retry((total - limit) + n) -- in this order: exact below 2^53
  end
  return {total, r, now_ms, release()}
end
if mode == 'sync' or mode == 'set' then
  if push > 0 then
    local k = math.min(push, MAXC - total)
    if k > 0 then add(k) end
  end
end
if mode == 'sync' then
  done()
  local out = {total, now_ms}
  local cover = total - room
  if total > 0 and cover < 1 then cover = 1 end
  if cover > 0 and maxp > 0 then
    local got = 0
    local l = live(maxp)
    for i = 1, #l, 2 do
      out[#out + 1] = l[i]
      out[#out + 1] = l[i + 1]
      got = got + l[i + 1]
      if got >= cover then break end
    end
  end
  return out
end
if mode == 'set' then`+scriptlib.LuaIntCmp+scriptlib.LuaMatches+`
  local prev = total
  if not matches(op, fmt(prev), operand) then
    done()
    return {0, prev, prev, now_ms}
  end
  if hist == 'replace' then
    redis.call('DEL', h, z)
    total, g, cv = 0, false, false
    changed = false
    if value > 0 then
      redis.call('HSET', h, curf, fmt(value))
      redis.call('ZADD', z, curf, curf)
      total = value
      changed, fresh, cv = true, true, true
    end
  elseif value > total then
    add(value - total)
  elseif value < total then
    local remove = total - value
    local bs = redis.call('ZRANGEBYSCORE', z, fmt(oldest), '+inf')
    for i = #bs, 1, -1 do
      if remove <= 0 then break end
      local b = bs[i]
      local c = int(redis.call('HGET', h, b) or '0') or 0
      local take = math.min(c, remove)
      if take == c then
        redis.call('HDEL', h, b)
        redis.call('ZREM', z, b)
        if b == curf then cv = false end
      else
        redis.call('HSET', h, b, fmt(c - take))
      end
      remove = remove - take
    end
    total = value
    changed = true
  end
  done()
  return {1, total, prev, now_ms}
end
if not n or n > limit then
  done()
  return {0, total, -1, now_ms, release()}
end
local status, added = 0, false
if mode == 'abs' then
  if n <= limit - total then add(n); added = true end
elseif n <= MAXC - total then
  add(n); added = true
end
if added and total <= limit then status = 1 end
done()
local r = 0
if status == 0 then r = retry((total - limit) + n) end -- in this order: exact below 2^53
return {status, total, r, now_ms, release()}
`, window)

// Mode names of Window.
const (
	ModeAbsolute   = "abs"
	ModeSuppressed = "sup"
	ModePeek       = "peek"
	ModeSync       = "sync"
	ModeView       = "view"
	ModeSet        = "set"
	ModeReset      = "reset"
)

// History values of the "set" mode.
const (
	HistoryKeep    = "keep"
	HistoryReplace = "replace"
)

// GeometryField is the counts hash field holding "B/nb".
const GeometryField = keyspace.RateLimitGeometryField

// Geometry is the "B/nb" tag of a window.
func Geometry(bucketMs, nb int64) string {
	return strconv.FormatInt(bucketMs, 10) + "/" + strconv.FormatInt(nb, 10)
}

// ParseGeometry reads a "B/nb" tag; ok is false unless both are counts ≥ 1.
func ParseGeometry(g string) (bucketMs, nb int64, ok bool) {
	b, n, found := strings.Cut(g, "/")
	if !found {
		return 0, 0, false
	}
	bucketMs, ok1 := Int(b)
	nb, ok2 := Int(n)
	if !ok1 || !ok2 || bucketMs < 1 || nb < 1 {
		return 0, 0, false
	}
	return bucketMs, nb, true
}

var setOps = map[string]bool{"always": true, "eq": true, "ne": true, "lt": true, "gt": true, "le": true, "ge": true}

// canonicalInt64 reports whether s is an int64 as strconv.FormatInt writes it.
func canonicalInt64(s string) bool {
	v, err := strconv.ParseInt(s, 10, 64)
	return err == nil && strconv.FormatInt(v, 10) == s
}

// win is one key's window inside the Go twin.
type win struct {
	st          driver.Store
	h, z        string
	B, nb, now  int64
	cur, oldest int64
	curf, geo   string
	total       int64
	changed     bool
	collapsed   bool
	fresh       bool // a bucket was created or the keys written anew: their ttl is renewed
	ttl         time.Duration
	write       bool
}

func (w *win) count(member string) (int64, bool, error) {
	v, ok, err := w.st.HGet(w.h, member)
	if err != nil || !ok {
		return 0, true, err
	}
	c, ok := Int(v)
	return c, ok, nil
}

// load reads the window, re-dating it when its geometry changed and
// dropping (write) or discounting (peek) the buckets that left.
func (w *win) load() error {
	tv, hasT, err := w.st.HGet(w.h, "t")
	if err != nil {
		return err
	}
	if hasT {
		var ok bool
		if w.total, ok = Int(tv); !ok {
			return errors.New("DKCORRUPT t")
		}
	}
	g, hasG, err := w.st.HGet(w.h, GeometryField)
	if err != nil {
		return err
	}
	zn, err := w.st.ZCard(w.z)
	if err != nil {
		return err
	}
	if (!hasG || g != w.geo) && (hasG || hasT || zn > 0) {
		live := w.total
		if hasG {
			ob, onb, ok := ParseGeometry(g)
			if !ok {
				return errors.New("DKCORRUPT g")
			}
			live = 0
			ms, err := w.st.ZRangeByScore(w.z, float64((w.now+1)/ob-onb), math.Inf(1))
			if err != nil {
				return err
			}
			for _, m := range ms {
				c, ok, err := w.count(m.Member)
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("DKCORRUPT " + m.Member)
				}
				live = min(live+c, MaxCount)
			}
		}
		w.total = live
		if !w.write {
			w.collapsed = true
			return nil
		}
		w.st.Del(w.h, w.z)
		w.fresh = true
		if live > 0 {
			if err := w.put(w.curf, w.cur, live); err != nil {
				return err
			}
		}
		w.changed = true
		return nil
	}
	if _, ok, err := w.count(w.curf); err != nil {
		return err
	} else if !ok {
		return errors.New("DKCORRUPT " + w.curf)
	}
	old, err := w.st.ZRangeByScore(w.z, math.Inf(-1), float64(w.oldest)-0.5)
	if err != nil {
		return err
	}
	gone := int64(0)
	for _, m := range old {
		c, ok, err := w.count(m.Member)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("DKCORRUPT " + m.Member)
		}
		gone += c
	}
	if len(old) > 0 {
		w.total = max(0, w.total-gone)
		if w.write {
			for _, m := range old {
				w.st.HDel(w.h, m.Member)
				w.st.ZRem(w.z, m.Member)
			}
			w.changed = true
		}
	}
	return nil
}

func (w *win) put(member string, b, c int64) error {
	if err := w.st.HSet(w.h, member, strconv.FormatInt(c, 10)); err != nil {
		return err
	}
	return w.st.ZAdd(w.z, float64(b), member)
}

func (w *win) add(k int64) error {
	c, _, err := w.count(w.curf)
	if err != nil {
		return err
	}
	if _, ok, _ := w.st.HGet(w.h, w.curf); !ok {
		w.fresh = true
	}
	if err := w.put(w.curf, w.cur, c+k); err != nil {
		return err
	}
	w.total += k
	w.changed = true
	return nil
}

func (w *win) done() error {
	if !w.changed {
		return nil
	}
	if err := w.st.HSet(w.h, "t", strconv.FormatInt(w.total, 10)); err != nil {
		return err
	}
	if err := w.st.HSet(w.h, GeometryField, w.geo); err != nil {
		return err
	}
	if w.fresh { // a bucket lives ttl from its first write: past the moment it leaves the window
		w.st.PExpire(w.h, w.ttl)
		w.st.PExpire(w.z, w.ttl)
	}
	return nil
}

func (w *win) leave(b int64) int64 { return (b+w.nb+1)*w.B - 1 - w.now }

// live lists the live buckets oldest first (at most maxb; all when maxb < 0)
// as bucket, count pairs.
func (w *win) live(maxb int) ([]int64, error) {
	if w.collapsed {
		if w.total > 0 {
			return []int64{w.cur, w.total}, nil
		}
		return nil, nil
	}
	ms, err := w.st.ZRangeByScore(w.z, float64(w.oldest), math.Inf(1))
	if err != nil {
		return nil, err
	}
	var out []int64
	for i, m := range ms {
		if maxb >= 0 && i >= maxb {
			break
		}
		b, _ := strconv.ParseInt(m.Member, 10, 64)
		c, _, err := w.count(m.Member)
		if err != nil {
			return nil, err
		}
		out = append(out, b, c)
	}
	return out, nil
}

func (w *win) retry(need int64) (int64, error) {
	l, err := w.live(-1)
	if err != nil {
		return 0, err
	}
	freed := int64(0)
	for i := 0; i < len(l); i += 2 {
		freed += l[i+1]
		if freed >= need {
			return w.leave(l[i]), nil
		}
	}
	return 0, nil
}

func (w *win) release() (int64, error) {
	if w.total <= 0 {
		return 0, nil
	}
	if w.collapsed {
		return w.leave(w.cur), nil
	}
	ms, err := w.st.ZRangeByScore(w.z, float64(w.oldest), math.Inf(1))
	if err != nil || len(ms) == 0 {
		return 0, err
	}
	b, _ := strconv.ParseInt(ms[0].Member, 10, 64)
	return w.leave(b), nil
}

// window is Window's Go twin.
func window(st driver.Store, keys, args []string) (backend.Value, error) {
	if len(keys) != 2 || len(args) < 1 {
		return backend.Value{}, errors.New("DKARG arity")
	}
	mode := args[0]
	if mode == ModeReset {
		return backend.Int(int64(st.Del(keys[0], keys[1]))), nil
	}
	want := map[string]int{ModeAbsolute: 6, ModeSuppressed: 6, ModePeek: 6, ModeSync: 7, ModeView: 7, ModeSet: 9}[mode]
	if want == 0 {
		return backend.Value{}, errors.New("DKARG mode")
	}
	if len(args) != want {
		return backend.Value{}, errors.New("DKARG arity")
	}
	w := &win{st: st, h: keys[0], z: keys[1], write: mode != ModePeek && mode != ModeView}
	if mode == ModeView {
		mode = ModeSync
	}
	B, okB := Int(args[1])
	nb, okN := Int(args[2])
	ttlMs, okT := Int(args[3])
	if !okB || B < 1 || !okN || nb < 1 || !okT || (w.write && ttlMs < 1) {
		return backend.Value{}, errors.New("DKARG bucket, window or ttl")
	}
	var limit, n, push, room, maxp, value int64
	var nOK bool
	var op, operand, hist string
	switch mode {
	case ModeAbsolute, ModeSuppressed, ModePeek:
		var ok bool
		limit, ok = Int(args[4])
		if !ok || limit < 1 || !digits(args[5]) {
			return backend.Value{}, errors.New("DKARG limit or n")
		}
		n, nOK = Int(args[5])
		if nOK && n == 0 {
			return backend.Value{}, errors.New("DKARG n")
		}
	case ModeSync:
		var ok1, ok2, ok3 bool
		push, ok1 = Int(args[4])
		room, ok2 = Int(args[5])
		maxp, ok3 = Int(args[6])
		if !ok1 || !ok2 || !ok3 {
			return backend.Value{}, errors.New("DKARG sync")
		}
	default:
		var ok1, ok2 bool
		push, ok1 = Int(args[4])
		op, operand, hist = args[5], args[6], args[8]
		value, ok2 = Int(args[7])
		if !ok1 || !setOps[op] || !canonicalInt64(operand) || !ok2 || (hist != HistoryKeep && hist != HistoryReplace) {
			return backend.Value{}, errors.New("DKARG set")
		}
	}
	w.B, w.nb, w.ttl = B, nb, time.Duration(ttlMs)*time.Millisecond
	w.now = driver.NowMillis(st)
	w.cur, w.oldest = w.now/B, (w.now+1)/B-nb
	w.curf, w.geo = strconv.FormatInt(w.cur, 10), args[1]+"/"+args[2]
	if err := w.load(); err != nil {
		return backend.Value{}, err
	}
	switch mode {
	case ModePeek:
		r := int64(0)
		var err error
		switch {
		case !nOK || n > limit:
			r = RetryNever
		case w.total+n > limit:
			r, err = w.retry(w.total + n - limit)
		}
		if err != nil {
			return backend.Value{}, err
		}
		rel, err := w.release()
		if err != nil {
			return backend.Value{}, err
		}
		return backend.Arr(backend.Int(w.total), backend.Int(r), backend.Int(w.now), backend.Int(rel)), nil
	case ModeSync, ModeSet:
		if push > 0 {
			if k := min(push, MaxCount-w.total); k > 0 {
				if err := w.add(k); err != nil {
					return backend.Value{}, err
				}
			}
		}
	}
	switch mode {
	case ModeSync:
		if err := w.done(); err != nil {
			return backend.Value{}, err
		}
		out := []backend.Value{backend.Int(w.total), backend.Int(w.now)}
		cover := w.total - room
		if w.total > 0 && cover < 1 {
			cover = 1
		}
		if cover > 0 && maxp > 0 {
			pairs, err := w.live(int(min(maxp, math.MaxInt32)))
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
	case ModeSet:
		prev := w.total
		opnd, _ := strconv.ParseInt(operand, 10, 64)
		if !scriptlib.OpMatches(op, prev, opnd) {
			if err := w.done(); err != nil {
				return backend.Value{}, err
			}
			return backend.Arr(backend.Int(0), backend.Int(prev), backend.Int(prev), backend.Int(w.now)), nil
		}
		switch {
		case hist == HistoryReplace:
			st.Del(w.h, w.z)
			w.total, w.changed = 0, false
			if value > 0 {
				if err := w.put(w.curf, w.cur, value); err != nil {
					return backend.Value{}, err
				}
				w.total, w.changed, w.fresh = value, true, true
			}
		case value > w.total:
			if err := w.add(value - w.total); err != nil {
				return backend.Value{}, err
			}
		case value < w.total:
			remove := w.total - value
			ms, err := st.ZRangeByScore(w.z, float64(w.oldest), math.Inf(1))
			if err != nil {
				return backend.Value{}, err
			}
			for i := len(ms) - 1; i >= 0 && remove > 0; i-- {
				c, _, err := w.count(ms[i].Member)
				if err != nil {
					return backend.Value{}, err
				}
				take := min(c, remove)
				if take == c {
					st.HDel(w.h, ms[i].Member)
					st.ZRem(w.z, ms[i].Member)
				} else if err := st.HSet(w.h, ms[i].Member, strconv.FormatInt(c-take, 10)); err != nil {
					return backend.Value{}, err
				}
				remove -= take
			}
			w.total, w.changed = value, true
		}
		if err := w.done(); err != nil {
			return backend.Value{}, err
		}
		return backend.Arr(backend.Int(1), backend.Int(w.total), backend.Int(prev), backend.Int(w.now)), nil
	}
	if !nOK || n > limit {
		if err := w.done(); err != nil {
			return backend.Value{}, err
		}
		rel, err := w.release()
		if err != nil {
			return backend.Value{}, err
		}
		return reply(Rejected, w.total, RetryNever, w.now, rel), nil
	}
	added := false
	if (mode == ModeAbsolute && n <= limit-w.total) || (mode == ModeSuppressed && n <= MaxCount-w.total) {
		if err := w.add(n); err != nil {
			return backend.Value{}, err
		}
		added = true
	}
	status := int64(Rejected)
	if added && w.total <= limit {
		status = Admitted
	}
	if err := w.done(); err != nil {
		return backend.Value{}, err
	}
	retry := int64(0)
	if status == Rejected {
		var err error
		if retry, err = w.retry(w.total + n - limit); err != nil {
			return backend.Value{}, err
		}
	}
	rel, err := w.release()
	if err != nil {
		return backend.Value{}, err
	}
	return reply(status, w.total, retry, w.now, rel), nil
}

func reply(status, total, retry, now, release int64) backend.Value {
	return backend.Arr(backend.Int(status), backend.Int(total), backend.Int(retry), backend.Int(now), backend.Int(release))
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
