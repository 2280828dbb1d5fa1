// Package scriptlib holds Lua snippets and their Go twins shared by
// distkit's scripts: exact int64 arithmetic and comparison on decimal
// strings (Lua numbers are doubles), comparators and rollback.
package scriptlib

import (
	"errors"
	"math"
	"strconv"

	"github.com/distkit-go/distkit/backend/driver"
)

// CodeOverflow is the error code scripts raise when an int64 would overflow.
const CodeOverflow = "DKOVERFLOW"

// LuaIntCmp defines icmp(a, b), which compares two canonical decimal int64 strings exactly (Lua
// numbers are doubles and lose precision beyond 2^53).
const LuaIntCmp = `
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

// LuaHIncr defines hincr(hash, field, delta) → new value as a string, or
// nil plus an error reply. It is exact over the whole int64 range and never
// wraps: a server that reports overflow (Redis) and one that wraps silently
// (some emulators) both end with the field unchanged and DKOVERFLOW.
const LuaHIncr = LuaIntCmp + `
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

// ParseStored reads a stored counter value; a non-integer is reported like Redis.
func ParseStored(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("ERR hash value is not an integer")
	}
	return n, nil
}

// HIncr is the Go twin of hincr.
func HIncr(st driver.Store, h, f string, d int64) (int64, error) {
	var old int64
	s, ok, err := st.HGet(h, f)
	if err != nil {
		return 0, err
	}
	if ok {
		if old, err = ParseStored(s); err != nil {
			return 0, err
		}
	}
	if (d > 0 && old > math.MaxInt64-d) || (d < 0 && old < math.MinInt64-d) {
		return 0, errors.New(CodeOverflow + " " + f)
	}
	nv := old + d
	return nv, st.HSet(h, f, strconv.FormatInt(nv, 10))
}

// LuaMatches defines matches(op, cur, operand) for distkit.Comparator ops.
const LuaMatches = `
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

// OpMatches is the Go twin of matches.
func OpMatches(op string, cur, x int64) bool {
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

// UndoEntry records a hash field's value before a batch touched it.
type UndoEntry struct {
	Field string
	Old   string
	Had   bool
}

// Rollback is the Go twin of the Lua rollback.
func Rollback(st driver.Store, h string, undo []UndoEntry) {
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		if u.Had {
			st.HSet(h, u.Field, u.Old)
		} else {
			st.HDel(h, u.Field)
		}
	}
}
