// Package lockscript holds the scripts of primitives/lock, each Lua source
// with its Go twin; KEYS and values follow keyspace.Lock and
// keyspace.LockAcquisition. The lock package is their only user apart from
// distkit's own tests.
package lockscript

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Lock values are "<owner>:<acquisition id>:<token>"; scripts match a
// holder by the prefix "<owner>:<acquisition id>:", so a retried attempt
// whose first try had an unknown outcome recognises its own lease.

const luaFmt = `local function fmt(n) return string.format('%d', n) end
`

// luaWaiters defines markWaiter(key, ms), which records that someone
// waits for the lock (and may be listening on its channel) for at least ms
// milliseconds, never shortening an earlier, longer mark; and mayPublish(key),
// which tells a releasing script whether anyone waits: the waiters key
// exists, or the caller gave none (an older client: publish as before).
// A release with nobody waiting publishes nothing, so an uncontended lock
// costs no PUBLISH (which a Cluster broadcasts to every node).
const luaWaiters = `local function markWaiter(k, ms)
  if k and ms and ms ~= '0' then
    if redis.call('PTTL', k) < tonumber(ms) then redis.call('SET', k, '1', 'PX', ms) end
  end
end
local function mayPublish(k)
  return not k or redis.call('EXISTS', k) == 1
end
`

// markWaiter is the Go twin of the Lua markWaiter: keys[i] and args[j]
// when present.
func markWaiter(st driver.Store, keys []string, i int, args []string, j int) error {
	if i >= len(keys) || j >= len(args) || args[j] == "0" {
		return nil
	}
	ms, err := driver.ParseMillis(args[j])
	if err != nil {
		return err
	}
	if st.PTTL(keys[i]) < ms.Milliseconds() {
		return st.Set(keys[i], "1", ms)
	}
	return nil
}

// mayPublish is the Go twin of the Lua mayPublish, for keys[i].
func mayPublish(st driver.Store, keys []string, i int) bool {
	return i >= len(keys) || st.Exists(keys[i])
}

// luaQueue defines the FIFO queue of exclusive waiters (Mutex and RWMutex
// writers): enqueue(q, qe, id, ms) puts id at the tail once (its score is
// above every score in line, the server time in µs if larger, so ties
// cannot reorder arrivals), refreshes its mark to now + ms and returns its
// rank (0: the head; entries whose marks lapsed may still count); pruneHead(q,
// qe) drops marks that expired and returns the first live waiter (or nil);
// leave(q, qe, id) takes id out of line. It needs now_ms.
const luaQueue = `local function enqueue(q, qe, id, ms)
  local rank = redis.call('ZRANK', q, id)
  if not rank then
    local seq, last = now_ms * 1000, redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
    if last[2] then seq = math.max(seq, tonumber(last[2]) + 1) end
    redis.call('ZADD', q, fmt(seq), id)
    rank = redis.call('ZCARD', q) - 1
  end
  redis.call('ZADD', qe, fmt(now_ms + tonumber(ms)), id)
  if redis.call('PTTL', q) < tonumber(ms) then redis.call('PEXPIRE', q, ms) end
  if redis.call('PTTL', qe) < tonumber(ms) then redis.call('PEXPIRE', qe, ms) end
  return rank
end
local function pruneHead(q, qe)
  for _, w in ipairs(redis.call('ZRANGEBYSCORE', qe, '-inf', fmt(now_ms))) do
    redis.call('ZREM', q, w)
    redis.call('ZREM', qe, w)
  end
  return redis.call('ZRANGE', q, 0, 0)[1]
end
local function leave(q, qe, id)
  if redis.call('ZREM', q, id) == 1 then redis.call('ZREM', qe, id) end
end
`

