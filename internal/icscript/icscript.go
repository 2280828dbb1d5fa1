// Package icscript holds the scripts of primitives/instancecounter, each
// Lua source with its Go twin; KEYS follow keyspace.InstanceCounter. The
// instancecounter package is their only user apart from distkit's own
// tests and tools (scriptset).
package icscript

import (
	"math"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// Every script takes the same six KEYS (keyspace.InstanceCounter), and
// the instance id and keys escaped (keyspace.InstanceMember,
// keyspace.InstanceKeyField), so that they never contain ':' and a
// composed member splits at its first ':'. A lexical range over the
// members starting with x and ':' is ['x:' , 'x;'), the bound
// keyspace.LexRange gives and the Go twins compare with, valid whatever
// bytes follow the separator.
//
//
//	1 instances  zset  instance → heartbeat expiry (ms)
//	2 total      hash  key → cumulative
//	3 slices     hash  "<instance>:<key>" → that instance's slice
//	4 owned      zset  "<instance>:<key>" (score 0, for lexical ranges per instance)
//	5 holders    zset  "<key>:<instance>" (score 0, for lexical ranges per key)
//	6 epochs     hash  key → epoch (bumped by Set, Del, Clear)
//
// plus, for Lax flushes, 7 the instance's batch marker. ARGV[1] is the
// instance id, ARGV[2] DeadAfter in ms.

const luaPrelude = scriptlib.LuaHIncr + scriptlib.LuaMatches + driver.LuaNowMillis + `
local INST, TOTAL, SLICES, OWNED, HOLDERS, EPOCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local me, dead_after = ARGV[1], tonumber(ARGV[2])
local function fmt(n) return string.format('%d', n) end
local function neg(s)
  if s == '0' then return '0' end
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end
-- drop removes every slice of instance d, subtracting it from the totals.
local function drop(d)
  local lo, hi = '[' .. d .. ':', '(' .. d .. ';'
  for _, m in ipairs(redis.call('ZRANGEBYLEX', OWNED, lo, hi)) do
    local key = string.sub(m, #d + 2)
    local s = redis.call('HGET', SLICES, m)
    if s and s ~= '0' then redis.call('HINCRBY', TOTAL, key, neg(s)) end
    redis.call('HDEL', SLICES, m)
    redis.call('ZREM', HOLDERS, key .. ':' .. d)
  end
  redis.call('ZREMRANGEBYLEX', OWNED, lo, hi)
  redis.call('ZREM', INST, d)
end
local function cleanup()
  for _, d in ipairs(redis.call('ZRANGEBYSCORE', INST, '-inf', fmt(now_ms))) do drop(d) end
end
local function register()
  return redis.call('ZADD', INST, fmt(now_ms + dead_after), me)
end
-- join makes sure this instance has a slice for key. An instance whose
-- slice is gone (declared dead, or the server lost its data) contributes
-- its local slice again, unless a Set, Del or Clear happened since (its
-- epoch is stale): then it starts from 0.
local function join(key, cepoch, cslice)
  local field = me .. ':' .. key
  local s = redis.call('HGET', SLICES, field)
  local e = redis.call('HGET', EPOCH, key)
  if s then return s end
  s = '0'
  if not e then
    if cepoch ~= '0' then redis.call('HSET', EPOCH, key, cepoch) end
    e = cepoch
  end
  if e == cepoch and cslice ~= '0' then
    redis.call('HINCRBY', TOTAL, key, cslice)
    s = cslice
  end
  redis.call('HSET', SLICES, field, s)
  redis.call('ZADD', OWNED, 0, field)
  redis.call('ZADD', HOLDERS, 0, key .. ':' .. me)
  return s
end
-- wipe removes every instance's slice of key.
local function wipe(key)
  local lo, hi = '[' .. key .. ':', '(' .. key .. ';'
  for _, m in ipairs(redis.call('ZRANGEBYLEX', HOLDERS, lo, hi)) do
    local f = string.sub(m, #key + 2) .. ':' .. key
    redis.call('HDEL', SLICES, f)
    redis.call('ZREM', OWNED, f)
  end
  redis.call('ZREMRANGEBYLEX', HOLDERS, lo, hi)
end
-- add adds d to key's total and this instance's slice, all or nothing.
local function add(key, d)
  local _, e = hincr(TOTAL, key, d)
  if e then return e end
  _, e = hincr(SLICES, me .. ':' .. key, d)
  if e then
    hincr(TOTAL, key, neg(d))
    return e
  end
  return nil
end
local function state(key)
  return {redis.call('HGET', TOTAL, key) or '0', redis.call('HGET', SLICES, me .. ':' .. key) or '0',
    redis.call('HGET', EPOCH, key) or '0'}
end
`

// Op runs one operation on one key.
// ARGV: 3 mode, 4 key, 5 instance's epoch, 6 instance's slice, 7 op, 8
// operand, 9 n. Returns {cumulative, mine, epoch} after the operation.
var Op = driver.NewScript("instancecounter-op", luaPrelude+`
local mode, key, cepoch, cslice = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local op, x, n = ARGV[7], ARGV[8], ARGV[9]
cleanup()
register()
local s = join(key, cepoch, cslice)
local total = redis.call('HGET', TOTAL, key) or '0'
if mode == 'inc' or (mode == 'incif' and matches(op, total, x)) then
  local e = add(key, n)
  if e then return e end
elseif mode == 'setmine' or (mode == 'setmineif' and matches(op, s, x)) then
  local e = add(key, neg(s))
  if e then return e end
  e = add(key, n)
  if e then
    add(key, s)
    return e
  end
elseif mode == 'set' or (mode == 'setif' and matches(op, total, x)) then
  wipe(key)
  redis.call('HSET', TOTAL, key, n)
  local f = me .. ':' .. key
  redis.call('HSET', SLICES, f, n)
  redis.call('ZADD', OWNED, 0, f)
  redis.call('ZADD', HOLDERS, 0, key .. ':' .. me)
  redis.call('HINCRBY', EPOCH, key, 1)
elseif mode == 'delmine' then
  local e = add(key, neg(s))
  if e then return e end
  local f = me .. ':' .. key
  redis.call('HDEL', SLICES, f)
  redis.call('ZREM', OWNED, f)
  redis.call('ZREM', HOLDERS, key .. ':' .. me)
elseif mode == 'del' then
  local before = {total, s}
  wipe(key)
  redis.call('HDEL', TOTAL, key)
  local ep = redis.call('HINCRBY', EPOCH, key, 1)
  return {before[1], before[2], fmt(ep)}
end
return state(key)
`, goOp)

// Heartbeat: removes dead instances, then refreshes this one.
// Returns 1 when this instance was absent (declared dead, or the server
// lost its data) and must rejoin with its slices.
var Heartbeat = driver.NewScript("instancecounter-heartbeat", luaPrelude+`
cleanup()
return register()
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	return backend.Int(c.register()), nil
})

// Rejoin: ARGV 3.. triples (key, epoch, slice): join each.
var Rejoin = driver.NewScript("instancecounter-rejoin", luaPrelude+`
cleanup()
register()
for i = 3, #ARGV, 3 do join(ARGV[i], ARGV[i+1], ARGV[i+2]) end
return 1
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	c.register()
	for i := 2; i+2 < len(args); i += 3 {
		if _, err := c.join(args[i], args[i+1], args[i+2]); err != nil {
			return backend.Value{}, err
		}
	}
	return backend.Int(1), nil
})

