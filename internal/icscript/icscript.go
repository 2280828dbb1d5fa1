// Package icscript holds the scripts of primitives/instancecounter, each
// Lua source with its Go twin; KEYS follow keyspace.InstanceCounter. The
// instancecounter package is their only user apart from distkit's own
// tests and tools (scriptset).
//
// # The protocol
//
// A counter object registers under its instance id with a random nonce
// (the registry), so a second live object with the same id is told
// ("dup") instead of sharing the slices. Op, Flush and Clear run only for
// a registered object: an absent one (declared dead, never registered, or
// its data lost with the server's) gets "absent" and nothing is applied;
// it must Rejoin — which registers it and contributes every slice it
// remembers, all in one script — and then retry. So a comeback always
// brings back every key at once, whatever the instance's first script is.
//
// Every script of a registered object numbers itself (the version, kept in
// the registry and restored by Rejoin from what the object saw), so the
// object keeps, per key, the reply of the script that executed last, not
// the one it sent last.
//
// Epochs are stamps: server time in µs, strictly increasing per prefix
// (the clock key), so that a reply and a change made in the same µs still
// come in order. A key's epoch is the stamp of its last Set or Del, raised
// by Clear for every key (the cleared stamp). They
// survive a server's data loss in the instances' memory: a rejoining
// instance reports each key's epoch as it knew it, the server keeps the
// latest, and a slice re-contributed under an older epoch is withdrawn
// (the rejoined part of each slice is tracked for that), so a slice that a
// Set, Del or Clear had wiped before the loss never comes back, whichever
// instance rejoins first. The rejoined part is only what may date from
// before the current data set (the clock key keeps its first stamp): a
// second rejoin of an object whose last reply came from this data set
// keeps the part its first rejoin contributed, not what its calls added
// since, which ran after any wipe the server forgot.
package icscript

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// Statuses a script reports for the calling object.
const (
	StatusOK     = "ok"     // registered: the script ran
	StatusAbsent = "absent" // not registered: nothing was applied; Rejoin, then retry
	StatusDup    = "dup"    // another live object holds the id: nothing was applied
	StatusJoined = "joined" // Rejoin registered the object and contributed its slices
	StatusClosed = "closed" // Rejoin of an object that closed (Remove ran): nothing applied
)

// CodeItem is the error code with which Flush refuses a batch because of
// one of its pairs; see Flush.
const CodeItem = "DKITEM"

// Every script takes the nine KEYS of keyspace.InstanceCounter (Flush,
// Rejoin and Remove of a Lax object also its batch marker as KEYS[11]),
// and the instance id and keys escaped (keyspace.InstanceMember,
// keyspace.InstanceKeyField), so that they never contain ':' and a
// composed member splits at its first ':'. A lexical range over the
// members starting with x and ':' is ['x:' , 'x;'), the bound
// keyspace.LexRange gives and the Go twins compare with, valid whatever
// bytes follow the separator.
//
//	1 instances  zset    instance → heartbeat expiry (ms)
//	2 total      hash    key → cumulative
//	3 slices     hash    "<instance>:<key>" → that instance's slice
//	4 owned      zset    "<instance>:<key>" (score 0, for lexical ranges per instance)
//	5 holders    zset    "<key>:<instance>" (score 0, for lexical ranges per key)
//	6 epochs     hash    key → epoch (stamp of its last Set or Del)
//	7 registry   hash    instance → "<nonce>:<version>"
//	8 rejoined   hash    "<instance>:<key>" → part of the slice a Rejoin contributed that may date from before the data set
//	9 cleared    string  stamp of the last Clear
//	10 clock     string  "<last>:<born>": the last stamp (µs) and the first one of the data set
//
// ARGV[1] is the object's nonce, ARGV[2] the instance id, ARGV[3]
// DeadAfter in ms. Replies carry numbers as decimal strings.

