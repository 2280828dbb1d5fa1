package inspect

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Lease is one holder of a lock: the exclusive holder or a reader.
type Lease struct {
	Owner       string // Options.Owner of the Mutex or RWMutex
	Acquisition string // distkit's id of this acquisition (a nonce per Lock call)
	Token       int64  // fencing token
	// Acquired is when the lease was taken, derived from the token (the
	// server time in µs, unless tokens ran ahead of the clock); zero when
	// the token is not time-based.
	Acquired time.Time
	TTL      time.Duration // until the lease expires unless renewed
	// Raw is the stored value or member, which BreakLock compares against.
	Raw string
}

// Waiter is someone recorded as waiting for a lock: a waiting RWMutex
// writer (Kind "writer", its waiting mark) and the FIFO queue of exclusive
// waiters, Mutex waiters and writers alike (Kind "queued", or "writer" for
// the writer whose mark is also in line), in queue order.
type Waiter struct {
	Kind        string
	Owner       string
	Acquisition string
	TTL         time.Duration // until the mark expires unless the waiter refreshes it
	// Position is the place in the queue (1: next to get the lock); 0 for
	// a writer's mark that is not in the queue.
	Position int
}

// Lock is the state of one lock name.
type Lock struct {
	Name    string
	Holder  *Lease  // exclusive holder (Mutex, or RWMutex writer); nil when none
	Readers []Lease // live read leases, by expiry
	Waiters []Waiter
	// Fence is the last fencing token issued for the name (0: never
	// acquired). It never decreases; BreakLock leaves it alone.
	Fence int64
	Now   time.Time // server time of the snapshot
}

// Exists reports whether anything is stored for the lock: a lease, a
// waiter or a fencing counter.
func (l *Lock) Exists() bool {
	return l.Holder != nil || len(l.Readers) > 0 || len(l.Waiters) > 0 || l.Fence != 0
}

// State is "held" (exclusive holder), "read" (readers only) or "free".
func (l *Lock) State() string {
	switch {
	case l.Holder != nil:
		return "held"
	case len(l.Readers) > 0:
		return "read"
	}
	return "free"
}