// Remove: this instance leaves, taking its slices out of the totals.
var Remove = driver.NewScript("instancecounter-remove", luaPrelude+`
drop(me)
return 1
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	return backend.Int(1), c.drop(c.me)
})

// Clear: every counter of the prefix goes; every epoch is bumped so
// no instance re-contributes an old slice.
var Clear = driver.NewScript("instancecounter-clear", luaPrelude+`
local seen = {}
for _, h in ipairs({TOTAL, EPOCH}) do
  for _, k in ipairs(redis.call('HKEYS', h)) do
    if not seen[k] then
      seen[k] = true
      redis.call('HINCRBY', EPOCH, k, 1)
    end
  end
end
redis.call('DEL', TOTAL, SLICES, OWNED, HOLDERS)
return 1
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	seen := map[string]bool{}
	for _, h := range []string{c.total, c.epoch} {
		all, err := st.HGetAll(h)
		if err != nil {
			return backend.Value{}, err
		}
		for k := range all {
			if !seen[k] {
				seen[k] = true
				if _, err := scriptlib.HIncr(st, c.epoch, k, 1); err != nil {
					return backend.Value{}, err
				}
			}
		}
	}
	st.Del(c.total, c.slices, c.owned, c.holders)
	return backend.Int(1), nil
})

// Flush applies a Lax batch once. KEYS[7] is the instance's batch
// marker. ARGV: 3 batch number, 4 marker ttl ms, then quads (key, epoch,
// slice as last confirmed, delta). Returns {applied, then cumulative,
// mine, epoch per key}. All or nothing on overflow.
var Flush = driver.NewScript("instancecounter-flush", luaPrelude+`
local last = redis.call('GET', KEYS[7])
local applied = 1
if last and tonumber(last) >= tonumber(ARGV[3]) then applied = 0 end
cleanup()
register()
if applied == 1 then
  local done = {}
  for i = 5, #ARGV, 4 do
    join(ARGV[i], ARGV[i+1], ARGV[i+2])
    local e = add(ARGV[i], ARGV[i+3])
    if e then
      for j = #done, 1, -1 do add(done[j][1], neg(done[j][2])) end
      return e
    end
    done[#done+1] = {ARGV[i], ARGV[i+3]}
  end
  redis.call('SET', KEYS[7], ARGV[3], 'PX', ARGV[4])
end
local out = {applied}
for i = 5, #ARGV, 4 do
  for _, v in ipairs(state(ARGV[i])) do out[#out+1] = v end
end
return out
`, goFlush)

