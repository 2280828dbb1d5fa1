package counter

import (
	"errors"
	"math"
	"strconv"

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

var errOverflowCode = errors.New(codeOverflow + " overflow")

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

// incScript: KEYS[1] hash, ARGV[1] field, ARGV[2] delta. Returns the new value.
var incScript = backend.NewScript("counter-inc", luaHIncr+`
local v, e = hincr(KEYS[1], ARGV[1], ARGV[2])
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
