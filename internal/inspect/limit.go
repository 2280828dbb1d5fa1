package inspect

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/ratelimitscript"
)

// Bucket is one bucket of a rate-limit window.
type Bucket struct {
	Index int64 // server time in ms divided by the bucket size
	Count int64
}

// Limit is the stored window of one rate-limited key.
type Limit struct {
	Key    string
	Exists bool
	// Stored is the window total as of the last decision; buckets that
	// have left the window since are only subtracted by the next one.
	Stored int64
	// BucketMs and PerWindow are the geometry the window was last written
	// with (its limit's period cut into PerWindow buckets of BucketMs);
	// 0 when none is stored (a window written before it was).
	BucketMs, PerWindow int64
	Buckets             []Bucket      // by index
	TTL                 time.Duration // until the window expires unless used again
	Now                 time.Time     // server time of the snapshot
}

// limitRead: KEYS counts, index. Returns {HGETALL counts, its PTTL,
// ZCARD index, now ms}.
var limitRead = driver.NewScript("inspect-limit-read", driver.LuaNowMillis+`
return {redis.call('HGETALL', KEYS[1]), redis.call('PTTL', KEYS[1]), redis.call('ZCARD', KEYS[2]), now_ms}
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	kv, err := goHGetAll(st, keys[0])
	if err != nil {
		return backend.Value{}, err
	}
	n, err := st.ZCard(keys[1])
	if err != nil {
		return backend.Value{}, err
	}
	return backend.Arr(backend.Arr(kv...), backend.Int(st.PTTL(keys[0])), backend.Int(int64(n)),
		backend.Int(driver.NowMillis(st))), nil
})

// ReadLimit reads the window of key under prefix in one atomic step.
func ReadLimit(ctx context.Context, b backend.Backend, prefix, key string) (Limit, error) {
	v, err := b.EvalScript(ctx, limitRead, keyspace.RateLimit(prefix, key).List())
	if err != nil {
		return Limit{}, err
	}
	return decodeLimit(key, v)
}

// decodeLimit decodes limitRead's reply. Layout (keyspace.RateLimit): the
// counts hash maps each bucket index to its count,
// keyspace.RateLimitTotalField to the window total and
// keyspace.RateLimitGeometryField to "B/nb"; the index zset lists the
// bucket indexes.
func decodeLimit(key string, v backend.Value) (Limit, error) {
	r := newReply(v, 4)
	l := Limit{Key: key, Now: serverTime(r.int(3, "now"))}
	l.TTL, _ = ttl(r.int(1, "pttl"))
	l.Exists = r.int(2, "index size") > 0
	ps, err := pairs(r.arr(0, "counts"), "counts")
	if r.err != nil {
		return Limit{}, r.err
	}
	if err != nil {
		return Limit{}, err
	}
	for _, p := range ps {
		l.Exists = true
		f, _ := p[0].Text()
		if f == keyspace.RateLimitGeometryField {
			g, _ := p[1].Text()
			var ok bool
			if l.BucketMs, l.PerWindow, ok = ratelimitscript.ParseGeometry(g); !ok {
				return Limit{}, layoutErr("limit %q: geometry %q is not B/nb", key, g)
			}
			continue
		}
		n, err := decimal(p[1], fmt.Sprintf("limit %q field %q", key, f))
		if err != nil {
			return Limit{}, err
		}
		if f == keyspace.RateLimitTotalField {
			l.Stored = n
			continue
		}
		ix, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return Limit{}, layoutErr("limit %q: bucket field %q", key, f)
		}
		l.Buckets = append(l.Buckets, Bucket{Index: ix, Count: n})
	}
	sort.Slice(l.Buckets, func(i, j int) bool { return l.Buckets[i].Index < l.Buckets[j].Index })
	return l, nil
}

// WindowBucket is a bucket placed in time.
type WindowBucket struct {
	Start time.Time
	Count int64
	Live  bool // still inside the window at the snapshot's time
}

// Window is a Limit's buckets placed in time by its stored geometry.
type Window struct {
	// Count is what the limiter counts now: admissions (Suppressed:
	// offered requests) in the live buckets; without a stored geometry,
	// the stored total (what the limiter would re-date to now).
	Count   int64
	Buckets []WindowBucket // Start zero without a stored geometry
	// Oldest is when the oldest live bucket with a count leaves the
	// window (zero when the window is empty or has no geometry).
	Oldest time.Time
}

// Window places l's buckets in time as the window script does: bucket b
// (of B ms) is live while b ≥ ⌊(now + 1) / B⌋ − nb, and leaves the window
// at (b + nb + 1)·B − 1 ms.
func (l *Limit) Window() Window {
	var w Window
	if l.BucketMs == 0 {
		w.Count = l.Stored
		for _, b := range l.Buckets {
			w.Buckets = append(w.Buckets, WindowBucket{Count: b.Count})
		}
		return w
	}
	B, nb := l.BucketMs, l.PerWindow
	now := l.Now.UnixMilli()
	oldest := (now+1)/B - nb
	for _, b := range l.Buckets {
		wb := WindowBucket{Start: time.UnixMilli(b.Index * B), Count: b.Count, Live: b.Index >= oldest}
		if wb.Live {
			if w.Oldest.IsZero() && b.Count > 0 {
				w.Oldest = time.UnixMilli((b.Index+nb+1)*B - 1)
			}
			w.Count += b.Count
		}
		w.Buckets = append(w.Buckets, wb)
	}
	return w
}