const luaPrelude = scriptlib.LuaHIncr + scriptlib.LuaMatches + driver.LuaNowMillis + `
local INST, TOTAL, SLICES, OWNED, HOLDERS, EPOCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local REG, REJ, CLEARED, CLOCK = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local nonce, me, dead_after = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now_us = tonumber(__t[1]) * 1000000 + tonumber(__t[2])
local RELEASED = '-:'
local function fmt(n) return string.format('%d', n) end
local REFUSED_NOT_INT = 'ERR hash value is not an integer'

local function neg(s)
  if s == '0' then return '0' end
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end
-- hadd is hincr that also takes 9223372036854775808, the negation of a
-- slice of -2^63, which HINCRBY cannot: in two exact steps, all or nothing.
local function hadd(h, f, d)
  if d ~= '9223372036854775808' then return hincr(h, f, d) end
  local r, e = hincr(h, f, '9223372036854775807')
  if e then return nil, e end
  r, e = hincr(h, f, '1')
  if e then hincr(h, f, '-9223372036854775807') end
  return r, e
end
-- drop removes every slice of instance d, subtracting it from the totals,
-- and its registration. A slice whose removal would take its total out of
-- the int64 range (the others' sum is beyond it) stays, counted, until a
-- Set, Del or Clear of its key: failing instead would fail every script
-- of the prefix, each of which runs cleanup first.
local function drop(d)
  local lo, hi = '[' .. d .. ':', '(' .. d .. ';'
  for _, m in ipairs(redis.call('ZRANGEBYLEX', OWNED, lo, hi)) do
    local key = string.sub(m, #d + 2)
    local s = redis.call('HGET', SLICES, m)
    local e = nil
    if s and s ~= '0' then
      local _, err = hadd(TOTAL, key, neg(s))
      e = err
    end
    if not e then
      redis.call('HDEL', SLICES, m)
      redis.call('HDEL', REJ, m)
      redis.call('ZREM', HOLDERS, key .. ':' .. d)
      redis.call('ZREM', OWNED, m)
    end
  end
  redis.call('ZREM', INST, d)
  redis.call('HDEL', REG, d)
end
local function cleanup()
  for _, d in ipairs(redis.call('ZRANGEBYSCORE', INST, '-inf', fmt(now_ms))) do drop(d) end
end
-- status says whether this object is registered (after cleanup).
local function status()
  if not redis.call('ZSCORE', INST, me) then return 'absent' end
  local reg = redis.call('HGET', REG, me)
  if not reg then
    redis.call('HSET', REG, me, nonce .. ':0')
    return 'ok'
  end
  if string.sub(reg, 1, #nonce + 1) ~= nonce .. ':' then
    if string.sub(reg, 1, 2) == RELEASED then return 'absent' end
    return 'dup'
  end
  return 'ok'
end
local function refresh() redis.call('ZADD', INST, fmt(now_ms + dead_after), me) end
-- version numbers this object's scripts in the order they execute.
local function version()
  local v = tonumber(string.sub(redis.call('HGET', REG, me), #nonce + 2)) + 1
  redis.call('HSET', REG, me, nonce .. ':' .. fmt(v))
  return v
end
-- stamp is this script's place in time: server time in µs, above every
-- stamp before it (epochs, reply times and batch times are stamps). The
-- clock key holds "<last stamp>:<born>", born being the first stamp of the
-- data set: a server that lost its data starts a new one (born is then
-- this stamp; also when the key holds only a stamp).
local born = 0
-- read_clock returns the last stamp and born (nil: a new data set).
local function read_clock()
  local c = redis.call('GET', CLOCK)
  if not c then return 0, nil end
  local l, b = string.match(c, '^(%d+):(%d+)$')
  if l then return tonumber(l), tonumber(b) end
  return tonumber(c) or 0, nil
end
local function stamp()
  local last, b = read_clock()
  local s = math.max(now_us, last + 1)
  born = b or s
  redis.call('SET', CLOCK, fmt(s) .. ':' .. fmt(born))
  return s
end
local function cleared() return tonumber(redis.call('GET', CLEARED) or '0') end
local function epoch(key) return math.max(tonumber(redis.call('HGET', EPOCH, key) or '0'), cleared()) end
local function bump(key, t)
  local e = math.max(t, epoch(key) + 1)
  redis.call('HSET', EPOCH, key, fmt(e))
  return e
end
-- wipe removes every instance's slice of key.
local function wipe(key)
  local lo, hi = '[' .. key .. ':', '(' .. key .. ';'
  for _, m in ipairs(redis.call('ZRANGEBYLEX', HOLDERS, lo, hi)) do
    local f = string.sub(m, #key + 2) .. ':' .. key
    redis.call('HDEL', SLICES, f)
    redis.call('HDEL', REJ, f)
    redis.call('ZREM', OWNED, f)
  end
  redis.call('ZREMRANGEBYLEX', HOLDERS, lo, hi)
end
-- unjoin withdraws the rejoined part of slice f of key.
local function unjoin(f, key)
  local r = redis.call('HGET', REJ, f)
  if not r then return nil end
  redis.call('HDEL', REJ, f)
  if r == '0' or not redis.call('HGET', SLICES, f) then return nil end
  local _, e = hadd(SLICES, f, neg(r))
  if e then return e end
  _, e = hadd(TOTAL, key, neg(r))
  return e
end
-- strip withdraws the rejoined part of every slice of key.
local function strip(key)
  for _, m in ipairs(redis.call('ZRANGEBYLEX', HOLDERS, '[' .. key .. ':', '(' .. key .. ';')) do
    local e = unjoin(string.sub(m, #key + 2) .. ':' .. key, key)
    if e then return e end
  end
  return nil
end
-- add adds d to key's total and this instance's slice, all or nothing.
local function add(key, d)
  local f = me .. ':' .. key
  local fresh = redis.call('HEXISTS', SLICES, f) == 0
  local _, e = hadd(TOTAL, key, d)
  if e then return e end
  _, e = hadd(SLICES, f, d)
  if e then
    hadd(TOTAL, key, neg(d))
    return e
  end
  if fresh then
    redis.call('ZADD', OWNED, 0, f)
    redis.call('ZADD', HOLDERS, 0, key .. ':' .. me)
  end
  return nil
end
local function state(key)
  local f = me .. ':' .. key
  return {redis.call('HGET', TOTAL, key) or '0', redis.call('HGET', SLICES, f) or '0',
    fmt(epoch(key)), redis.call('HGET', REJ, f) or '0'}
end
`

// luaOp defines op_one(mode, key, op, x, n): Op's operation for a
// registered object (after cleanup, status and refresh), returning its
// reply or an error reply. Op and OpBatch share it.
//
// In a batch (batch_v set), the version, the stamp and the cleared time
// are kept in variables, read once before the first operation and written
// once after the last (batch_end): the values each operation gets are
// those version(), stamp() and cleared() would give it, at a third of the
// server's work.
const luaOp = `
local batch_v, batch_t, batch_c
local function batch_begin()
  batch_v = tonumber(string.sub(redis.call('HGET', REG, me), #nonce + 2))
  local last, b = read_clock()
  batch_t = math.max(now_us, last + 1) - 1
  born = b or (batch_t + 1)
  batch_c = cleared()
end
local function batch_end()
  redis.call('HSET', REG, me, nonce .. ':' .. fmt(batch_v))
  redis.call('SET', CLOCK, fmt(batch_t) .. ':' .. fmt(born))
end
local function op_one(mode, key, op, x, n)
  local v, t, c
  if batch_v then
    batch_v, batch_t = batch_v + 1, batch_t + 1
    v, t, c = batch_v, batch_t, batch_c
  else
    v, t, c = version(), stamp(), cleared()
  end
  local f = me .. ':' .. key
  local sraw = redis.call('HGET', SLICES, f)
  local s = sraw or '0'
  local total = redis.call('HGET', TOTAL, key) or '0'
  local head = {'ok', fmt(v), fmt(t), fmt(c)}
  if mode == 'inc' or (mode == 'incif' and matches(op, total, x)) then
    -- add(key, n) then state(key), without reading again what this
    -- script just read or wrote.
    local nt, e = hincr(TOTAL, key, n)
    if e then return e end
    local ns
    ns, e = hincr(SLICES, f, n)
    if e then
      hincr(TOTAL, key, neg(n))
      return e
    end
    if not sraw then
      redis.call('ZADD', OWNED, 0, f)
      redis.call('ZADD', HOLDERS, 0, key .. ':' .. me)
    end
    local ep = math.max(tonumber(redis.call('HGET', EPOCH, key) or '0'), c)
    for _, w in ipairs({nt, ns, fmt(ep), redis.call('HGET', REJ, f) or '0'}) do head[#head+1] = w end
    return head
  elseif mode == 'setmine' or (mode == 'setmineif' and matches(op, s, x)) then
    local e = add(key, neg(s))
    if e then return e end
    e = add(key, n)
    if e then
      add(key, s)
      return e
    end
    redis.call('HDEL', REJ, f)
  elseif mode == 'set' or (mode == 'setif' and matches(op, total, x)) then
    wipe(key)
    redis.call('HSET', TOTAL, key, n)
    redis.call('HSET', SLICES, f, n)
    redis.call('ZADD', OWNED, 0, f)
    redis.call('ZADD', HOLDERS, 0, key .. ':' .. me)
    bump(key, t)
  elseif mode == 'delmine' then
    local e = add(key, neg(s))
    if e then return e end
    redis.call('HDEL', SLICES, f)
    redis.call('HDEL', REJ, f)
    redis.call('ZREM', OWNED, f)
    redis.call('ZREM', HOLDERS, key .. ':' .. me)
  elseif mode == 'del' then
    wipe(key)
    redis.call('HDEL', TOTAL, key)
    local ep = bump(key, t)
    for _, w in ipairs({total, s, fmt(ep), '0'}) do head[#head+1] = w end
    return head
  end
  for _, w in ipairs(state(key)) do head[#head+1] = w end
  return head
end
`

