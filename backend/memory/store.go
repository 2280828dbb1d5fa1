package memory

import (
	"errors"
	"math"
	"sort"
	"time"

	"github.com/distkit-go/distkit/backend/driver"
)

type kind uint8

const (
	kString kind = iota + 1
	kHash
	kZSet
	kSet
)

var errWrongType = errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")

type entry struct {
	kind     kind
	str      string
	hash     map[string]string
	zset     map[string]float64
	set      map[string]struct{}
	expireAt time.Time // zero: no expiry
}

// data is the keyspace; every method is called with Backend.mu held.
type data struct {
	keys     map[string]*entry
	expiring map[string]struct{}
	ops      int
}

func newData() *data {
	return &data{keys: map[string]*entry{}, expiring: map[string]struct{}{}}
}

// sweep drops expired keys that nobody reads any more (apply-once markers,
// abandoned leases), amortised over operations.
func (d *data) sweep(now time.Time) {
	d.ops++
	if d.ops%1024 != 0 {
		return
	}
	for k := range d.expiring {
		if e := d.keys[k]; e == nil || !now.Before(e.expireAt) {
			delete(d.keys, k)
			delete(d.expiring, k)
		}
	}
}

// store is the driver.Store view of data for one atomic script run.
type store struct {
	d       *data
	now     time.Time
	publish func(channel, message string) int
}

var _ driver.Store = (*store)(nil)

func (s *store) Now() time.Time { return s.now }

func (s *store) lookup(key string) *entry {
	e := s.d.keys[key]
	if e == nil {
		return nil
	}
	if !e.expireAt.IsZero() && !s.now.Before(e.expireAt) {
		delete(s.d.keys, key)
		delete(s.d.expiring, key)
		return nil
	}
	return e
}

func (s *store) typed(key string, k kind) (*entry, error) {
	e := s.lookup(key)
	if e != nil && e.kind != k {
		return nil, errWrongType
	}
	return e, nil
}

func (s *store) create(key string, k kind) *entry {
	e := &entry{kind: k}
	switch k {
	case kHash:
		e.hash = map[string]string{}
	case kZSet:
		e.zset = map[string]float64{}
	case kSet:
		e.set = map[string]struct{}{}
	}
	s.d.keys[key] = e
	return e
}

func (s *store) dropIfEmpty(key string, n int) {
	if n == 0 {
		delete(s.d.keys, key)
		delete(s.d.expiring, key)
	}
}

func (s *store) Get(key string) (string, bool, error) {
	e, err := s.typed(key, kString)
	if e == nil || err != nil {
		return "", false, err
	}
	return e.str, true, nil
}

func (s *store) Set(key, value string, ttl time.Duration) error {
	e := &entry{kind: kString, str: value}
	s.d.keys[key] = e
	delete(s.d.expiring, key)
	if ttl > 0 {
		e.expireAt = s.now.Add(ttl)
		s.d.expiring[key] = struct{}{}
	}
	return nil
}

func (s *store) Del(keys ...string) int {
	n := 0
	for _, k := range keys {
		if s.lookup(k) != nil {
			delete(s.d.keys, k)
			delete(s.d.expiring, k)
			n++
		}
	}
	return n
}

func (s *store) Exists(key string) bool { return s.lookup(key) != nil }

func (s *store) PExpire(key string, ttl time.Duration) bool {
	e := s.lookup(key)
	if e == nil {
		return false
	}
	if ttl <= 0 {
		s.Del(key)
		return true
	}
	e.expireAt = s.now.Add(ttl)
	s.d.expiring[key] = struct{}{}
	return true
}

func (s *store) PTTL(key string) int64 {
	e := s.lookup(key)
	switch {
	case e == nil:
		return -2
	case e.expireAt.IsZero():
		return -1
	}
	return int64(math.Ceil(float64(e.expireAt.Sub(s.now)) / float64(time.Millisecond)))
}

func (s *store) HGet(key, field string) (string, bool, error) {
	e, err := s.typed(key, kHash)
	if e == nil || err != nil {
		return "", false, err
	}
	v, ok := e.hash[field]
	return v, ok, nil
}