// Acquire takes the exclusive lock.
// KEYS: lock, readers, wwait, fence[, waiters[, queue, qexp]]. ARGV: id,
// ttl ms, wait-marker ttl ms ("0": do not mark a waiting writer)[, waiters
// mark ms ("0": the caller will not wait)]. Returns the fencing token, or 0
// when refused (and then marks the waiter), or −1 − its rank in the queue
// when refused and queued.
//
// With the queue keys, exclusive waiting is FIFO: a refused attempt that
// will wait queues its id (keeping its place) and refreshes its mark; a
// free lock goes only to the head of the live queue (a non-waiting attempt
// is refused while anyone waits); and a release hands the lock to the head
// directly (see Release), which then finds its own lease here and claims
// it: the lease is extended to the full TTL and its token returned. A queue
// lives only while the waiters key does (every entry is marked at most as
// long as that key), so a lock nobody waited for costs one EXISTS here.
var Acquire = driver.NewScript("lock-acquire", driver.LuaNowMillis+luaFmt+luaWaiters+luaQueue+`
local id, pre = ARGV[1], ARGV[1] .. ':'
local q, qe = KEYS[6], KEYS[7]
local function refuse()
  if ARGV[3] ~= '0' then redis.call('SET', KEYS[3], id, 'PX', ARGV[3]) end
  markWaiter(KEYS[5], ARGV[4])
  if q and ARGV[4] and ARGV[4] ~= '0' then return -1 - enqueue(q, qe, id, ARGV[4]) end
  return 0
end
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #pre) == pre then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    if redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
    if q then leave(q, qe, id) end
    return tonumber(string.sub(cur, #pre + 1))
  end
  return refuse()
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now_ms))
if redis.call('ZCARD', KEYS[2]) > 0 then return refuse() end
if q and redis.call('EXISTS', KEYS[5]) == 1 then
  local head = pruneHead(q, qe)
  if head and head ~= id then return refuse() end
end
local token = math.max(tonumber(redis.call('GET', KEYS[4]) or '0') + 1, now_ms * 1000)
redis.call('SET', KEYS[4], fmt(token))
redis.call('SET', KEYS[1], pre .. fmt(token), 'PX', ARGV[2])
if redis.call('GET', KEYS[3]) == id then redis.call('DEL', KEYS[3]) end
if q and redis.call('EXISTS', KEYS[5]) == 1 then leave(q, qe, id) end
return token
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	id, pre := args[0], args[0]+":"
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	queued := len(keys) > 6
	refuse := func() (backend.Value, error) {
		if args[2] != "0" {
			wt, err := driver.ParseMillis(args[2])
			if err != nil {
				return backend.Value{}, err
			}
			if err := st.Set(keys[2], id, wt); err != nil {
				return backend.Value{}, err
			}
		}
		if err := markWaiter(st, keys, 4, args, 3); err != nil {
			return backend.Value{}, err
		}
		if queued && len(args) > 3 && args[3] != "0" {
			rank, err := enqueue(st, keys[5], keys[6], id, args[3])
			if err != nil {
				return backend.Value{}, err
			}
			return backend.Int(-1 - int64(rank)), nil
		}
		return backend.Int(0), nil
	}
	dropMark := func() {
		if w, ok, _ := st.Get(keys[2]); ok && w == id {
			st.Del(keys[2])
		}
	}
	cur, held, err := st.Get(keys[0])
	if err != nil {
		return backend.Value{}, err
	}
	if held {
		if rest, ok := strings.CutPrefix(cur, pre); ok {
			st.PExpire(keys[0], ttl)
			dropMark()
			if queued {
				leave(st, keys[5], keys[6], id)
			}
			n, _ := strconv.ParseInt(rest, 10, 64)
			return backend.Int(n), nil
		}
		return refuse()
	}
	if n, err := liveReaders(st, keys[1]); err != nil {
		return backend.Value{}, err
	} else if n > 0 {
		return refuse()
	}
	queued = queued && st.Exists(keys[4])
	if queued {
		head, err := pruneHead(st, keys[5], keys[6])
		if err != nil {
			return backend.Value{}, err
		}
		if head != "" && head != id {
			return refuse()
		}
	}
	token, err := nextToken(st, keys[3])
	if err != nil {
		return backend.Value{}, err
	}
	if err := st.Set(keys[0], pre+strconv.FormatInt(token, 10), ttl); err != nil {
		return backend.Value{}, err
	}
	dropMark()
	if queued {
		leave(st, keys[5], keys[6], id)
	}
	return backend.Int(token), nil
})

// enqueue is the Go twin of the Lua enqueue.
func enqueue(st driver.Store, q, qe, id, ms string) (int, error) {
	mark, err := driver.ParseMillis(ms)
	if err != nil {
		return 0, err
	}
	now := driver.NowMillis(st)
	line, err := st.ZRangeByScore(q, -1e300, 1e300)
	if err != nil {
		return 0, err
	}
	rank := slices.IndexFunc(line, func(m driver.ZMember) bool { return m.Member == id })
	if rank < 0 {
		seq := float64(now * 1000)
		if len(line) > 0 {
			seq = max(seq, line[len(line)-1].Score+1)
		}
		if err := st.ZAdd(q, seq, id); err != nil {
			return 0, err
		}
		rank = len(line)
	}
	if err := st.ZAdd(qe, float64(now+mark.Milliseconds()), id); err != nil {
		return 0, err
	}
	for _, k := range []string{q, qe} {
		if st.PTTL(k) < mark.Milliseconds() {
			st.PExpire(k, mark)
		}
	}
	return rank, nil
}

// pruneHead is the Go twin of the Lua pruneHead: "" when nobody waits.
func pruneHead(st driver.Store, q, qe string) (string, error) {
	expired, err := st.ZRangeByScore(qe, -1e300, float64(driver.NowMillis(st)))
	if err != nil {
		return "", err
	}
	for _, w := range expired {
		st.ZRem(q, w.Member)
		st.ZRem(qe, w.Member)
	}
	line, err := st.ZRangeByScore(q, -1e300, 1e300)
	if err != nil || len(line) == 0 {
		return "", err
	}
	return line[0].Member, nil
}

// leave is the Go twin of the Lua leave.
func leave(st driver.Store, q, qe, id string) {
	if n, _ := st.ZRem(q, id); n == 1 {
		st.ZRem(qe, id)
	}
}

// AcquireShared takes a read lease.
// KEYS: lock, readers, wwait, fence[, waiters]. ARGV: id, ttl ms, retry
// ("1": look for a lease this id may already hold)[, waiters mark ms, as
// in Acquire]. Returns the token, or 0 (and then marks the waiter).
var AcquireShared = driver.NewScript("lock-acquire-shared", driver.LuaNowMillis+luaFmt+luaWaiters+`
local pre = ARGV[1] .. ':'
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now_ms))
local function extend()
  local p = redis.call('PTTL', KEYS[2])
  if p < ttl then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
