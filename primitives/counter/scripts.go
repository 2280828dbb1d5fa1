package counter

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/distkit-go/distkit/backend"
)

// luaIntCmp compares two canonical decimal int64 strings exactly (Lua
// numbers are doubles and lose precision beyond 2^53).
const luaIntCmp = `
local function icmp(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then if an then return -1 else return 1 end end
  local r
  if #a ~= #b then
    if #a < #b then r = -1 else r = 1 end
  elseif a == b then r = 0
  elseif a < b then r = -1
  else r = 1 end
  if an then r = -r end
  return r
end
`

// luaHIncr defines hincr(hash, field, delta) → new value as a string, or
// nil plus an error reply. It is exact over the whole int64 range and never
// wraps: a server that reports overflow (Redis) and one that wraps silently
// (some emulators) both end with the field unchanged and DKOVERFLOW.
const luaHIncr = luaIntCmp + `
local function hincr(h, f, d)
  local old = redis.call('HGET', h, f)
  local r = redis.pcall('HINCRBY', h, f, d)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow', 1, true) then
      return nil, redis.error_reply('DKOVERFLOW ' .. f)
    end
    return nil, redis.error_reply(r.err)
  end
  local new = redis.call('HGET', h, f)
  if old and d ~= '0' then
    local c = icmp(new, old)
    if (string.sub(d, 1, 1) == '-' and c >= 0) or (string.sub(d, 1, 1) ~= '-' and c <= 0) then
      redis.call('HSET', h, f, old)
      return nil, redis.error_reply('DKOVERFLOW ' .. f)
    end
  end
  return new
end
`

const codeOverflow = "DKOVERFLOW"

// parseStored reads a stored counter value; a non-integer is reported like Redis.
func parseStored(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("ERR hash value is not an integer")
	}
	return n, nil
}

// goHIncr is the Go twin of hincr.
func goHIncr(st backend.Store, h, f string, d int64) (int64, error) {
	var old int64
	s, ok, err := st.HGet(h, f)
	if err != nil {
		return 0, err
	}
	if ok {
		if old, err = parseStored(s); err != nil {
			return 0, err
		}
	}
	if (d > 0 && old > math.MaxInt64-d) || (d < 0 && old < math.MinInt64-d) {
		return 0, errors.New(codeOverflow + " " + f)
	}
	nv := old + d
	return nv, st.HSet(h, f, strconv.FormatInt(nv, 10))
}

// incScript: KEYS[1] hash, ARGV[1] field, ARGV[2] delta. Returns the new
// value: an integer while it is below 2^53 in magnitude (where Lua numbers
// are exact), a decimal string beyond.
//
// The common case is a single HINCRBY: with |delta| < 10^15 a result below
// 2^53 in magnitude cannot be a wrapped-around one (that would lie within
// 10^15 of ±2^63). Otherwise the increment is undone (wrapping arithmetic
// is invertible) and redone on the exact, string-based path.
var incScript = backend.NewScript("counter-inc", luaHIncr+`
local h, f, d = KEYS[1], ARGV[1], ARGV[2]
local neg = string.sub(d, 1, 1) == '-'
if #d <= 15 or (neg and #d == 16) then
  local r = redis.pcall('HINCRBY', h, f, d)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'overflow', 1, true) then
      return redis.error_reply('DKOVERFLOW ' .. f)
    end
    return redis.error_reply(r.err)
  end
  if r > -9007199254740992 and r < 9007199254740992 then return r end
  if d == '0' then return redis.call('HGET', h, f) end
  if neg then
    redis.call('HINCRBY', h, f, string.sub(d, 2))
  else
    redis.call('HINCRBY', h, f, '-' .. d)
  end
end
local v, e = hincr(h, f, d)
if e then return e end
return v
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	d, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return backend.Value{}, err
	}
	nv, err := goHIncr(st, keys[0], args[0], d)
	if err != nil {
		return backend.Value{}, err
	}
	const exact = 1 << 53
	if d > -1e15 && d < 1e15 && nv > -exact && nv < exact {
		return backend.Int(nv), nil
	}
	return backend.Str(strconv.FormatInt(nv, 10)), nil
})

// getScript: KEYS[1] hash, ARGV[1] field. Returns the value or nil.
var getScript = backend.NewScript("counter-get", `
return redis.call('HGET', KEYS[1], ARGV[1])
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	v, ok, err := st.HGet(keys[0], args[0])
	if err != nil || !ok {
		return backend.Nil(), err
	}
	return backend.Str(v), nil
})

