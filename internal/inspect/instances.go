package inspect

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
)

// Instance is one registered instance of prefix's instance counters.
type Instance struct {
	ID string
	// Expires is when the instance counts as dead unless it heartbeats
	// again (its last heartbeat plus its DeadAfter).
	Expires time.Time
	// Alive: Expires is after the snapshot's server time and the instance
	// has not closed. A dead instance stays listed (and its slices stay in
	// the totals) until the next operation of any instance removes it.
	Alive bool
	// Closed: the counter holding the id closed (its registration is
	// released). Close keeps the id listed until Expires (DeadAfter after
	// Close, or its last heartbeat's expiry with KeepSlicesOnClose, whose
	// slices stay counted until then), but no heartbeat will come.
	Closed bool
	Slices int // keys on which the instance holds a slice
}

// Instances is a snapshot of prefix's instances.
type Instances struct {
	List []Instance // by id
	Now  time.Time  // server time of the snapshot
}

// instancesRead: KEYS instances, owned, registry. Returns {[id, expiry
// ms, slice count, registration or nil, …], now ms}; the count is the
// size of the id's lexical range in the owned index.
var instancesRead = driver.NewScript("inspect-instances-read", driver.LuaNowMillis+luaZScores+`
local z = zscores(KEYS[1], {})
local out = {}
for i = 1, #z, 2 do
  out[#out + 1] = z[i]
  out[#out + 1] = z[i + 1]
  out[#out + 1] = redis.call('ZLEXCOUNT', KEYS[2], '[' .. z[i] .. ':', '(' .. z[i] .. ';')
  out[#out + 1] = redis.call('HGET', KEYS[3], z[i])
end
return {out, now_ms}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	ins, err := st.ZRangeByScore(keys[0], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	owned, err := st.ZRangeByScore(keys[1], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	var out []backend.Value
	for _, m := range ins {
		n := 0
		for _, o := range owned {
			if keyspace.InLexRange(o.Member, m.Member) {
				n++
			}
		}
		reg, err := goHGet(st, keys[2], m.Member)
		if err != nil {
			return backend.Value{}, err
		}
		out = append(out, backend.Str(m.Member), backend.Int(int64(m.Score)), backend.Int(int64(n)), reg)
	}
	return backend.Arr(backend.Arr(out...), backend.Int(driver.NowMillis(st))), nil
})

// ReadInstances reads prefix's registered instances in one atomic step.
func ReadInstances(ctx context.Context, b backend.Backend, prefix string) (Instances, error) {
	k := keyspace.InstanceCounter(prefix)
	v, err := b.EvalScript(ctx, instancesRead, []string{k.Instances, k.Owned, k.Registry})
	if err != nil {
		return Instances{}, err
	}
	return decodeInstances(v)
}

// decodeInstances decodes instancesRead's reply. Layout
// (keyspace.InstanceCounter): the instances zset scores each escaped id
// with its heartbeat expiry in Unix ms; the owned index holds <id>:<key>
// per slice; the registry holds a closed counter's released registration
// (icscript.Released).
func decodeInstances(v backend.Value) (Instances, error) {
	r := newReply(v, 2)
	out := Instances{Now: serverTime(r.int(1, "now"))}
	a := r.arr(0, "instances")
	if r.err != nil {
		return Instances{}, r.err
	}
	if len(a)%4 != 0 {
		return Instances{}, layoutErr("instances: %d elements", len(a))
	}
	for i := 0; i < len(a); i += 4 {
		m, err := a[i].Text()
		if err != nil {
			return Instances{}, layoutErr("instance member %v", a[i])
		}
		id, err := keyspace.InstanceID(m)
		if err != nil {
			return Instances{}, layoutErr("instance %q: %v", m, err)
		}
		exp, err1 := a[i+1].Int64()
		n, err2 := a[i+2].Int64()
		if err1 != nil || err2 != nil {
			return Instances{}, layoutErr("instance %q: %v %v", id, a[i+1], a[i+2])
		}
		closed := false
		if !a[i+3].IsNil() {
			reg, err := a[i+3].Text()
			if err != nil {
				return Instances{}, layoutErr("instance %q: registration %v", id, a[i+3])
			}
			closed = icscript.Released(reg)
		}
		e := serverTime(exp)
		out.List = append(out.List, Instance{ID: id, Expires: e, Alive: e.After(out.Now) && !closed, Closed: closed, Slices: int(n)})
	}
	sort.Slice(out.List, func(i, j int) bool { return out.List[i].ID < out.List[j].ID })
	return out, nil
}

// InstanceSlice is one instance's slice of an instance counter.
type InstanceSlice struct {
	Instance string
	Value    int64
	// Registered: the instance is in the instances zset; Alive: and its
	// heartbeat has not expired (the slice is counted); Closed: its
	// counter closed with KeepSlicesOnClose, so the slice is counted only
	// until the id expires (see Instance.Closed).
	Registered, Alive, Closed bool
}

// InstanceCounter is one key of prefix's instance counters.
type InstanceCounter struct {
	Key    string
	Exists bool  // a total, an epoch or a slice is stored
	Stored int64 // the cumulative value as stored (dead instances' slices included)
	// Cumulative is Stored without the slices of dead instances: what the
	// next operation of any instance will return (it removes them first).
	Cumulative int64
	// Epoch is the stamp (server time in Unix µs) of the key's last Set,
	// Del or Clear (0: none); a slice from an older epoch is never
	// contributed again.
	Epoch  int64
	Slices []InstanceSlice
}

// icRead: KEYS instances, total, slices, holders, epochs, cleared,
// registry; ARGV escaped keys. Returns {[[total, epoch, [id, slice, expiry
// ms or nil, registration or nil, …]], …], now ms, cleared ms or nil}.
var icRead = driver.NewScript("inspect-icounter-read", driver.LuaNowMillis+`
local out = {}
for i, key in ipairs(ARGV) do
  local sl = {}
  for _, m in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[' .. key .. ':', '(' .. key .. ';')) do
    local id = string.sub(m, #key + 2)
    local s = redis.call('ZSCORE', KEYS[1], id)
    if s then s = tonumber(s) else s = false end
    sl[#sl + 1] = id
    sl[#sl + 1] = redis.call('HGET', KEYS[3], id .. ':' .. key)
    sl[#sl + 1] = s
    sl[#sl + 1] = redis.call('HGET', KEYS[7], id)
  end
  out[i] = {redis.call('HGET', KEYS[2], key), redis.call('HGET', KEYS[5], key), sl}
end
return {out, now_ms, redis.call('GET', KEYS[6])}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	holders, err := st.ZRangeByScore(keys[3], -1e300, 1e300)
	if err != nil {
		return backend.Value{}, err
	}
	out := make([]backend.Value, len(args))
	for i, key := range args {
		var sl []backend.Value
		for _, h := range holders {
			if !keyspace.InLexRange(h.Member, key) {
				continue
			}
			id := h.Member[len(key)+1:]
			slice, err := goHGet(st, keys[2], keyspace.Join(id, key))
			if err != nil {
				return backend.Value{}, err
			}
			exp := backend.Nil()
			if s, ok, err := st.ZScore(keys[0], id); err != nil {
				return backend.Value{}, err
			} else if ok {
				exp = backend.Int(int64(s))
			}
			reg, err := goHGet(st, keys[6], id)
			if err != nil {
				return backend.Value{}, err
			}
			sl = append(sl, backend.Str(id), slice, exp, reg)
		}
		total, err := goHGet(st, keys[1], key)
		if err != nil {
			return backend.Value{}, err
		}
		epoch, err := goHGet(st, keys[4], key)
		if err != nil {
			return backend.Value{}, err
		}
		out[i] = backend.Arr(total, epoch, backend.Arr(sl...))
	}
	cleared := backend.Nil()
	if v, ok, err := st.Get(keys[5]); err != nil {
		return backend.Value{}, err
	} else if ok {
		cleared = backend.Str(v)
	}
	return backend.Arr(backend.Arr(out...), backend.Int(driver.NowMillis(st)), cleared), nil
})

// ReadInstanceCounters reads keys of prefix's instance counters in one
// atomic step, with the server time of the snapshot.
func ReadInstanceCounters(ctx context.Context, b backend.Backend, prefix string, keys []string) ([]InstanceCounter, time.Time, error) {
	k := keyspace.InstanceCounter(prefix)
	v, err := b.EvalScript(ctx, icRead, []string{k.Instances, k.Total, k.Slices, k.Holders, k.Epochs, k.Cleared, k.Registry},
		escapeAll(keys, keyspace.InstanceKeyField)...)
	if err != nil {
		return nil, time.Time{}, err
	}
	return decodeInstanceCounters(keys, v)
}

// decodeInstanceCounters decodes icRead's reply. Layout
// (keyspace.InstanceCounter): totals and epochs are decimal fields per
// key, and a key's epoch is at least the cleared stamp (decimal string);
// the holders index lists <key>:<id> for every slice, whose value is
// the field <id>:<key> of the slices hash; an instance is alive while its
// score (heartbeat expiry, Unix ms) is in the future.
func decodeInstanceCounters(keys []string, v backend.Value) ([]InstanceCounter, time.Time, error) {
	r := newReply(v, 3)
	now := serverTime(r.int(1, "now"))
	var cleared int64
	if _, ok := r.str(2, "cleared"); ok {
		var err error
		if cleared, err = decimal(r.a[2], "icounter cleared time"); err != nil {
			return nil, time.Time{}, err
		}
	}
	per := r.arr(0, "keys")
	if r.err == nil && len(per) != len(keys) {
		r.err = layoutErr("%d keys in reply, want %d", len(per), len(keys))
	}
	if r.err != nil {
		return nil, time.Time{}, r.err
	}
	out := make([]InstanceCounter, len(keys))
	for i, key := range keys {
		kr := newReply(per[i], 3)
		c := InstanceCounter{Key: key}
		var err error
		if _, ok := kr.str(0, "total"); ok {
			c.Exists = true
			if c.Stored, err = decimal(kr.a[0], fmt.Sprintf("icounter %q total", key)); err != nil {
				return nil, time.Time{}, err
			}
		}
		if _, ok := kr.str(1, "epoch"); ok {
			c.Exists = true
			if c.Epoch, err = decimal(kr.a[1], fmt.Sprintf("icounter %q epoch", key)); err != nil {
				return nil, time.Time{}, err
			}
		}
		sl := kr.arr(2, "slices")
		if kr.err != nil {
			return nil, time.Time{}, kr.err
		}
		if len(sl)%4 != 0 {
			return nil, time.Time{}, layoutErr("icounter %q: %d slice elements", key, len(sl))
		}
		c.Epoch = max(c.Epoch, cleared)
		c.Cumulative = c.Stored
		for j := 0; j < len(sl); j += 4 {
			m, err := sl[j].Text()
			if err != nil {
				return nil, time.Time{}, layoutErr("icounter %q: holder %v", key, sl[j])
			}
			id, err := keyspace.InstanceID(m)
			if err != nil {
				return nil, time.Time{}, layoutErr("icounter %q: holder %q: %v", key, m, err)
			}
			s := InstanceSlice{Instance: id}
			if !sl[j+1].IsNil() {
				if s.Value, err = decimal(sl[j+1], fmt.Sprintf("icounter %q slice of %q", key, id)); err != nil {
					return nil, time.Time{}, err
				}
			}
			if !sl[j+2].IsNil() {
				exp, err := sl[j+2].Int64()
				if err != nil {
					return nil, time.Time{}, layoutErr("icounter %q: expiry of %q: %v", key, id, sl[j+2])
				}
				s.Registered, s.Alive = true, serverTime(exp).After(now)
			}
			if !sl[j+3].IsNil() {
				reg, err := sl[j+3].Text()
				if err != nil {
					return nil, time.Time{}, layoutErr("icounter %q: registration of %q: %v", key, id, sl[j+3])
				}
				s.Closed = icscript.Released(reg)
			}
			if !s.Alive {
				c.Cumulative -= s.Value
			}
			c.Exists = true
			c.Slices = append(c.Slices, s)
		}
		sort.Slice(c.Slices, func(a, b int) bool { return c.Slices[a].Instance < c.Slices[b].Instance })
		out[i] = c
	}
	return out, now, nil
}