end
if ARGV[3] == '1' then
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if string.sub(m, 1, #pre) == pre then
      redis.call('ZADD', KEYS[2], fmt(now_ms + ttl), m)
      extend()
      return tonumber(string.sub(m, #pre + 1))
    end
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  markWaiter(KEYS[5], ARGV[4])
  return 0
end
local token = math.max(tonumber(redis.call('GET', KEYS[4]) or '0') + 1, now_ms * 1000)
redis.call('SET', KEYS[4], fmt(token))
redis.call('ZADD', KEYS[2], fmt(now_ms + ttl), pre .. fmt(token))
extend()
return token
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	pre := args[0] + ":"
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	if _, err := liveReaders(st, keys[1]); err != nil {
		return backend.Value{}, err
	}
	extend := func() {
		if st.PTTL(keys[1]) < ttl.Milliseconds() {
			st.PExpire(keys[1], ttl)
		}
	}
	if args[2] == "1" {
		ms, err := st.ZRangeByScore(keys[1], -1e300, 1e300)
		if err != nil {
			return backend.Value{}, err
		}
		for _, m := range ms {
			if rest, ok := strings.CutPrefix(m.Member, pre); ok {
				st.ZAdd(keys[1], float64(now+ttl.Milliseconds()), m.Member)
				extend()
				n, _ := strconv.ParseInt(rest, 10, 64)
				return backend.Int(n), nil
			}
		}
	}
	if st.Exists(keys[0]) || st.Exists(keys[2]) {
		return backend.Int(0), markWaiter(st, keys, 4, args, 3)
	}
	token, err := nextToken(st, keys[3])
	if err != nil {
		return backend.Value{}, err
	}
	if err := st.ZAdd(keys[1], float64(now+ttl.Milliseconds()), pre+strconv.FormatInt(token, 10)); err != nil {
		return backend.Value{}, err
	}
	extend()
	return backend.Int(token), nil
})

// RenewShared: KEYS readers; ARGV member, ttl ms. Extends a live
// read lease; returns 1, or 0 when it is gone.
var RenewShared = driver.NewScript("lock-renew-shared", driver.LuaNowMillis+luaFmt+`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) <= now_ms then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], fmt(now_ms + ttl), ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	ttl, err := driver.ParseMillis(args[1])
	if err != nil {
		return backend.Value{}, err
	}
	now := driver.NowMillis(st)
	s, ok, err := st.ZScore(keys[0], args[0])
	if err != nil || !ok || s <= float64(now) {
		return backend.Int(0), err
	}
	st.ZAdd(keys[0], float64(now+ttl.Milliseconds()), args[0])
	if st.PTTL(keys[0]) < ttl.Milliseconds() {
		st.PExpire(keys[0], ttl)
	}
	return backend.Int(1), nil
})

// Release: KEYS lock[, waiters[, queue, qexp, fence]]; ARGV id prefix
// ("<owner>:<acq>:"), channel. When this acquisition holds the lock, hands
// it to the head of the live queue (see Acquire) when someone waits: the
// lock becomes the head's, with a new fencing token and a lease as long as
// what is left of the head's mark (so a head that gave up or crashed does
// not hold it longer), the head leaves the queue, and the release is
// published; else deletes the lock and, when someone waits (see
// luaWaiters), publishes. Returns 1, or 0 when not held. Either way the
// caller leaves the queue, so that a waiter that gives up calls Release to
// leave the line and to pass on a lock handed to it meanwhile. The publish
// is best effort (redis.pcall): a server that refuses it (an ACL user
// without channel permissions) must not turn a release that already
// deleted the lock into an error. The Go twin's Publish cannot fail.
var Release = driver.NewScript("lock-release", luaFmt+luaWaiters+`
local id = string.sub(ARGV[1], 1, #ARGV[1] - 1)
local q, qe = KEYS[3], KEYS[4]
local waited = mayPublish(KEYS[2])
if q and waited then
`+driver.LuaNowMillis+luaQueue+`
  leave(q, qe, id)
  local cur = redis.call('GET', KEYS[1])
  if not cur or string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
  local head = pruneHead(q, qe)
  if head then
    local left = tonumber(redis.call('ZSCORE', qe, head)) - now_ms
    local token = math.max(tonumber(redis.call('GET', KEYS[5]) or '0') + 1, now_ms * 1000)
    redis.call('SET', KEYS[5], fmt(token))
    redis.call('SET', KEYS[1], head .. ':' .. fmt(token), 'PX', fmt(left))
    leave(q, qe, head)
    redis.pcall('PUBLISH', ARGV[2], 'handed')
    return 1
  end
  redis.call('DEL', KEYS[1])
  redis.pcall('PUBLISH', ARGV[2], 'released')
  return 1
end
local cur = redis.call('GET', KEYS[1])
if cur and string.sub(cur, 1, #ARGV[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if waited then redis.pcall('PUBLISH', ARGV[2], 'released') end
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	pre := args[0]
	id := strings.TrimSuffix(pre, ":")
	waited := mayPublish(st, keys, 1)
	if len(keys) > 4 && waited {
		leave(st, keys[2], keys[3], id)
		cur, ok, err := st.Get(keys[0])
		if err != nil || !ok || !strings.HasPrefix(cur, pre) {
			return backend.Int(0), err
		}
		head, err := pruneHead(st, keys[2], keys[3])
		if err != nil {
			return backend.Value{}, err
		}
		if head != "" {
			exp, _, err := st.ZScore(keys[3], head)
			if err != nil {
				return backend.Value{}, err
			}
			left := int64(exp) - driver.NowMillis(st)
			token, err := nextToken(st, keys[4])
			if err != nil {
				return backend.Value{}, err
			}
			if err := st.Set(keys[0], head+":"+strconv.FormatInt(token, 10), time.Duration(left)*time.Millisecond); err != nil {
				return backend.Value{}, err
			}
			leave(st, keys[2], keys[3], head)
			st.Publish(args[1], "handed")
			return backend.Int(1), nil
		}
		st.Del(keys[0])
		st.Publish(args[1], "released")
		return backend.Int(1), nil
	}
	cur, ok, err := st.Get(keys[0])
	if err != nil || !ok || !strings.HasPrefix(cur, pre) {
		return backend.Int(0), err
	}
	st.Del(keys[0])
	if waited {
		st.Publish(args[1], "released")
	}
	return backend.Int(1), nil
})

// ReleaseShared: KEYS readers[, waiters]; ARGV id prefix, channel.
// Removes the live read lease of this acquisition and, when someone waits,
// publishes (best effort, as in Release); returns 1, or 0.
var ReleaseShared = driver.NewScript("lock-release-shared", driver.LuaNowMillis+luaFmt+luaWaiters+`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now_ms))
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(m, 1, #ARGV[1]) == ARGV[1] then
    redis.call('ZREM', KEYS[1], m)
    if mayPublish(KEYS[2]) then redis.pcall('PUBLISH', ARGV[2], 'released') end
    return 1
  end
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	if _, err := liveReaders(st, keys[0]); err != nil {
		return backend.Value{}, err
	}
	ms, err := st.ZRangeByScore(keys[0], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	for _, m := range ms {
		if strings.HasPrefix(m.Member, args[0]) {
			st.ZRem(keys[0], m.Member)
			if mayPublish(st, keys, 1) {
				st.Publish(args[1], "released")
			}
			return backend.Int(1), nil
		}
	}
	return backend.Int(0), nil
})

// Unmark: KEYS wwait[, waiters]; ARGV id, channel. A writer that gives
// up removes its waiting mark so readers need not wait for it to expire,
// and, when someone waits, publishes on the lock's channel (best effort, as
// in Release) to wake the readers it held back. Returns 1 when it removed
// the mark, else 0.
var Unmark = driver.NewScript("lock-unmark-writer", luaWaiters+`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if mayPublish(KEYS[2]) then redis.pcall('PUBLISH', ARGV[2], 'unmarked') end
  return 1
end
return 0
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	if v, ok, err := st.Get(keys[0]); err != nil || !ok || v != args[0] {
		return backend.Int(0), err
	}
	st.Del(keys[0])
	if mayPublish(st, keys, 1) {
		st.Publish(args[1], "unmarked")
	}
	return backend.Int(1), nil
})

// liveReaders drops expired read leases and counts the rest.
func liveReaders(st driver.Store, key string) (int, error) {
	now := float64(driver.NowMillis(st))
	expired, err := st.ZRangeByScore(key, -1e300, now)
	if err != nil {
		return 0, err
	}
	for _, m := range expired {
		st.ZRem(key, m.Member)
	}
	return st.ZCard(key)
}

// nextToken is the Go twin of the token rule: above the last token and at
// least the server time in microseconds (ms × 1000), so tokens keep rising
// even when a failover lost the last increments of the counter.
func nextToken(st driver.Store, key string) (int64, error) {
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

// All returns every script of the lock package.
func All() []*driver.Script {
	return []*driver.Script{Acquire, AcquireShared, RenewShared, Release, ReleaseShared, Unmark}
}