// lockRead: KEYS lock, readers, wwait, fence, queue, qexp. Returns {lock
// value, its PTTL, [reader, expiry ms, …], wwait value, its PTTL, fence,
// now ms, [queued id, mark expiry ms, …] in queue order}.
var lockRead = driver.NewScript("inspect-lock-read", driver.LuaNowMillis+luaZScores+`
local q = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  local e = redis.call('ZSCORE', KEYS[6], id)
  if e then
    q[#q + 1] = id
    q[#q + 1] = tonumber(e)
  end
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1]), zscores(KEYS[2], {}),
  redis.call('GET', KEYS[3]), redis.call('PTTL', KEYS[3]), redis.call('GET', KEYS[4]), now_ms, q}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	holder, err := goGet(st, keys[0])
	if err != nil {
		return backend.Value{}, err
	}
	readers, err := goZScores(st, keys[1])
	if err != nil {
		return backend.Value{}, err
	}
	waiting, err := goGet(st, keys[2])
	if err != nil {
		return backend.Value{}, err
	}
	fence, err := goGet(st, keys[3])
	if err != nil {
		return backend.Value{}, err
	}
	line, err := st.ZRangeByScore(keys[4], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	queue := []backend.Value{}
	for _, m := range line {
		if e, ok, err := st.ZScore(keys[5], m.Member); err != nil {
			return backend.Value{}, err
		} else if ok {
			queue = append(queue, backend.Str(m.Member), backend.Int(int64(e)))
		}
	}
	return backend.Arr(holder, backend.Int(st.PTTL(keys[0])), backend.Arr(readers...),
		waiting, backend.Int(st.PTTL(keys[2])), fence, backend.Int(driver.NowMillis(st)), backend.Arr(queue...)), nil
})

func lockKeys(prefix, name string) []string {
	k := keyspace.Lock(prefix, name)
	return []string{k.Lock, k.Readers, k.WaitingWriter, k.Fence, k.Queue, k.QueueExpiry}
}

// ReadLock reads the state of lock name under prefix in one atomic step.
func ReadLock(ctx context.Context, b backend.Backend, prefix, name string) (Lock, error) {
	v, err := b.EvalScript(ctx, lockRead, lockKeys(prefix, name))
	if err != nil {
		return Lock{}, err
	}
	return decodeLock(name, v)
}

// ReadLocks reads several locks in one batch (each lock atomically).
func ReadLocks(ctx context.Context, b backend.Backend, prefix string, names []string) ([]Lock, error) {
	calls := make([]backend.Call, len(names))
	for i, n := range names {
		calls[i] = backend.Call{Script: lockRead, Keys: lockKeys(prefix, n)}
	}
	out := make([]Lock, len(names))
	for i, r := range b.EvalScripts(ctx, calls) {
		if r.Err != nil {
			return nil, fmt.Errorf("lock %q: %w", names[i], r.Err)
		}
		l, err := decodeLock(names[i], r.Value)
		if err != nil {
			return nil, err
		}
		out[i] = l
	}
	return out, nil
}

// minTimeToken is the smallest token read as a time (µs since 1970, i.e.
// 2001-09-09): tokens issued before tokens were time-based are small.
const minTimeToken = 1e15

// lease decodes a lock value or reader member (keyspace.ParseLockLease).
func lease(raw string, ttl time.Duration) (Lease, error) {
	owner, nonce, token, err := keyspace.ParseLockLease(raw)
	if err != nil {
		return Lease{}, layoutErr("lease %q: %v", raw, err)
	}
	l := Lease{Owner: owner, Acquisition: nonce, Token: token, TTL: ttl, Raw: raw}
	if token >= minTimeToken {
		l.Acquired = time.UnixMicro(token)
	}
	return l, nil
}

// decodeLock decodes lockRead's reply. The lock's layout
// (keyspace.Lock): the exclusive holder's lease is a string with a PX
// expiry; each reader is a member of the readers zset scored with its
// expiry in Unix ms (expired members linger until the next acquisition
// prunes them, and are left out here); a waiting writer is a string mark;
// the fence is the last token.
func decodeLock(name string, v backend.Value) (Lock, error) {
	r := newReply(v, 8)
	l := Lock{Name: name, Now: serverTime(r.int(6, "now"))}
	if raw, ok := r.str(0, "holder"); ok {
		d, _ := ttl(r.int(1, "holder pttl"))
		h, err := lease(raw, d)
		if err != nil {
			return Lock{}, fmt.Errorf("lock %q: %w", name, err)
		}
		l.Holder = &h
	}
	ps, err := pairs(r.arr(2, "readers"), "readers")
	if err != nil {
		return Lock{}, err
	}
	for _, p := range ps {
		raw, err1 := p[0].Text()
		exp, err2 := p[1].Int64()
		if err1 != nil || err2 != nil {
			return Lock{}, layoutErr("lock %q: reader %v %v", name, p[0], p[1])
		}
		left := serverTime(exp).Sub(l.Now)
		if left <= 0 {
			continue
		}
		rd, err := lease(raw, left)
		if err != nil {
			return Lock{}, fmt.Errorf("lock %q: %w", name, err)
		}
		l.Readers = append(l.Readers, rd)
	}
	writer, hasWriter := r.str(3, "waiting writer")
	qs, err := pairs(r.arr(7, "queue"), "queue")
	if err != nil {
		return Lock{}, err
	}
	for _, p := range qs {
		raw, err1 := p[0].Text()
		exp, err2 := p[1].Int64()
		if err1 != nil || err2 != nil {
			return Lock{}, layoutErr("lock %q: queued %v %v", name, p[0], p[1])
		}
		left := serverTime(exp).Sub(l.Now)
		if left <= 0 { // a lapsed mark, pruned by the next acquisition
			continue
		}
		owner, nonce, err := keyspace.ParseLockAcquisition(raw)
		if err != nil {
			return Lock{}, layoutErr("lock %q: queued %q: %v", name, raw, err)
		}
		kind := "queued"
		if hasWriter && raw == writer {
			kind, hasWriter = "writer", false
		}
		l.Waiters = append(l.Waiters, Waiter{Kind: kind, Owner: owner, Acquisition: nonce, TTL: left, Position: len(l.Waiters) + 1})
	}
	if hasWriter {
		owner, nonce, err := keyspace.ParseLockAcquisition(writer)
		if err != nil {
			return Lock{}, layoutErr("lock %q: waiting writer %q: %v", name, writer, err)
		}
		d, _ := ttl(r.int(4, "waiting writer pttl"))
		l.Waiters = append(l.Waiters, Waiter{Kind: "writer", Owner: owner, Acquisition: nonce, TTL: d})
	}
	if _, ok := r.str(5, "fence"); ok {
		if l.Fence, err = decimal(r.a[5], fmt.Sprintf("lock %q fence", name)); err != nil {
			return Lock{}, err
		}
	}
	return l, r.err
}

// lockBreak: KEYS lock, readers; ARGV channel, the holder's lease as
// read ("" for none), then reader members as read. Deletes the holder's
// lease when it is still the one read and removes those readers, then
// publishes a release when anything went. Never touches the fence. The
// publish is best effort (redis.pcall), as in lock Release: a server that
// refuses it (an operator's ACL user without channel permissions) must not
// turn a break that already deleted leases into an error.
// Returns {holder removed (0/1), readers removed}.
var lockBreak = driver.NewScript("inspect-lock-break", `
local held, readers = 0, 0
if ARGV[2] ~= '' and redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  held = 1
end
for i = 3, #ARGV do readers = readers + redis.call('ZREM', KEYS[2], ARGV[i]) end
if held + readers > 0 then redis.pcall('PUBLISH', ARGV[1], 'released') end
return {held, readers}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	held, readers := int64(0), int64(0)
	if args[1] != "" {
		if v, ok, err := st.Get(keys[0]); err != nil {
			return backend.Value{}, err
		} else if ok && v == args[1] {
			st.Del(keys[0])
			held = 1
		}
	}
	for _, m := range args[2:] {
		n, err := st.ZRem(keys[1], m)
		if err != nil {
			return backend.Value{}, err
		}
		readers += int64(n)
	}
	if held+readers > 0 {
		st.Publish(args[0], "released")
	}
	return backend.Arr(backend.Int(held), backend.Int(readers)), nil
})