// ctx is the Go twin's view of the prelude.
type ctx struct {
	st                                         driver.Store
	inst, total, slices, owned, holders, epoch string
	me                                         string
	deadAfter                                  int64
	now                                        int64
}

func newCtx(st driver.Store, keys, args []string) (*ctx, error) {
	da, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return nil, err
	}
	return &ctx{st: st, inst: keys[0], total: keys[1], slices: keys[2], owned: keys[3], holders: keys[4], epoch: keys[5],
		me: args[0], deadAfter: da, now: driver.NowMillis(st)}, nil
}

func neg(s string) string {
	switch {
	case s == "0":
		return "0"
	case strings.HasPrefix(s, "-"):
		return s[1:]
	}
	return "-" + s
}

func (c *ctx) hincr(h, f, d string) error {
	n, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return err
	}
	_, err = scriptlib.HIncr(c.st, h, f, n)
	return err
}

// lex returns the members of a score-0 zset whose first part is x, in
// ZRANGEBYLEX order over keyspace.LexRange(x).
func (c *ctx) lex(key, x string) ([]string, error) {
	ms, err := c.st.ZRangeByScore(key, math.Inf(-1), math.Inf(1))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if keyspace.InLexRange(m.Member, x) {
			out = append(out, m.Member)
		}
	}
	return out, nil
}

func (c *ctx) drop(d string) error {
	ms, err := c.lex(c.owned, d)
	if err != nil {
		return err
	}
	for _, m := range ms {
		key := m[len(d)+1:]
		if s, ok, _ := c.st.HGet(c.slices, m); ok && s != "0" {
			if err := c.hincr(c.total, key, neg(s)); err != nil {
				return err
			}
		}
		c.st.HDel(c.slices, m)
		c.st.ZRem(c.holders, keyspace.Join(key, d))
		c.st.ZRem(c.owned, m)
	}
	c.st.ZRem(c.inst, d)
	return nil
}

func (c *ctx) cleanup() error {
	dead, err := c.st.ZRangeByScore(c.inst, math.Inf(-1), float64(c.now))
	if err != nil {
		return err
	}
	for _, d := range dead {
		if err := c.drop(d.Member); err != nil {
			return err
		}
	}
	return nil
}

func (c *ctx) register() int64 {
	_, existed, _ := c.st.ZScore(c.inst, c.me)
	c.st.ZAdd(c.inst, float64(c.now+c.deadAfter), c.me)
	if existed {
		return 0
	}
	return 1
}

func (c *ctx) get(h, f string) string {
	v, ok, _ := c.st.HGet(h, f)
	if !ok {
		return "0"
	}
	return v
}

func (c *ctx) join(key, cepoch, cslice string) (string, error) {
	field := keyspace.Join(c.me, key)
	if s, ok, err := c.st.HGet(c.slices, field); err != nil || ok {
		return s, err
	}
	e, ok, _ := c.st.HGet(c.epoch, key)
	if !ok {
		if cepoch != "0" {
			c.st.HSet(c.epoch, key, cepoch)
		}
		e = cepoch
	}
	s := "0"
	if e == cepoch && cslice != "0" {
		if err := c.hincr(c.total, key, cslice); err != nil {
			return "", err
		}
		s = cslice
	}
	c.st.HSet(c.slices, field, s)
	c.st.ZAdd(c.owned, 0, field)
	c.st.ZAdd(c.holders, 0, keyspace.Join(key, c.me))
	return s, nil
}