func (s *store) HSet(key, field, value string) error {
	e, err := s.typed(key, kHash)
	if err != nil {
		return err
	}
	if e == nil {
		e = s.create(key, kHash)
	}
	e.hash[field] = value
	return nil
}

func (s *store) HDel(key string, fields ...string) (int, error) {
	e, err := s.typed(key, kHash)
	if e == nil || err != nil {
		return 0, err
	}
	n := 0
	for _, f := range fields {
		if _, ok := e.hash[f]; ok {
			delete(e.hash, f)
			n++
		}
	}
	s.dropIfEmpty(key, len(e.hash))
	return n, nil
}

func (s *store) HGetAll(key string) (map[string]string, error) {
	e, err := s.typed(key, kHash)
	if e == nil || err != nil {
		return map[string]string{}, err
	}
	out := make(map[string]string, len(e.hash))
	for k, v := range e.hash {
		out[k] = v
	}
	return out, nil
}

func (s *store) HLen(key string) (int, error) {
	e, err := s.typed(key, kHash)
	if e == nil || err != nil {
		return 0, err
	}
	return len(e.hash), nil
}

func (s *store) ZAdd(key string, score float64, member string) error {
	e, err := s.typed(key, kZSet)
	if err != nil {
		return err
	}
	if e == nil {
		e = s.create(key, kZSet)
	}
	e.zset[member] = score
	return nil
}

func (s *store) ZScore(key, member string) (float64, bool, error) {
	e, err := s.typed(key, kZSet)
	if e == nil || err != nil {
		return 0, false, err
	}
	v, ok := e.zset[member]
	return v, ok, nil
}

func (s *store) ZRem(key string, members ...string) (int, error) {
	e, err := s.typed(key, kZSet)
	if e == nil || err != nil {
		return 0, err
	}
	n := 0
	for _, m := range members {
		if _, ok := e.zset[m]; ok {
			delete(e.zset, m)
			n++
		}
	}
	s.dropIfEmpty(key, len(e.zset))
	return n, nil
}

func (s *store) ZRangeByScore(key string, min, max float64) ([]driver.ZMember, error) {
	e, err := s.typed(key, kZSet)
	if e == nil || err != nil {
		return nil, err
	}
	var out []driver.ZMember
	for m, sc := range e.zset {
		if sc >= min && sc <= max {
			out = append(out, driver.ZMember{Member: m, Score: sc})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score < out[j].Score
		}
		return out[i].Member < out[j].Member
	})
	return out, nil
}

func (s *store) ZCard(key string) (int, error) {
	e, err := s.typed(key, kZSet)
	if e == nil || err != nil {
		return 0, err
	}
	return len(e.zset), nil
}

func (s *store) SAdd(key string, members ...string) (int, error) {
	e, err := s.typed(key, kSet)
	if err != nil {
		return 0, err
	}
	if e == nil {
		e = s.create(key, kSet)
	}
	n := 0
	for _, m := range members {
		if _, ok := e.set[m]; !ok {
			e.set[m] = struct{}{}
			n++
		}
	}
	return n, nil
}

func (s *store) SRem(key string, members ...string) (int, error) {
	e, err := s.typed(key, kSet)
	if e == nil || err != nil {
		return 0, err
	}
	n := 0
	for _, m := range members {
		if _, ok := e.set[m]; ok {
			delete(e.set, m)
			n++
		}
	}
	s.dropIfEmpty(key, len(e.set))
	return n, nil
}

func (s *store) SMembers(key string) ([]string, error) {
	e, err := s.typed(key, kSet)
	if e == nil || err != nil {
		return nil, err
	}
	out := make([]string, 0, len(e.set))
	for m := range e.set {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

func (s *store) SIsMember(key, member string) (bool, error) {
	e, err := s.typed(key, kSet)
	if e == nil || err != nil {
		return false, err
	}
	_, ok := e.set[member]
	return ok, nil
}

func (s *store) Publish(channel, message string) int {
	if s.publish == nil {
		return 0
	}
	return s.publish(channel, message)
}