// Op runs one operation on one key. ARGV: 4 mode, 5 key, 6 comparator op,
// 7 operand, 8 n. Reply {status}, or {"ok", version, stamp, cleared,
// cumulative, mine, epoch, rejoined} after the operation; for "del" the
// cumulative and mine before it and the new epoch.
var Op = driver.NewScript("instancecounter-op", luaPrelude+luaOp+`
cleanup()
local st = status()
if st ~= 'ok' then return {st} end
refresh()
return op_one(ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
`, goOp)

// OpBatch runs many operations of one object in one atomic script, in
// order, each exactly as its own Op would have run at that point (Op's
// cleanup, status and refresh happen once: at one instant they are the
// same for every operation): each numbers itself (version) and takes its
// own stamp, a later one sees the effects of earlier ones, and one that
// fails (an overflow, a value that is not an integer) fails alone with the
// error its Op would have raised; the others still apply. This is what
// instancecounter.Strict's group commit sends.
//
// ARGV: 4.. quintuples mode, key, comparator op, operand, n (Op's ARGV 4
// to 8). Reply {status} when the object is not registered (nothing
// applied, as each Op would have said), else {"ok", r1, r2, ...}: per
// operation the reply its Op would have given, or an array holding only
// the error message its Op would have raised.
var OpBatch = driver.NewScript("instancecounter-opbatch", luaPrelude+luaOp+`
local function errmsg(r)
  if type(r) == 'table' then
    if r.err then return r.err end
    if r[1] then return tostring(r[1]) end
  end
  -- A raised string may carry the Lua location ("user_script:12: ").
  local m = string.gsub(tostring(r), '^[^ ]*:%d+: ', '', 1)
  return m
end
if (#ARGV - 3) % 5 ~= 0 then
  return redis.error_reply('ERR instancecounter batch arguments: ' .. (#ARGV - 3) .. ' is not a multiple of 5')
end
cleanup()
local st = status()
if st ~= 'ok' then return {st} end
refresh()
local out = {'ok'}
if #ARGV == 3 then return out end
batch_begin()
for i = 4, #ARGV, 5 do
  local ok, r = pcall(op_one, ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4])
  if not ok then
    r = {errmsg(r)}
  elseif r.err then
    r = {r.err}
  end
  out[#out+1] = r
end
batch_end()
return out
`, goOpBatch)

// Heartbeat removes dead instances, then refreshes this object's
// registration. Reply: its status; "absent" asks for a Rejoin. With
// ARGV[4] "live" (the caller has a MeterProvider: the count costs one
// read per registered instance, paid only then) the reply is {status,
// live}: the number of live instances of the prefix after the refresh —
// those whose heartbeat has not expired, not counting the closed ones
// (Remove) whose registration lingers; this object included when its
// status is "ok".
var Heartbeat = driver.NewScript("instancecounter-heartbeat", luaPrelude+`
cleanup()
local st = status()
if st == 'ok' then refresh() end
if ARGV[4] ~= 'live' then return st end
local n = 0
for _, m in ipairs(redis.call('ZRANGE', INST, 0, -1)) do
  local reg = redis.call('HGET', REG, m)
  if not reg or string.sub(reg, 1, #RELEASED) ~= RELEASED then n = n + 1 end
end
return {st, fmt(n)}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	s, err := c.status()
	if err != nil {
		return backend.Value{}, err
	}
	if s == StatusOK {
		c.refresh()
	}
	if len(args) < 4 || args[3] != "live" {
		return backend.Str(s), nil
	}
	n, err := c.live()
	if err != nil {
		return backend.Value{}, err
	}
	return backend.Arr(backend.Str(s), backend.Str(fmtInt(n))), nil
})

// live counts the instances of the prefix not yet expired (cleanup ran)
// whose registration is not released (the Lua's loop in Heartbeat).
func (c *ctx) live() (int64, error) {
	ms, err := c.st.ZRangeByScore(c.inst, math.Inf(-1), math.Inf(1))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, m := range ms {
		reg, ok, err := c.st.HGet(c.reg, m.Member)
		if err != nil {
			return 0, err
		}
		if !ok || !strings.HasPrefix(reg, released) {
			n++
		}
	}
	return n, nil
}

// Rejoin registers an absent object and contributes the slices it
// remembers. ARGV: 4 the latest cleared time it saw, 5 the latest version
// it saw, 6 the number of its Lax batch in flight ("0": none), 7 the batch
// marker's ttl in ms, then per key 6-tuples (key, epoch, slice, rejoined
// part, stamp of the reply it last recorded, delta of the batch in flight).
//
// A key's slice is contributed when its epoch is the key's; when a later
// Set, Del or Clear happened (the key's epoch is newer) it is 0, except the
// part added after a rejoin that the wipe preceded (the reply recorded
// after the wipe's time, under an epoch the server had forgotten); a newer
// epoch than the server's (it lost it) is restored and withdraws the
// rejoined parts of the other slices. The part of the slice recorded as
// rejoined is the part that may date from before the data set began (its
// first stamp, born): all of what was contributed, unless the reply the
// object recorded last came from this data set (stamp at least born) —
// then only the rejoined part it reports (its previous rejoin's, when the
// key's epoch is unchanged), none when only the part after a wipe was
// contributed. The batch in flight counts when it
// was not applied (it is applied now), applied after the key's last wipe,
// or refused for that key by an earlier Rejoin.
//
// A key's delta in flight that cannot be added (an overflow, a value that
// is not an integer) is refused, on its own: the other keys are settled,
// the batch marker lists the refused key (":" then "o" for an overflow or
// "x", then the key, after the stamp), so that a resent Flush of the batch
// reports it again, and the reply says so. The caller keeps that delta
// pending: it was not applied.
//
// Reply {status} ("dup"; "closed" when Remove ran for this object; or
// "ok" when the object is registered already: nothing contributed), or
// {"joined", version, stamp, cleared, then per key cumulative, mine, epoch,
// rejoined, then per refused key its 0-based index among the 6-tuples and
// the reason (the error, e.g. "DKOVERFLOW <field>")}.
var Rejoin = driver.NewScript("instancecounter-rejoin", luaPrelude+`
local known, maxv, seq, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], ARGV[7]
cleanup()
if redis.call('HGET', REG, me) == RELEASED .. nonce then return {'closed'} end
local st = status()
if st == 'dup' then return {st} end
if st == 'ok' then
  refresh()
  return {st}