func (c *ctx) wipe(key string) error {
	ms, err := c.lex(c.holders, key)
	if err != nil {
		return err
	}
	for _, m := range ms {
		f := keyspace.Join(m[len(key)+1:], key)
		c.st.HDel(c.slices, f)
		c.st.ZRem(c.owned, f)
		c.st.ZRem(c.holders, m)
	}
	return nil
}

func (c *ctx) add(key, d string) error {
	if err := c.hincr(c.total, key, d); err != nil {
		return err
	}
	if err := c.hincr(c.slices, keyspace.Join(c.me, key), d); err != nil {
		c.hincr(c.total, key, neg(d))
		return err
	}
	return nil
}

func (c *ctx) state(key string) []backend.Value {
	return []backend.Value{backend.Str(c.get(c.total, key)), backend.Str(c.get(c.slices, keyspace.Join(c.me, key))), backend.Str(c.get(c.epoch, key))}
}

func goOp(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	mode, key, cepoch, cslice, op, x, n := args[2], args[3], args[4], args[5], args[6], args[7], args[8]
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	c.register()
	s, err := c.join(key, cepoch, cslice)
	if err != nil {
		return backend.Value{}, err
	}
	total := c.get(c.total, key)
	tv, _ := strconv.ParseInt(total, 10, 64)
	sv, _ := strconv.ParseInt(s, 10, 64)
	xv, _ := strconv.ParseInt(x, 10, 64)
	switch {
	case mode == "inc" || (mode == "incif" && scriptlib.OpMatches(op, tv, xv)):
		if err := c.add(key, n); err != nil {
			return backend.Value{}, err
		}
	case mode == "setmine" || (mode == "setmineif" && scriptlib.OpMatches(op, sv, xv)):
		if err := c.add(key, neg(s)); err != nil {
			return backend.Value{}, err
		}
		if err := c.add(key, n); err != nil {
			c.add(key, s)
			return backend.Value{}, err
		}
	case mode == "set" || (mode == "setif" && scriptlib.OpMatches(op, tv, xv)):
		if err := c.wipe(key); err != nil {
			return backend.Value{}, err
		}
		st.HSet(c.total, key, n)
		f := keyspace.Join(c.me, key)
		st.HSet(c.slices, f, n)
		st.ZAdd(c.owned, 0, f)
		st.ZAdd(c.holders, 0, keyspace.Join(key, c.me))
		if _, err := scriptlib.HIncr(st, c.epoch, key, 1); err != nil {
			return backend.Value{}, err
		}
	case mode == "delmine":
		if err := c.add(key, neg(s)); err != nil {
			return backend.Value{}, err
		}
		f := keyspace.Join(c.me, key)
		st.HDel(c.slices, f)
		st.ZRem(c.owned, f)
		st.ZRem(c.holders, keyspace.Join(key, c.me))
	case mode == "del":
		if err := c.wipe(key); err != nil {
			return backend.Value{}, err
		}
		st.HDel(c.total, key)
		ep, err := scriptlib.HIncr(st, c.epoch, key, 1)
		if err != nil {
			return backend.Value{}, err
		}
		return backend.Arr(backend.Str(total), backend.Str(s), backend.Str(strconv.FormatInt(ep, 10))), nil
	}
	return backend.Arr(c.state(key)...), nil
}

func goFlush(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	seq, _ := strconv.ParseInt(args[2], 10, 64)
	applied := int64(1)
	if last, ok, err := st.Get(keys[6]); err != nil {
		return backend.Value{}, err
	} else if ok {
		if l, _ := strconv.ParseInt(last, 10, 64); l >= seq {
			applied = 0
		}
	}
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	c.register()
	if applied == 1 {
		type done struct{ key, d string }
		var ds []done
		for i := 4; i+3 < len(args); i += 4 {
			if _, err := c.join(args[i], args[i+1], args[i+2]); err != nil {
				return backend.Value{}, err
			}
			if err := c.add(args[i], args[i+3]); err != nil {
				for j := len(ds) - 1; j >= 0; j-- {
					c.add(ds[j].key, neg(ds[j].d))
				}
				return backend.Value{}, err
			}
			ds = append(ds, done{args[i], args[i+3]})
		}
		ttl, err := driver.ParseMillis(args[3])
		if err != nil {
			return backend.Value{}, err
		}
		st.Set(keys[6], args[2], ttl)
	}
	out := []backend.Value{backend.Int(applied)}
	for i := 4; i+3 < len(args); i += 4 {
		out = append(out, c.state(args[i])...)
	}
	return backend.Arr(out...), nil
}

// All returns every instance-counter script.
func All() []*driver.Script {
	return []*driver.Script{Op, Heartbeat, Rejoin, Remove, Clear, Flush}
}