// setScript: KEYS[1] hash, ARGV[1] field, ARGV[2] value. Returns the value.
var setScript = backend.NewScript("counter-set", `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	return backend.Str(args[1]), st.HSet(keys[0], args[0], args[1])
})

// delScript: KEYS[1] hash, ARGV[1] field. Deletes the field; returns the
// old value or nil.
var delScript = backend.NewScript("counter-del", `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	v, ok, err := st.HGet(keys[0], args[0])
	if err != nil || !ok {
		return backend.Nil(), err
	}
	_, err = st.HDel(keys[0], args[0])
	return backend.Str(v), err
})

// clearScript: KEYS = every key of the prefix. Deletes them; returns how
// many existed.
var clearScript = backend.NewScript("counter-clear", `
return redis.call('DEL', unpack(KEYS))
`, func(st backend.Store, keys, _ []string) (backend.Value, error) {
	return backend.Int(int64(st.Del(keys...))), nil
})

// luaMatches defines matches(op, cur, operand) for distkit.Comparator ops.
const luaMatches = `
local function matches(op, cur, x)
  if op == 'always' then return true end
  local c = icmp(cur, x)
  if op == 'eq' then return c == 0
  elseif op == 'ne' then return c ~= 0
  elseif op == 'lt' then return c < 0
  elseif op == 'gt' then return c > 0
  elseif op == 'le' then return c <= 0
  elseif op == 'ge' then return c >= 0 end
  return false
end
local function rollback(h, undo)
  for i = #undo, 1, -1 do
    local u = undo[i]
    if u[2] then redis.call('HSET', h, u[1], u[2]) else redis.call('HDEL', h, u[1]) end
  end
end
`

// allIfScript is every conditional operation, single or batch.
// KEYS[1] hash; ARGV[1] 'inc' or 'set'; then groups of four: field, op,
// operand, n (delta or value). Items apply in order, each seeing earlier
// ones; the whole call is all-or-nothing (an overflow rolls back earlier
// items and fails with DKOVERFLOW). Returns {cur1, prev1, cur2, prev2, …}
// as strings.
var allIfScript = backend.NewScript("counter-all-if", luaHIncr+luaMatches+`
local h, inc = KEYS[1], ARGV[1] == 'inc'
local undo, touched, out = {}, {}, {}
for i = 2, #ARGV, 4 do
  local f, op, x, n = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local raw = redis.call('HGET', h, f)
  local cur = raw or '0'
  if matches(op, cur, x) then
    if not touched[f] then
      touched[f] = true
      undo[#undo+1] = {f, raw}
    end
    local v = n
    if inc then
      local e
      v, e = hincr(h, f, n)
      if e then
        rollback(h, undo)
        return e
      end
    else
      redis.call('HSET', h, f, n)
    end
    out[#out+1] = v
  else
    out[#out+1] = cur
  end
  out[#out+1] = cur
end
return out
`, goAllIf)

type undoEntry struct {
	field string
	old   string
	had   bool
}

func goRollback(st backend.Store, h string, undo []undoEntry) {
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		if u.had {
			st.HSet(h, u.field, u.old)
		} else {
			st.HDel(h, u.field)
		}
	}
}

func goAllIf(st backend.Store, keys, args []string) (backend.Value, error) {
	h, inc := keys[0], args[0] == "inc"
	var undo []undoEntry
	touched := map[string]bool{}
	out := make([]backend.Value, 0, (len(args)-1)/2)
	for i := 1; i+3 < len(args); i += 4 {
		f, op, xs, ns := args[i], args[i+1], args[i+2], args[i+3]
		raw, had, err := st.HGet(h, f)
		if err != nil {
			return backend.Value{}, err
		}
		var cur int64
		curS := "0"
		if had {
			if cur, err = parseStored(raw); err != nil {
				return backend.Value{}, err
			}
			curS = raw
		}
		x, _ := strconv.ParseInt(xs, 10, 64)
		n, _ := strconv.ParseInt(ns, 10, 64)
		if !opMatches(op, cur, x) {
			out = append(out, backend.Str(curS), backend.Str(curS))
			continue
		}
		if !touched[f] {
			touched[f] = true
			undo = append(undo, undoEntry{f, raw, had})
		}
		nv := n
		if inc {
			if nv, err = goHIncr(st, h, f, n); err != nil {
				goRollback(st, h, undo)
				return backend.Value{}, err
			}
		} else if err := st.HSet(h, f, ns); err != nil {
			return backend.Value{}, err
		}
		out = append(out, backend.Str(strconv.FormatInt(nv, 10)), backend.Str(curS))
	}
	return backend.Arr(out...), nil
}

