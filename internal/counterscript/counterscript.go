// Package counterscript holds the scripts of primitives/counter, each Lua
// source with its Go twin. The counter package is their only user apart
// from distkit's own tests and benchmarks, which is why they live here and
// not in the counter package's API.
package counterscript

import (
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// CodeOverflow is the error code a script raises when an int64 would
// overflow; the message goes on with the field (Inc, AllIf). Flush does not
// raise it: it reports a refused pair as "!DKOVERFLOW" in its reply.
const CodeOverflow = scriptlib.CodeOverflow

// Inc: KEYS[1] hash, ARGV[1] field, ARGV[2] delta. Returns the new
// value: an integer while it is below 2^53 in magnitude (where Lua numbers
// are exact), a decimal string beyond.
//
// The common case is a single HINCRBY: with |delta| < 10^15 a result below
// 2^53 in magnitude cannot be a wrapped-around one (that would lie within
// 10^15 of ±2^63). Otherwise the increment is undone (wrapping arithmetic
// is invertible) and redone on the exact, string-based path.
var Inc = driver.NewScript("counter-inc", scriptlib.LuaHIncr+`
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
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	d, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return backend.Value{}, err
	}
	nv, err := scriptlib.HIncr(st, keys[0], args[0], d)
	if err != nil {
		return backend.Value{}, err
	}
	const exact = 1 << 53
	if d > -1e15 && d < 1e15 && nv > -exact && nv < exact {
		return backend.Int(nv), nil
	}
	return backend.Str(strconv.FormatInt(nv, 10)), nil
})

// Get: KEYS[1] hash, ARGV[1] field. Returns the value or nil.
var Get = driver.NewScript("counter-get", `
return redis.call('HGET', KEYS[1], ARGV[1])
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	v, ok, err := st.HGet(keys[0], args[0])
	if err != nil || !ok {
		return backend.Nil(), err
	}
	return backend.Str(v), nil
})

// Set: KEYS[1] hash, ARGV[1] field, ARGV[2] value. Returns the value.
var Set = driver.NewScript("counter-set", `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return ARGV[2]
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	return backend.Str(args[1]), st.HSet(keys[0], args[0], args[1])
})

// Del: KEYS[1] hash, ARGV[1] field. Deletes the field; returns the
// old value or nil.
var Del = driver.NewScript("counter-del", `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	v, ok, err := st.HGet(keys[0], args[0])
	if err != nil || !ok {
		return backend.Nil(), err
	}
	_, err = st.HDel(keys[0], args[0])
	return backend.Str(v), err
})

// Clear: KEYS = every key of the prefix. Deletes them; returns how
// many existed.
var Clear = driver.NewScript("counter-clear", `
return redis.call('DEL', unpack(KEYS))
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
	return backend.Int(int64(st.Del(keys...))), nil
})

// AllIf is every conditional operation, single or batch.
// KEYS[1] hash; ARGV[1] 'inc' or 'set'; then groups of four: field, op,
// operand, n (delta or value). Items apply in order, each seeing earlier
// ones; the whole call is all-or-nothing (an overflow rolls back earlier
// items and fails with DKOVERFLOW). Returns {cur1, prev1, cur2, prev2, …}
// as strings.
var AllIf = driver.NewScript("counter-all-if", scriptlib.LuaHIncr+scriptlib.LuaMatches+`
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

func goAllIf(st driver.Store, keys, args []string) (backend.Value, error) {
	h, inc := keys[0], args[0] == "inc"
	var undo []scriptlib.UndoEntry
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
			if cur, err = scriptlib.ParseStored(raw); err != nil {
				return backend.Value{}, err
			}
			curS = raw
		}
		x, _ := strconv.ParseInt(xs, 10, 64)
		n, _ := strconv.ParseInt(ns, 10, 64)
		if !scriptlib.OpMatches(op, cur, x) {
			out = append(out, backend.Str(curS), backend.Str(curS))
			continue
		}
		if !touched[f] {
			touched[f] = true
			undo = append(undo, scriptlib.UndoEntry{Field: f, Old: raw, Had: had})
		}
		nv := n
		if inc {
			if nv, err = scriptlib.HIncr(st, h, f, n); err != nil {
				scriptlib.Rollback(st, h, undo)
				return backend.Value{}, err
			}
		} else if err := st.HSet(h, f, ns); err != nil {
			return backend.Value{}, err
		}
		out = append(out, backend.Str(strconv.FormatInt(nv, 10)), backend.Str(curS))
	}
	return backend.Arr(out...), nil
}