// Broken is what BreakLock removed.
type Broken struct {
	Holder  bool // the exclusive holder's lease
	Readers int  // read leases
}

// BreakLock deletes the leases of l (as read by ReadLock): the exclusive
// holder's lease if it is still the same one, and those read leases still
// present. A lease that changed since l was read (released, or taken by
// someone else) is left alone, so a break never hits a holder the operator
// did not see. Waiters are kept, and so is the fencing counter: the next
// acquisition gets a token above every earlier one. The holders' guards
// find out at their next renewal (refused: Lost); waiters are woken
// through the lock's channel.
func BreakLock(ctx context.Context, b backend.Backend, prefix string, l Lock) (Broken, error) {
	k := keyspace.Lock(prefix, l.Name)
	args := []string{k.Channel, ""}
	if l.Holder != nil {
		args[1] = l.Holder.Raw
	}
	for _, r := range l.Readers {
		args = append(args, r.Raw)
	}
	v, err := b.EvalScript(ctx, lockBreak, []string{k.Lock, k.Readers}, args...)
	if err != nil {
		return Broken{}, err
	}
	n, err := v.Int64s()
	if err != nil || len(n) != 2 {
		return Broken{}, layoutErr("break reply %v", v)
	}
	return Broken{Holder: n[0] == 1, Readers: int(n[1])}, nil
}
