package counterscript

import (
	"errors"
	"fmt"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// The operations Batch carries, each the twin of one single-operation
// script.
const (
	OpInc = "inc" // Inc: field, delta
	OpGet = "get" // Get: field, "" (ignored)
	OpSet = "set" // Set: field, value
	OpDel = "del" // Del: field, "" (ignored)
)

// Single returns the single-operation script of op (Inc, Get, Set or
// Del), or nil for an unknown op.
func Single(op string) *driver.Script {
	switch op {
	case OpInc:
		return Inc
	case OpGet:
		return Get
	case OpSet:
		return Set
	case OpDel:
		return Del
	}
	return nil
}

// SingleArgs returns the ARGV of op's single-operation script.
func SingleArgs(op, field, arg string) []string {
	if op == OpGet || op == OpDel {
		return []string{field}
	}
	return []string{field, arg}
}

// Batch runs many single operations on one hash in one atomic script, in
// order, each exactly as its own script (Inc, Get, Set, Del) would have run
// it at that point: a later operation sees the effects of earlier ones, and
// an operation that fails (overflow, a field that is not an integer, a key
// of the wrong type) changes nothing and fails alone; the others still
// apply. This is what Strict's group commit sends.
//
// KEYS[1] hash; ARGV: triples op, field, arg (OpInc, OpGet, OpSet, OpDel).
// Returns one element per operation: the value its own script would have
// returned (an integer, a decimal string, or nil), or, when it failed, an
// array holding only the error message its script would have raised (see
// BatchReply).
var Batch = driver.NewScript("counter-batch", scriptlib.LuaHIncr+`
local h = KEYS[1]
local function inc(f, d)
  local neg = string.sub(d, 1, 1) == '-'
  if #d <= 15 or (neg and #d == 16) then
    local r = redis.pcall('HINCRBY', h, f, d)
    if type(r) == 'table' and r.err then
      if string.find(r.err, 'overflow', 1, true) then
        return {'DKOVERFLOW ' .. f}
      end
      return {r.err}
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
  if e then return {e.err} end
  return v
end
local function errmsg(r)
  if type(r) == 'table' then
    if r.err then return r.err end
    if r[1] then return tostring(r[1]) end
  end
  -- A raised string may carry the Lua location ("user_script:12: ").
  local m = string.gsub(tostring(r), '^[^ ]*:%d+: ', '', 1)
  return m
end
local out = {}
for i = 1, #ARGV, 3 do
  local op, f, a = ARGV[i], ARGV[i+1], ARGV[i+2]
  local r
  if op == 'inc' then
    local ok, v = pcall(inc, f, a)
    if ok then r = v else r = {errmsg(v)} end
  elseif op == 'get' then
    r = redis.pcall('HGET', h, f)
    if type(r) == 'table' and r.err then r = {r.err} end
  elseif op == 'set' then
    r = redis.pcall('HSET', h, f, a)
    if type(r) == 'table' and r.err then r = {r.err} else r = a end
  elseif op == 'del' then
    r = redis.pcall('HGET', h, f)
    if type(r) == 'table' and r.err then
      r = {r.err}
    elseif r then
      local d = redis.pcall('HDEL', h, f)
      if type(d) == 'table' and d.err then r = {d.err} end
    end
  else
    r = {'ERR unknown batch operation ' .. tostring(op)}
  end
  if r == nil then r = false end
  out[#out+1] = r
end
return out
`, goBatch)

func goBatch(st driver.Store, keys, args []string) (backend.Value, error) {
	if len(args)%3 != 0 {
		return backend.Value{}, fmt.Errorf("ERR batch arguments: %d is not a multiple of 3", len(args))
	}
	out := make([]backend.Value, 0, len(args)/3)
	for i := 0; i+2 < len(args); i += 3 {
		s := Single(args[i])
		if s == nil {
			out = append(out, backend.Arr(backend.Str("ERR unknown batch operation "+args[i])))
			continue
		}
		v, err := s.Run(st, keys, SingleArgs(args[i], args[i+1], args[i+2]))
		if err != nil {
			var se *backend.ScriptError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
			}
			out = append(out, backend.Arr(backend.Str(msg)))
			continue
		}
		out = append(out, v)
	}
	return backend.Arr(out...), nil
}

// BatchArgs appends one operation to the ARGV of Batch.
func BatchArgs(args []string, op, field, arg string) []string {
	return append(args, op, field, arg)
}

// BatchReply splits Batch's reply for ops (the op of each operation, in
// order) into one result per operation, each with the value or the error
// (classified with driver.ClassifyReply, under the name of the operation's
// own script) that operation's own script would have given. An error means
// the reply does not have the shape Batch returns.
func BatchReply(v backend.Value, ops []string) ([]backend.Result, error) {
	arr, err := v.Array()
	if err != nil {
		return nil, fmt.Errorf("counter batch reply: %w", err)
	}
	if len(arr) != len(ops) {
		return nil, fmt.Errorf("counter batch reply: %d results for %d operations", len(arr), len(ops))
	}
	out := make([]backend.Result, len(ops))
	for i, e := range arr {
		if sub, err := e.Array(); err == nil {
			if len(sub) != 1 {
				return nil, fmt.Errorf("counter batch reply: result %d: %s is not an error", i, e)
			}
			msg, err := sub[0].Text()
			if err != nil {
				return nil, fmt.Errorf("counter batch reply: result %d: %w", i, err)
			}
			name := "counter-batch"
			if s := Single(ops[i]); s != nil {
				name = s.Name()
			}
			out[i].Err = driver.ClassifyReply(name, msg)
			continue
		}
		out[i].Value = e
	}
	return out, nil
}