end
drop(me)
refresh()
redis.call('HSET', REG, me, nonce .. ':' .. fmt(maxv))
local v = version()
local t = stamp()
if known > cleared() then
  redis.call('SET', CLEARED, fmt(known))
  for _, f in ipairs(redis.call('HKEYS', REJ)) do
    local key = string.sub(f, string.find(f, ':', 1, true) + 1)
    if tonumber(redis.call('HGET', EPOCH, key) or '0') < known then
      local e = unjoin(f, key)
      if e then return e end
    end
  end
end
local applied_at, applied_stamp, was_refused = nil, nil, {}
if seq ~= '0' then
  local last = redis.call('GET', KEYS[11])
  if last and string.sub(last, 1, #nonce + 1) == nonce .. ':' then
    local ls, lt, rest = string.match(string.sub(last, #nonce + 2), '^(%d+):(%d+)(.*)$')
    if ls and tonumber(ls) >= tonumber(seq) then applied_at = tonumber(lt) end
    if ls and tonumber(ls) == tonumber(seq) then
      applied_stamp = lt
      for r in string.gmatch(rest, ':([^:]+)') do was_refused[string.sub(r, 2)] = true end
    end
  end
end
local out = {'joined', fmt(v), fmt(t)}
local refused, marks = {}, ''
for i = 8, #ARGV, 6 do
  local key, ce, cs, cr, cat, d = ARGV[i], tonumber(ARGV[i+1]), ARGV[i+2], ARGV[i+3], tonumber(ARGV[i+4]), ARGV[i+5]
  local f = me .. ':' .. key
  local e = epoch(key)
  if ce > e then
    redis.call('HSET', EPOCH, key, fmt(ce))
    local err = strip(key)
    if err then return err end
    e = ce
  end
  local parts = {}
  if ce == e then parts = {cs}
  elseif cat > e then parts = {cs, neg(cr)} end
  for _, p in ipairs(parts) do
    if p ~= '0' then add(key, p) end
  end
  -- The rejoined part is what of the slice may date from before the data
  -- set began, which a wipe the server forgot may have taken. When the
  -- reply the object recorded last came from this data set, its calls
  -- since its previous rejoin ran after any such wipe: only what that
  -- rejoin contributed (cr) may, and none of a slice contributed as the
  -- part after a wipe (cat > e).
  local r = redis.call('HGET', SLICES, f)
  if r and r ~= '0' and cat >= born then
    if ce == e then r = cr else r = '0' end
  end
  if r and r ~= '0' then redis.call('HSET', REJ, f, r) end
  if d ~= '0' and (applied_at == nil or applied_at > e or was_refused[key]) then
    local err = add(key, d)
    if err then
      refused[#refused+1] = fmt((i - 8) / 6)
      refused[#refused+1] = err.err
      local code = 'x'
      if string.sub(err.err, 1, 11) == 'DKOVERFLOW ' then code = 'o' end
      marks = marks .. ':' .. code .. key
    end
  end
end
if seq ~= '0' and applied_at == nil then
  redis.call('SET', KEYS[11], nonce .. ':' .. seq .. ':' .. fmt(t) .. marks, 'PX', ttl)
elseif applied_stamp and (marks ~= '' or next(was_refused) ~= nil) then
  redis.call('SET', KEYS[11], nonce .. ':' .. seq .. ':' .. applied_stamp .. marks, 'PX', ttl)
end
out[#out+1] = fmt(cleared())
for i = 8, #ARGV, 6 do
  for _, x in ipairs(state(ARGV[i])) do out[#out+1] = x end
end
for _, x in ipairs(refused) do out[#out+1] = x end
return out
`, goRejoin)

// Remove takes this object's slices out of the totals and releases its
// registration (Close): the id is free for another counter, and a late
// Rejoin of this one is refused for DeadAfter (see released); with
// ARGV[4] "keep" it leaves the slices (they expire with the last
// heartbeat, or leave when another counter takes the id). With KEYS[11]
// it also deletes the object's batch marker. Reply: its status ("ok":
// removed or released).
var Remove = driver.NewScript("instancecounter-remove", luaPrelude+`
local st = status()
if st ~= 'dup' then
  if st == 'ok' and ARGV[4] ~= 'keep' then drop(me) end
  if st ~= 'ok' or ARGV[4] ~= 'keep' then redis.call('ZADD', INST, fmt(now_ms + dead_after), me) end
  redis.call('HSET', REG, me, RELEASED .. nonce)
end
if KEYS[11] then
  local last = redis.call('GET', KEYS[11])
  if last and string.sub(last, 1, #nonce + 1) == nonce .. ':' then redis.call('DEL', KEYS[11]) end
end
return st
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	s, err := c.status()
	if err != nil {
		return backend.Value{}, err
	}
	if s != StatusDup {
		keep := len(args) > 3 && args[3] == "keep"
		if s == StatusOK && !keep {
			if err := c.drop(c.me); err != nil {
				return backend.Value{}, err
			}
		}
		if s != StatusOK || !keep {
			c.st.ZAdd(c.inst, float64(c.now+c.deadAfter), c.me)
		}
		st.HSet(c.reg, c.me, released+c.nonce)
	}
	if len(keys) > 10 {
		if last, ok, err := st.Get(keys[10]); err != nil {
			return backend.Value{}, err
		} else if ok && strings.HasPrefix(last, c.nonce+":") {
			st.Del(keys[10])
		}
	}
	return backend.Str(s), nil
})

// Clear deletes every counter of the prefix; its time becomes every key's
// epoch (the cleared time exceeds every epoch so far), so no instance
// re-contributes an older slice. Reply {status}, or {"ok", version,
// stamp, cleared}.
var Clear = driver.NewScript("instancecounter-clear", luaPrelude+`
cleanup()
local st = status()
if st ~= 'ok' then return {st} end
refresh()
local v = version()
local t = stamp()
local c = math.max(t, cleared() + 1)
for _, e in ipairs(redis.call('HVALS', EPOCH)) do c = math.max(c, tonumber(e) + 1) end
redis.call('DEL', TOTAL, SLICES, OWNED, HOLDERS, EPOCH, REJ)
redis.call('SET', CLEARED, fmt(c))
return {'ok', fmt(v), fmt(t), fmt(c)}
`, goClear)

// Flush applies a Lax batch once. KEYS[11] is the object's batch marker.
// ARGV: 4 batch number, 5 marker ttl ms, then pairs (key, delta). Reply
// {status}, or {"ok", applied (1, or 0 for a batch applied before),
// version, stamp, cleared, then per key cumulative, mine, epoch,
// rejoined, then, for a batch a Rejoin settled with refused keys (see
// Rejoin), per pair of such a key its 0-based index and the reason}. All or nothing: a pair that cannot be applied (an overflow,
// a value that is not an integer) undoes the pairs before it and fails the
// batch with CodeItem, the pair's 0-based index and the reason
// ("DKITEM 2 DKOVERFLOW <field>"), so that the caller can set that key
// aside and send the others again. It is raised only after the marker
// said the batch was not applied before: it proves that no earlier attempt
// of the batch applied it.
var Flush = driver.NewScript("instancecounter-flush", luaPrelude+`
local seq = ARGV[4]
cleanup()
local st = status()
if st ~= 'ok' then return {st} end
refresh()
local v = version()
local t = stamp()
local applied, was_refused = 1, {}
local last = redis.call('GET', KEYS[11])
if last and string.sub(last, 1, #nonce + 1) == nonce .. ':' then
  local ls, rest = string.match(string.sub(last, #nonce + 2), '^(%d+):%d+(.*)$')
  if ls and tonumber(ls) >= tonumber(seq) then applied = 0 end
  if ls and tonumber(ls) == tonumber(seq) then
    for r in string.gmatch(rest, ':([^:]+)') do was_refused[string.sub(r, 2)] = string.sub(r, 1, 1) end
  end
end
if applied == 1 then
  local done = {}
  for i = 6, #ARGV, 2 do
    local e = add(ARGV[i], ARGV[i+1])
    if e then
      for j = #done, 1, -1 do add(done[j][1], neg(done[j][2])) end
      return redis.error_reply('DKITEM ' .. fmt((i - 6) / 2) .. ' ' .. e.err)
    end
    done[#done+1] = {ARGV[i], ARGV[i+1]}
  end
  redis.call('SET', KEYS[11], nonce .. ':' .. seq .. ':' .. fmt(t), 'PX', ARGV[5])
end
local out = {'ok', applied, fmt(v), fmt(t), fmt(cleared())}
for i = 6, #ARGV, 2 do
  for _, x in ipairs(state(ARGV[i])) do out[#out+1] = x end
end
for i = 6, #ARGV, 2 do
  local code = was_refused[ARGV[i]]
  if code then
    out[#out+1] = fmt((i - 6) / 2)
    if code == 'o' then out[#out+1] = 'DKOVERFLOW ' .. ARGV[i] else out[#out+1] = REFUSED_NOT_INT end
  end
end
return out
`, goFlush)

// All returns every instance-counter script.
func All() []*driver.Script {
	return []*driver.Script{Op, OpBatch, Heartbeat, Rejoin, Remove, Clear, Flush}
}

// ctx is the Go twin's view of the prelude.
type ctx struct {
	st                                         driver.Store
	inst, total, slices, owned, holders, epoch string
	reg, rej, cleared, clock                   string
	nonce, me                                  string
	deadAfter                                  int64
	now                                        int64 // ms
	nowUS                                      int64
	t                                          int64 // this script's stamp
	born                                       int64 // the first stamp of the data set (stamp)
}

func newCtx(st driver.Store, keys, args []string) (*ctx, error) {
	if len(keys) < 10 || len(args) < 3 {
		return nil, fmt.Errorf("ERR instancecounter: %d keys, %d args", len(keys), len(args))
	}
	da, err := strconv.ParseInt(args[2], 10, 64)
	if err != nil {
		return nil, err
	}
	return &ctx{st: st, inst: keys[0], total: keys[1], slices: keys[2], owned: keys[3], holders: keys[4], epoch: keys[5],
		reg: keys[6], rej: keys[7], cleared: keys[8], clock: keys[9],
		nonce: args[0], me: args[1], deadAfter: da, now: driver.NowMillis(st), nowUS: st.Now().UnixMicro()}, nil
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

func fmtInt(n int64) string { return strconv.FormatInt(n, 10) }

// num reads a decimal the way tonumber does for the values these scripts
// store (integers; times and versions well below 2^53).
func num(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// hincr adds the decimal d to h[f], exactly, all or nothing. d may be
// 9223372036854775808, the negation of a slice of -2^63, which int64
// lacks: it is added in two steps (the Lua's hadd).
func (c *ctx) hincr(h, f, d string) error {
	if d == minNeg {
		if _, err := scriptlib.HIncr(c.st, h, f, math.MaxInt64); err != nil {
			return err
		}
		if _, err := scriptlib.HIncr(c.st, h, f, 1); err != nil {
			scriptlib.HIncr(c.st, h, f, -math.MaxInt64)
			return err
		}
		return nil
	}
	n, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return err
	}
	_, err = scriptlib.HIncr(c.st, h, f, n)
	return err
}

// released starts the registration of a closed counter, followed by its
// nonce (Remove; the Lua's RELEASED): the id is free — a counter that
// registers with it is absent to the scripts and its Rejoin drops what is
// left (the slices kept with "keep") — but a Rejoin of the closed counter
// itself, sent before Close and run after Remove, is refused ("closed"),
// until the registration expires (DeadAfter after Remove, or with the
// last heartbeat when the slices were kept).
const released = "-:"

// Released reports whether reg, a value of the registry hash, is the
// registration a closed counter leaves behind (see released): its id
// stays in the instances zset for DeadAfter, but nothing heartbeats it.
func Released(reg string) bool { return strings.HasPrefix(reg, released) }

// minNeg is neg of math.MinInt64's decimal.
const minNeg = "9223372036854775808"

func (c *ctx) get(h, f string) string {
	v, ok, _ := c.st.HGet(h, f)
	if !ok {
		return "0"
	}
	return v
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
				continue // stays, counted (see the Lua's drop)
			}
		}
		c.st.HDel(c.slices, m)
		c.st.HDel(c.rej, m)
		c.st.ZRem(c.holders, keyspace.Join(key, d))
		c.st.ZRem(c.owned, m)
	}
	c.st.ZRem(c.inst, d)
	c.st.HDel(c.reg, d)
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

func (c *ctx) status() (string, error) {
	if _, ok, err := c.st.ZScore(c.inst, c.me); err != nil || !ok {
		return StatusAbsent, err
	}
	reg, ok, err := c.st.HGet(c.reg, c.me)
	if err != nil {
		return "", err
	}
	if !ok {
		return StatusOK, c.st.HSet(c.reg, c.me, c.nonce+":0")
	}
	if !strings.HasPrefix(reg, c.nonce+":") {
		if strings.HasPrefix(reg, released) {
			return StatusAbsent, nil
		}
		return StatusDup, nil
	}
	return StatusOK, nil
}

func (c *ctx) refresh() { c.st.ZAdd(c.inst, float64(c.now+c.deadAfter), c.me) }

func (c *ctx) version() int64 {
	reg, _, _ := c.st.HGet(c.reg, c.me)
	v := num(reg[len(c.nonce)+1:]) + 1
	c.st.HSet(c.reg, c.me, c.nonce+":"+fmtInt(v))
	return v
}

// stamp is the Lua's stamp; it sets c.born.
func (c *ctx) stamp() int64 {
	v, ok, _ := c.st.Get(c.clock)
	last, born := num(v), int64(-1)
	if l, b, two := strings.Cut(v, ":"); ok && two && digits(l) && digits(b) {
		last, born = num(l), num(b)
	}
	s := max(c.nowUS, last+1)
	c.born = born
	if born < 0 {
		c.born = s
	}
	c.st.Set(c.clock, fmtInt(s)+":"+fmtInt(c.born), 0)
	return s
}

func (c *ctx) clearedAt() int64 {
	v, _, _ := c.st.Get(c.cleared)
	return num(v)
}

func (c *ctx) epochOf(key string) int64 { return max(num(c.get(c.epoch, key)), c.clearedAt()) }

func (c *ctx) bump(key string, t int64) int64 {
	e := max(t, c.epochOf(key)+1)
	c.st.HSet(c.epoch, key, fmtInt(e))
	return e
}

func (c *ctx) wipe(key string) error {
	ms, err := c.lex(c.holders, key)
	if err != nil {
		return err
	}
	for _, m := range ms {
		f := keyspace.Join(m[len(key)+1:], key)
		c.st.HDel(c.slices, f)
		c.st.HDel(c.rej, f)
		c.st.ZRem(c.owned, f)
		c.st.ZRem(c.holders, m)
	}
	return nil
}

func (c *ctx) unjoin(f, key string) error {
	r, ok, err := c.st.HGet(c.rej, f)
	if err != nil || !ok {
		return err
	}
	c.st.HDel(c.rej, f)
	if _, has, _ := c.st.HGet(c.slices, f); r == "0" || !has {
		return nil
	}
	if err := c.hincr(c.slices, f, neg(r)); err != nil {
		return err
	}
	return c.hincr(c.total, key, neg(r))
}

func (c *ctx) strip(key string) error {
	ms, err := c.lex(c.holders, key)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := c.unjoin(keyspace.Join(m[len(key)+1:], key), key); err != nil {
			return err
		}
	}
	return nil
}

func (c *ctx) add(key, d string) error {
	f := keyspace.Join(c.me, key)
	_, had, err := c.st.HGet(c.slices, f)
	if err != nil {
		return err
	}
	if err := c.hincr(c.total, key, d); err != nil {
		return err
	}
	if err := c.hincr(c.slices, f, d); err != nil {
		c.hincr(c.total, key, neg(d))
		return err
	}
	if !had {
		c.st.ZAdd(c.owned, 0, f)
		c.st.ZAdd(c.holders, 0, keyspace.Join(key, c.me))
	}
	return nil
}

func (c *ctx) state(key string) []backend.Value {
	f := keyspace.Join(c.me, key)
	return []backend.Value{backend.Str(c.get(c.total, key)), backend.Str(c.get(c.slices, f)),
		backend.Str(fmtInt(c.epochOf(key))), backend.Str(c.get(c.rej, f))}
}

// begin runs what every script of a registered object starts with:
// cleanup, status, refresh and version. ok is false when the reply is
// just the status.
func (c *ctx) begin() (head []backend.Value, ok bool, err error) {
	if head, ok, err := c.enter(); err != nil || !ok {
		return head, ok, err
	}
	v := c.version()
	c.t = c.stamp()
	return []backend.Value{backend.Str(StatusOK), backend.Str(fmtInt(v))}, true, nil
}

// enter is begin without version and stamp: cleanup, status, refresh.
func (c *ctx) enter() (head []backend.Value, ok bool, err error) {
	if err := c.cleanup(); err != nil {
		return nil, false, err
	}
	s, err := c.status()
	if err != nil {
		return nil, false, err
	}
	if s != StatusOK {
		return []backend.Value{backend.Str(s)}, false, nil
	}
	c.refresh()
	return nil, true, nil
}

func goOp(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	head, ok, err := c.enter()
	if err != nil || !ok {
		return backend.Arr(head...), err
	}
	return c.opOne(args[3], args[4], args[5], args[6], args[7])
}

func goOpBatch(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	if (len(args)-3)%5 != 0 {
		return backend.Value{}, fmt.Errorf("ERR instancecounter batch arguments: %d is not a multiple of 5", len(args)-3)
	}
	head, ok, err := c.enter()
	if err != nil || !ok {
		return backend.Arr(head...), err
	}
	out := []backend.Value{backend.Str(StatusOK)}
	for i := 3; i+4 < len(args); i += 5 {
		v, err := c.opOne(args[i], args[i+1], args[i+2], args[i+3], args[i+4])
		if err != nil {
			var se *backend.ScriptError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
			}
			v = backend.Arr(backend.Str(msg))
		}
		out = append(out, v)
	}
	return backend.Arr(out...), nil
}

// opOne is op_one: one operation of a registered object, after begin's
// cleanup, status and refresh.
func (c *ctx) opOne(mode, key, op, x, n string) (backend.Value, error) {
	st := c.st
	head := []backend.Value{backend.Str(StatusOK), backend.Str(fmtInt(c.version()))}
	c.t = c.stamp()
	head = append(head, backend.Str(fmtInt(c.t)), backend.Str(fmtInt(c.clearedAt())))
	f := keyspace.Join(c.me, key)
	s := c.get(c.slices, f)
	total := c.get(c.total, key)
	tv, sv, xv := num(total), num(s), num(x)
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
		st.HDel(c.rej, f)
	case mode == "set" || (mode == "setif" && scriptlib.OpMatches(op, tv, xv)):
		if err := c.wipe(key); err != nil {
			return backend.Value{}, err
		}
		st.HSet(c.total, key, n)
		st.HSet(c.slices, f, n)
		st.ZAdd(c.owned, 0, f)
		st.ZAdd(c.holders, 0, keyspace.Join(key, c.me))
		c.bump(key, c.t)
	case mode == "delmine":
		if err := c.add(key, neg(s)); err != nil {
			return backend.Value{}, err
		}
		st.HDel(c.slices, f)
		st.HDel(c.rej, f)
		st.ZRem(c.owned, f)
		st.ZRem(c.holders, keyspace.Join(key, c.me))
	case mode == "del":
		if err := c.wipe(key); err != nil {
			return backend.Value{}, err
		}
		st.HDel(c.total, key)
		ep := c.bump(key, c.t)
		return backend.Arr(append(head, backend.Str(total), backend.Str(s), backend.Str(fmtInt(ep)), backend.Str("0"))...), nil
	}
	return backend.Arr(append(head, c.state(key)...)...), nil
}

func goRejoin(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	known, maxv, seq, ttl := num(args[3]), num(args[4]), args[5], args[6]
	if err := c.cleanup(); err != nil {
		return backend.Value{}, err
	}
	if reg, _, _ := st.HGet(c.reg, c.me); reg == released+c.nonce {
		return backend.Arr(backend.Str(StatusClosed)), nil
	}
	s, err := c.status()
	if err != nil {
		return backend.Value{}, err
	}
	if s == StatusDup {
		return backend.Arr(backend.Str(s)), nil
	}
	if s == StatusOK {
		c.refresh()
		return backend.Arr(backend.Str(s)), nil
	}
	if err := c.drop(c.me); err != nil {
		return backend.Value{}, err
	}
	c.refresh()
	st.HSet(c.reg, c.me, c.nonce+":"+fmtInt(maxv))
	v := c.version()
	c.t = c.stamp()
	if known > c.clearedAt() {
		st.Set(c.cleared, fmtInt(known), 0)
		all, err := st.HGetAll(c.rej)
		if err != nil {
			return backend.Value{}, err
		}
		fs := make([]string, 0, len(all))
		for f := range all {
			fs = append(fs, f)
		}
		sort.Strings(fs) // HKEYS order does not matter; a stable one keeps errors reproducible
		for _, f := range fs {
			key := f[strings.IndexByte(f, ':')+1:]
			if num(c.get(c.epoch, key)) < known {
				if err := c.unjoin(f, key); err != nil {
					return backend.Value{}, err
				}
			}
		}
	}
	appliedAt, applied := int64(0), false
	var m marker
	if seq != "0" {
		var err error
		if m, err = c.marker(keys[10], seq); err != nil {
			return backend.Value{}, err
		}
		appliedAt, applied = m.stamp, m.applied
	}
	out := []backend.Value{backend.Str(StatusJoined), backend.Str(fmtInt(v)), backend.Str(fmtInt(c.t))}
	var refused []backend.Value
	marks := ""
	for i := 7; i+5 < len(args); i += 6 {
		key, ce, cs, cr, cat, d := args[i], num(args[i+1]), args[i+2], args[i+3], num(args[i+4]), args[i+5]
		f := keyspace.Join(c.me, key)
		e := c.epochOf(key)
		if ce > e {
			st.HSet(c.epoch, key, fmtInt(ce))
			if err := c.strip(key); err != nil {
				return backend.Value{}, err
			}
			e = ce
		}
		var parts []string
		switch {
		case ce == e:
			parts = []string{cs}
		case cat > e:
			parts = []string{cs, neg(cr)}
		}
		for _, p := range parts {
			if p != "0" {
				c.add(key, p) // an overflow leaves the key as it is, like the Lua
			}
		}
		// The rejoined part: see the Lua.
		r, ok, _ := st.HGet(c.slices, f)
		if ok && r != "0" && cat >= c.born {
			if ce == e {
				r = cr
			} else {
				r = "0"
			}
		}
		if ok && r != "0" {
			st.HSet(c.rej, f, r)
		}
		if _, was := m.refused[key]; d != "0" && (!applied || appliedAt > e || was) {
			if err := c.add(key, d); err != nil {
				refused = append(refused, backend.Str(fmtInt(int64((i-7)/6))), backend.Str(err.Error()))
				code := "x"
				if strings.HasPrefix(err.Error(), scriptlib.CodeOverflow+" ") {
					code = "o"
				}
				marks += ":" + code + key
			}
		}
	}
	if seq != "0" && (!applied || m.same && (marks != "" || len(m.refused) > 0)) {
		ms, err := driver.ParseMillis(ttl)
		if err != nil {
			return backend.Value{}, err
		}
		at := c.t
		if applied {
			at = m.stamp
		}
		st.Set(keys[10], c.nonce+":"+seq+":"+fmtInt(at)+marks, ms)
	}
	out = append(out, backend.Str(fmtInt(c.clearedAt())))
	for i := 7; i+5 < len(args); i += 6 {
		out = append(out, c.state(args[i])...)
	}
	return backend.Arr(append(out, refused...)...), nil
}

// marker is what a Lax batch marker says of batch seq.
type marker struct {
	applied bool            // seq or a later batch was applied
	stamp   int64           // when (the marker's stamp)
	same    bool            // the marker is seq's own
	refused map[string]byte // seq's own: key → 'o' (overflow) or 'x', refused by a Rejoin
}

// marker reads the batch marker mk ("<nonce>:<seq>:<stamp>[:<code><key>]…")
// for batch seq.
func (c *ctx) marker(mk, seq string) (marker, error) {
	var m marker
	last, ok, err := c.st.Get(mk)
	if err != nil || !ok || !strings.HasPrefix(last, c.nonce+":") {
		return m, err
	}
	ls, rest, ok := strings.Cut(last[len(c.nonce)+1:], ":")
	if !ok || !digits(ls) {
		return m, nil
	}
	lt, rest, _ := strings.Cut(rest, ":")
	if !digits(lt) {
		return m, nil
	}
	m.applied, m.stamp = num(ls) >= num(seq), num(lt)
	if num(ls) == num(seq) {
		m.same = true
		for _, r := range strings.Split(rest, ":") {
			if len(r) >= 2 {
				if m.refused == nil {
					m.refused = map[string]byte{}
				}
				m.refused[r[1:]] = r[0]
			}
		}
	}
	return m, nil
}

// digits reports whether s is a non-empty run of decimal digits (Lua's %d+).
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func goClear(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	head, ok, err := c.begin()
	if err != nil || !ok {
		return backend.Arr(head...), err
	}
	cl := max(c.t, c.clearedAt()+1)
	all, err := st.HGetAll(c.epoch)
	if err != nil {
		return backend.Value{}, err
	}
	for _, e := range all {
		cl = max(cl, num(e)+1)
	}
	st.Del(c.total, c.slices, c.owned, c.holders, c.epoch, c.rej)
	st.Set(c.cleared, fmtInt(cl), 0)
	return backend.Arr(append(head, backend.Str(fmtInt(c.t)), backend.Str(fmtInt(cl)))...), nil
}

func goFlush(st driver.Store, keys, args []string) (backend.Value, error) {
	c, err := newCtx(st, keys, args)
	if err != nil {
		return backend.Value{}, err
	}
	seq := args[3]
	head, ok, err := c.begin()
	if err != nil || !ok {
		return backend.Arr(head...), err
	}
	applied := int64(1)
	m, err := c.marker(keys[10], seq)
	if err != nil {
		return backend.Value{}, err
	}
	if m.applied {
		applied = 0
	}
	if applied == 1 {
		type done struct{ key, d string }
		var ds []done
		for i := 5; i+1 < len(args); i += 2 {
			if err := c.add(args[i], args[i+1]); err != nil {
				for j := len(ds) - 1; j >= 0; j-- {
					c.add(ds[j].key, neg(ds[j].d))
				}
				return backend.Value{}, fmt.Errorf("%s %d %s", CodeItem, (i-5)/2, err.Error())
			}
			ds = append(ds, done{args[i], args[i+1]})
		}
		ttl, err := driver.ParseMillis(args[4])
		if err != nil {
			return backend.Value{}, err
		}
		st.Set(keys[10], c.nonce+":"+seq+":"+fmtInt(c.t), ttl)
	}
	out := []backend.Value{head[0], backend.Int(applied), head[1], backend.Str(fmtInt(c.t)), backend.Str(fmtInt(c.clearedAt()))}
	for i := 5; i+1 < len(args); i += 2 {
		out = append(out, c.state(args[i])...)
	}
	for i := 5; i+1 < len(args); i += 2 {
		switch m.refused[args[i]] {
		case 'o':
			out = append(out, backend.Str(fmtInt(int64((i-5)/2))), backend.Str(scriptlib.CodeOverflow+" "+args[i]))
		case 'x':
			out = append(out, backend.Str(fmtInt(int64((i-5)/2))), backend.Str(refusedNotInt))
		}
	}
	return backend.Arr(out...), nil
}

// refusedNotInt is the reason a resent Flush gives for a key a Rejoin
// refused for another cause than an overflow.
const refusedNotInt = "ERR hash value is not an integer"
