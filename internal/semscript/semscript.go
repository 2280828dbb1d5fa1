// Package semscript holds the scripts of primitives/semaphore, each Lua
// source with its Go twin; KEYS and values follow keyspace.Semaphore.
// Renewing and releasing a permit reuse lockscript.RenewShared and
// lockscript.ReleaseShared: a permit is a member of a sorted set scored by
// its expiry, exactly like a read lease.
package semscript

import (
	"errors"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Permit members are "<owner>:<nonce>:<n>:<token>" (owner escaped, so the
// member has exactly four ':'-separated parts); scripts find an
// acquisition's permit by the prefix "<owner>:<nonce>:".

const luaFmt = `local function fmt(n) return string.format('%d', n) end
`

// Acquire takes n units if they are free and nobody queued is ahead.
// KEYS: holders, queue, qexp, fence, gone. ARGV: id, n, capacity, ttl ms,
// waiting-mark ttl ms ("0": do not queue), retry ("1": look for a permit
// this id may already hold), channel. Returns the fencing token, or 0.
//
// An id that gave up (GiveUp's tombstone in gone, still live) is refused
// and changes nothing: an attempt that reaches the server after its wait
// gave up (a driver that stopped waiting for a request it had written)
// neither puts the departed waiter back in line nor takes units.
//
// Policy (FIFO): an acquisition succeeds only when n units are free and no
// live waiter is queued ahead of it; a waiter that cannot get in queues
// (once, keeping its place: its score is above every score in line, the
// server time in µs if larger, so ties cannot reorder arrivals) and
// refreshes its mark on every attempt; a
// mark not refreshed in time drops out. The line's keys expire with the
// longest-lived mark (a refresh never shortens them). A grant that leaves waiters
// publishes, so that the next one tries at once.
var Acquire = driver.NewScript("semaphore-acquire", driver.LuaNowMillis+luaFmt+`
local id, pre = ARGV[1], ARGV[1] .. ':'
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', fmt(now_ms))
if redis.call('ZSCORE', KEYS[5], id) then return 0 end
local n, cap, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function extend()
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
end
local function dequeue()
  if redis.call('ZREM', KEYS[2], id) == 1 then
    redis.call('ZREM', KEYS[3], id)
    if redis.call('ZCARD', KEYS[2]) > 0 then redis.pcall('PUBLISH', ARGV[7], 'advanced') end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms))
local used = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if ARGV[6] == '1' and string.sub(m, 1, #pre) == pre then
    redis.call('ZADD', KEYS[1], fmt(now_ms + ttl), m)
    extend()
    dequeue()
    return tonumber(string.match(m, ':(%d+)$'))
  end
  used = used + tonumber(string.match(m, ':(%d+):%d+$'))
end
for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', fmt(now_ms))) do
  redis.call('ZREM', KEYS[2], w)
  redis.call('ZREM', KEYS[3], w)
end
local rank = redis.call('ZRANK', KEYS[2], id)
local ahead = rank or redis.call('ZCARD', KEYS[2])
if ahead == 0 and used + n <= cap then
  local token = math.max(tonumber(redis.call('GET', KEYS[4]) or '0') + 1, now_ms * 1000)
  redis.call('SET', KEYS[4], fmt(token))
  redis.call('ZADD', KEYS[1], fmt(now_ms + ttl), pre .. fmt(n) .. ':' .. fmt(token))
  extend()
  dequeue()
  return token
end
if ARGV[5] ~= '0' then
  local mark = tonumber(ARGV[5])
  if not rank then
    local seq, last = now_ms * 1000, redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
    if last[2] then seq = math.max(seq, tonumber(last[2]) + 1) end
    redis.call('ZADD', KEYS[2], fmt(seq), id)
  end
  redis.call('ZADD', KEYS[3], fmt(now_ms + mark), id)
  -- The line lives as long as its longest-lived mark: never cut it to
  -- this waiter's (a shorter RetryInterval than another waiter's).
  for k = 2, 3 do
    if redis.call('PTTL', KEYS[k]) < mark then redis.call('PEXPIRE', KEYS[k], ARGV[5]) end
  end
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	id, pre := args[0], args[0]+":"
	n, err := strconv.ParseInt(args[1], 10, 64)
	if err != nil {
		return backend.Value{}, errors.New("ERR n is not an integer")
	}
	capacity, err := strconv.ParseInt(args[2], 10, 64)
	if err != nil {
		return backend.Value{}, errors.New("ERR capacity is not an integer")
	}
	ttl, err := driver.ParseMillis(args[3])
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	if gone, err := goneNow(st, keys[4], id, now); err != nil || gone {
		return backend.Int(0), err
	}
	extend := func() {
		if st.PTTL(keys[0]) < ttl.Milliseconds() {
			st.PExpire(keys[0], ttl)
		}
	}
	dequeue := func() error {
		if k, err := st.ZRem(keys[1], id); err != nil || k == 0 {
			return err
		}
		st.ZRem(keys[2], id)
		if c, _ := st.ZCard(keys[1]); c > 0 {
			st.Publish(args[6], "advanced")
		}
		return nil
	}
	used, mine, err := Held(st, keys[0], pre, args[5] == "1")
	if err != nil {
		return backend.Value{}, err
	}
	if mine != "" {
		st.ZAdd(keys[0], float64(now+ttl.Milliseconds()), mine)
		extend()
		if err := dequeue(); err != nil {
			return backend.Value{}, err
		}
		tok, _ := strconv.ParseInt(mine[strings.LastIndexByte(mine, ':')+1:], 10, 64)
		return backend.Int(tok), nil
	}
	expired, err := st.ZRangeByScore(keys[2], -1e300, float64(now))
	if err != nil {
		return backend.Value{}, err
	}
	for _, w := range expired {
		st.ZRem(keys[1], w.Member)
		st.ZRem(keys[2], w.Member)
	}
	queue, err := st.ZRangeByScore(keys[1], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	rank := -1
	for i, w := range queue {
		if w.Member == id {
			rank = i
			break
		}
	}
	ahead := rank
	if rank < 0 {
		ahead = len(queue)
	}
	if ahead == 0 && used+n <= capacity {
		token, err := NextToken(st, keys[3])
		if err != nil {
			return backend.Value{}, err
		}
		member := pre + strconv.FormatInt(n, 10) + ":" + strconv.FormatInt(token, 10)
		if err := st.ZAdd(keys[0], float64(now+ttl.Milliseconds()), member); err != nil {
			return backend.Value{}, err
		}
		extend()
		if err := dequeue(); err != nil {
			return backend.Value{}, err
		}
		return backend.Int(token), nil
	}
	if args[4] != "0" {
		mark, err := driver.ParseMillis(args[4])
		if err != nil {
			return backend.Value{}, err
		}
		if rank < 0 {
			seq := float64(now * 1000)
			if len(queue) > 0 {
				seq = max(seq, queue[len(queue)-1].Score+1)
			}
			if err := st.ZAdd(keys[1], seq, id); err != nil {
				return backend.Value{}, err
			}
		}
		if err := st.ZAdd(keys[2], float64(now+mark.Milliseconds()), id); err != nil {
			return backend.Value{}, err
		}
		for _, k := range keys[1:3] { // never cut the line's TTL to this waiter's mark
			if st.PTTL(k) < mark.Milliseconds() {
				st.PExpire(k, mark)
			}
		}
	}
	return backend.Int(0), nil
})

// GiveUp: KEYS holders, queue, qexp, gone; ARGV id, tombstone ms,
// channel. A wait that ends without a permit removes what its attempts may
// have left: the permit of acquisition id (its reply may have been lost)
// and its place in line, so that those behind it need not wait for its
// mark to expire; and it leaves a tombstone for id, live for the
// tombstone's ms, which makes Acquire refuse id: an attempt of the wait
// that reaches the server later (the driver stopped waiting for a request
// it had written, and the give-up went out on another connection) takes
// nothing and does not queue. The tombstone outlives any mark or lease
// that attempt could set, so a request even later than that costs at most
// its own lateness. Publishes (best effort) when it removed something, to
// wake the waiters. Returns 1 when it removed something, else 0.
var GiveUp = driver.NewScript("semaphore-give-up", driver.LuaNowMillis+luaFmt+`
local id, pre, ms = ARGV[1], ARGV[1] .. ':', tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', fmt(now_ms))
redis.call('ZADD', KEYS[4], fmt(now_ms + ms), id)
if redis.call('PTTL', KEYS[4]) < ms then redis.call('PEXPIRE', KEYS[4], ARGV[2]) end
local removed = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #pre) == pre then removed = removed + redis.call('ZREM', KEYS[1], m) end
end
removed = removed + redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
if removed > 0 then
  redis.pcall('PUBLISH', ARGV[3], 'gave-up')
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	id, pre := args[0], args[0]+":"
	ms, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	if _, err := goneNow(st, keys[3], "", now); err != nil {
		return backend.Value{}, err
	}
	if err := st.ZAdd(keys[3], float64(now+ms.Milliseconds()), id); err != nil {
		return backend.Value{}, err
	}
	if st.PTTL(keys[3]) < ms.Milliseconds() {
		st.PExpire(keys[3], ms)
	}
	held, err := st.ZRangeByScore(keys[0], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	removed := 0
	for _, m := range held {
		if strings.HasPrefix(m.Member, pre) {
			k, err := st.ZRem(keys[0], m.Member)
			if err != nil {
				return backend.Value{}, err
			}
			removed += k
		}
	}
	k, err := st.ZRem(keys[1], id)
	if err != nil {
		return backend.Value{}, err
	}
	removed += k
	st.ZRem(keys[2], id)
	if removed == 0 {
		return backend.Int(0), nil
	}
	st.Publish(args[2], "gave-up")
	return backend.Int(1), nil
})

// goneNow drops the expired tombstones of gone and tells whether id has a
// live one.
func goneNow(st driver.Store, gone, id string, now int64) (bool, error) {
	expired, err := st.ZRangeByScore(gone, -1e300, float64(now))
	if err != nil {
		return false, err
	}
	for _, m := range expired {
		st.ZRem(gone, m.Member)
	}
	if id == "" {
		return false, nil
	}
	_, ok, err := st.ZScore(gone, id)
	return ok, err
}

// Used: KEYS holders. Returns the units held by live permits (expired
// ones are dropped first).
var Used = driver.NewScript("semaphore-used", driver.LuaNowMillis+luaFmt+`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms))
local used = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  used = used + tonumber(string.match(m, ':(%d+):%d+$'))
end
return used
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
	used, _, err := Held(st, keys[0], "", false)
	return backend.Int(used), err
})

// Held drops the expired permits of holders and sums the units of the
// rest; with find, it returns the first permit whose member starts with
// pre instead (used is then not complete).
func Held(st driver.Store, holders, pre string, find bool) (used int64, mine string, err error) {
	now := float64(driver.NowMillis(st))
	expired, err := st.ZRangeByScore(holders, -1e300, now)
	if err != nil {
		return 0, "", err
	}
	for _, m := range expired {
		st.ZRem(holders, m.Member)
	}
	ms, err := st.ZRangeByScore(holders, -1e300, 1e300)
	if err != nil {
		return 0, "", err
	}
	for _, m := range ms {
		if find && strings.HasPrefix(m.Member, pre) {
			return 0, m.Member, nil
		}
		parts := strings.Split(m.Member, ":")
		if len(parts) < 2 {
			return 0, "", errors.New("ERR malformed permit " + strconv.Quote(m.Member))
		}
		u, err := strconv.ParseInt(parts[len(parts)-2], 10, 64)
		if err != nil {
			return 0, "", errors.New("ERR malformed permit " + strconv.Quote(m.Member))
		}
		used += u
	}
	return used, "", nil
}

// NextToken is the Go twin of the token rule shared with the lock: above
// the last token and at least the server time in microseconds.
func NextToken(st driver.Store, key string) (int64, error) {
	v, _, err := st.Get(key)
	if err != nil {
		return 0, err
	}
	n := int64(0)
	if v != "" {
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return 0, errors.New("ERR value is not an integer or out of range")
		}
	}
	n = max(n+1, driver.NowMillis(st)*1000)
	return n, st.Set(key, strconv.FormatInt(n, 10), 0)
}

// All returns every script of the semaphore package (its own; it also
// runs lockscript.RenewShared and lockscript.ReleaseShared).
func All() []*driver.Script { return []*driver.Script{Acquire, GiveUp, Used} }