// GetAll: KEYS[1] hash, ARGV fields. Returns their values (nil when
// absent).
var GetAll = driver.NewScript("counter-get-all", `
return redis.call('HMGET', KEYS[1], unpack(ARGV))
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
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

// Flush applies one Lax flush batch exactly once, each key on its own.
// KEYS[1] hash, KEYS[2] the instance's marker; ARGV[1] batch sequence
// number, ARGV[2] marker ttl in ms, then field/delta pairs.
//
// The marker holds the last batch number applied, followed, when some
// pairs were refused, by ":" and their 1-based indexes ("17" or "17:2,5").
// A batch whose number is not above the marker was applied before (a
// resend after an unknown outcome): nothing is applied again and the reply
// gives the current values, with "!" for the pairs refused the first time.
//
// Otherwise the marker is written first (nothing else has been written
// yet, so a write refused by the server, such as OOM, leaves everything
// untouched), then each pair is applied on its own: a pair that would
// overflow int64, or whose field does not hold an integer, is refused and
// changes nothing, and the others still apply. A hash of the wrong type
// fails the whole batch before any write.
//
// Returns {applied (1) or duplicate (0), r1, r2, …}: ri is the field's new
// value as a decimal string, or "!" followed by the reason the pair was
// refused ("!DKOVERFLOW", or the server's message).
var Flush = driver.NewScript("counter-lax-flush", scriptlib.LuaHIncr+`
local h, mk = KEYS[1], KEYS[2]
local seq = tonumber(ARGV[1])
local t = redis.call('TYPE', h)['ok']
if t ~= 'hash' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')
end
local last = redis.call('GET', mk)
if last then
  local lseq, refused = string.match(last, '^(%d+):?(.*)$')
  if lseq and tonumber(lseq) >= seq then
    local skip = {}
    for n in string.gmatch(refused, '%d+') do skip[tonumber(n)] = true end
    local out = {0}
    for i = 3, #ARGV, 2 do
      if skip[(i - 1) / 2] then
        out[#out+1] = '!'
      else
        out[#out+1] = redis.call('HGET', h, ARGV[i]) or '0'
      end
    end
    return out
  end
end
redis.call('SET', mk, ARGV[1], 'PX', ARGV[2])
local out, refused = {1}, {}
for i = 3, #ARGV, 2 do
  local v, e = hincr(h, ARGV[i], ARGV[i+1])
  if e then
    local msg = e.err
    if string.sub(msg, 1, 11) == 'DKOVERFLOW ' then msg = 'DKOVERFLOW' end
    out[#out+1] = '!' .. msg
    refused[#refused+1] = string.format('%d', (i - 1) / 2)
  else
    out[#out+1] = v
  end
end
if #refused > 0 then
  redis.call('SET', mk, ARGV[1] .. ':' .. table.concat(refused, ','), 'PX', ARGV[2])
end
return out
`, goFlush)

func goFlush(st driver.Store, keys, args []string) (backend.Value, error) {
	h, mk := keys[0], keys[1]
	seq, _ := strconv.ParseInt(args[0], 10, 64)
	if _, err := st.HLen(h); err != nil {
		return backend.Value{}, err
	}
	last, ok, err := st.Get(mk)
	if err != nil {
		return backend.Value{}, err
	}
	if ok {
		lseq, refused, _ := strings.Cut(last, ":")
		if l, err := strconv.ParseInt(lseq, 10, 64); err == nil && l >= seq {
			skip := map[int]bool{}
			for _, f := range strings.Split(refused, ",") {
				if n, err := strconv.Atoi(f); err == nil {
					skip[n] = true
				}
			}
			out := []backend.Value{backend.Int(0)}
			for i := 2; i+1 < len(args); i += 2 {
				if skip[i/2] {
					out = append(out, backend.Str("!"))
					continue
				}
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
		}
	}
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	if err := st.Set(mk, args[0], ttl); err != nil {
		return backend.Value{}, err
	}
	out := []backend.Value{backend.Int(1)}
	var refused []string
	for i := 2; i+1 < len(args); i += 2 {
		d, _ := strconv.ParseInt(args[i+1], 10, 64)
		nv, err := scriptlib.HIncr(st, h, args[i], d)
		if err != nil {
			msg := err.Error()
			if strings.HasPrefix(msg, CodeOverflow+" ") {
				msg = CodeOverflow
			}
			out = append(out, backend.Str("!"+msg))
			refused = append(refused, strconv.Itoa(i/2))
			continue
		}
		out = append(out, backend.Str(strconv.FormatInt(nv, 10)))
	}
	if len(refused) > 0 {
		if err := st.Set(mk, args[0]+":"+strings.Join(refused, ","), ttl); err != nil {
			return backend.Value{}, err
		}
	}
	return backend.Arr(out...), nil
}

// All returns every script of the counter package, for preloading and
// for tools that need their SHA.
func All() []*driver.Script {
	return []*driver.Script{Inc, Get, Set, Del, Clear, AllIf, GetAll, Flush, Batch}
}