// opMatches is the Go twin of matches.
func opMatches(op string, cur, x int64) bool {
	switch op {
	case "always":
		return true
	case "eq":
		return cur == x
	case "ne":
		return cur != x
	case "lt":
		return cur < x
	case "gt":
		return cur > x
	case "le":
		return cur <= x
	case "ge":
		return cur >= x
	}
	return false
}

// getAllScript: KEYS[1] hash, ARGV fields. Returns their values (nil when
// absent).
var getAllScript = backend.NewScript("counter-get-all", `
return redis.call('HMGET', KEYS[1], unpack(ARGV))
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	out := make([]backend.Value, len(args))
	for i, f := range args {
		v, ok, err := st.HGet(keys[0], f)
		if err != nil {
			return backend.Value{}, err
		}
		if ok {
			out[i] = backend.Str(v)
		}
	}
	return backend.Arr(out...), nil
})

// flushScript applies one Lax flush batch exactly once.
// KEYS[1] hash, KEYS[2] the instance's sequence marker; ARGV[1] batch
// sequence number, ARGV[2] marker ttl in ms, then field/delta pairs.
// A batch whose sequence number is not above the marker was applied
// before (a retry after an indeterminate reply) and is not applied again.
// All-or-nothing: an overflow rolls back and fails with DKOVERFLOW <field>.
// Returns {applied (1) or duplicate (0), value1, value2, …}.
var flushScript = backend.NewScript("counter-lax-flush", luaHIncr+luaMatches+`
local h = KEYS[1]
local last = redis.call('GET', KEYS[2])
local applied = 1
if last and tonumber(last) >= tonumber(ARGV[1]) then applied = 0 end
local out = {applied}
if applied == 1 then
  local undo, touched = {}, {}
  for i = 3, #ARGV, 2 do
    local f = ARGV[i]
    if not touched[f] then
      touched[f] = true
      undo[#undo+1] = {f, redis.call('HGET', h, f)}
    end
    local _, e = hincr(h, f, ARGV[i+1])
    if e then
      rollback(h, undo)
      return e
    end
  end
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
end
for i = 3, #ARGV, 2 do
  out[#out+1] = redis.call('HGET', h, ARGV[i]) or '0'
end
return out
`, func(st backend.Store, keys, args []string) (backend.Value, error) {
	h := keys[0]
	seq, _ := strconv.ParseInt(args[0], 10, 64)
	applied := int64(1)
	if last, ok, err := st.Get(keys[1]); err != nil {
		return backend.Value{}, err
	} else if ok {
		if l, _ := strconv.ParseInt(last, 10, 64); l >= seq {
			applied = 0
		}
	}
	if applied == 1 {
		var undo []undoEntry
		touched := map[string]bool{}
		for i := 2; i+1 < len(args); i += 2 {
			f := args[i]
			if !touched[f] {
				touched[f] = true
				old, had, err := st.HGet(h, f)
				if err != nil {
					return backend.Value{}, err
				}
				undo = append(undo, undoEntry{f, old, had})
			}
			d, _ := strconv.ParseInt(args[i+1], 10, 64)
			if _, err := goHIncr(st, h, f, d); err != nil {
				goRollback(st, h, undo)
				return backend.Value{}, err
			}
		}
		ttl, err := parseTTL(args[1])
		if err != nil {
			return backend.Value{}, err
		}
		st.Set(keys[1], args[0], ttl)
	}
	out := []backend.Value{backend.Int(applied)}
	for i := 2; i+1 < len(args); i += 2 {
		v, ok, err := st.HGet(h, args[i])
		if err != nil {
			return backend.Value{}, err
		}
		if !ok {
			v = "0"
		}
		out = append(out, backend.Str(v))
	}
	return backend.Arr(out...), nil
})

func parseTTL(ms string) (time.Duration, error) {
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("ERR invalid expire time")
	}
	return time.Duration(n) * time.Millisecond, nil
}
