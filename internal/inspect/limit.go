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
	Stored  int64
	Buckets []Bucket      // by index
	TTL     time.Duration // until the window expires unless used again
	Now     time.Time     // server time of the snapshot
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
// counts hash maps each bucket index to its count, and
// keyspace.RateLimitTotalField to the window total; the index zset lists
// the bucket indexes.
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

// Window is a Limit seen through a limiter's Window and Bucket options,
// which the backend does not store.
type Window struct {
	Count   int64 // admissions (Suppressed: offered requests) in the window now
	Buckets []WindowBucket
	// Oldest is when the oldest live bucket with a count leaves the
	// window (zero when the window is empty).
	Oldest time.Time
}

// Window places l's buckets in time for a limiter with the given window
// and bucket sizes (bucket ≥ 1 ms, dividing window): a bucket is live
// while its index is one of the window/bucket latest, as the limiter's
// script decides.
func (l *Limit) Window(window, bucket time.Duration) Window {
	B := bucket.Milliseconds()
	nb := int64(window / bucket)
	now := l.Now.UnixMilli()
	oldest := now/B - nb + 1
	var w Window
	for _, b := range l.Buckets {
		wb := WindowBucket{Start: time.UnixMilli(b.Index * B), Count: b.Count, Live: b.Index >= oldest}
		if wb.Live {
			if w.Oldest.IsZero() && b.Count > 0 {
				w.Oldest = time.UnixMilli((b.Index + nb) * B)
			}
			w.Count += b.Count
		}
		w.Buckets = append(w.Buckets, wb)
	}
	return w
}

// RetryAfter is how long until a request of n fits a window of capacity
// limit, as the Absolute strategy computes it: 0 when it fits now, -1 when
// it never will (n > limit).
func (l *Limit) RetryAfter(window, bucket time.Duration, limit, n int64) time.Duration {
	w := l.Window(window, bucket)
	need := w.Count + n - limit
	if need <= 0 {
		return 0
	}
	B := bucket.Milliseconds()
	nb := int64(window / bucket)
	freed := int64(0)
	for _, b := range l.Buckets {
		if b.Index < l.Now.UnixMilli()/B-nb+1 {
			continue
		}
		freed += b.Count
		if freed >= need {
			return time.Duration((b.Index+nb)*B-l.Now.UnixMilli()) * time.Millisecond
		}
	}
	return -1
}

// limitReset: KEYS counts, index. Deletes the window; returns how many
// keys existed.
var limitReset = driver.NewScript("inspect-limit-reset", `
return redis.call('DEL', KEYS[1], KEYS[2])
`, func(st driver.Store, keys, args []string) (backend.Value, error) {
	return backend.Int(int64(st.Del(keys...))), nil
})

// ResetLimit deletes the window of key under prefix, so its next decision
// starts from an empty window; it reports whether there was one.
func ResetLimit(ctx context.Context, b backend.Backend, prefix, key string) (bool, error) {
	v, err := b.EvalScript(ctx, limitReset, keyspace.RateLimit(prefix, key).List())
	if err != nil {
		return false, err
	}
	n, err := v.Int64()
	return n > 0, err
}
