package driver

import "time"

// Store is the Redis-like data model a Script's Go implementation runs
// against in the memory backend. It has strings, hashes, sorted sets, sets,
// millisecond TTLs and a server clock. Methods mirror the Redis commands of
// the same name; a method used on a key of another type returns an error
// whose message starts with "WRONGTYPE", like Redis.
//
// A Store is only valid during the Script.Run call it was passed to; the
// whole call is atomic.
type Store interface {
	// Now is the server time (Redis TIME).
	Now() time.Time

	Get(key string) (value string, ok bool, err error)
	// Set stores value; ttl > 0 sets an expiry, ttl <= 0 clears any expiry.
	Set(key, value string, ttl time.Duration) error
	Del(keys ...string) int
	Exists(key string) bool
	// PExpire sets a ttl on an existing key; false when the key is absent.
	PExpire(key string, ttl time.Duration) bool
	// PTTL returns the remaining ttl; -1 when the key has no expiry, -2 when
	// it is absent (as Redis, in milliseconds).
	PTTL(key string) int64

	HGet(key, field string) (value string, ok bool, err error)
	HSet(key, field, value string) error
	HDel(key string, fields ...string) (int, error)
	HGetAll(key string) (map[string]string, error)
	HLen(key string) (int, error)

	ZAdd(key string, score float64, member string) error
	ZScore(key, member string) (score float64, ok bool, err error)
	ZRem(key string, members ...string) (int, error)
	// ZRangeByScore returns members with min <= score <= max, ordered by
	// score then member.
	ZRangeByScore(key string, min, max float64) ([]ZMember, error)
	ZCard(key string) (int, error)

	SAdd(key string, members ...string) (int, error)
	SRem(key string, members ...string) (int, error)
	SMembers(key string) ([]string, error)
	SIsMember(key, member string) (bool, error)

	// Publish sends message on channel to current subscribers and returns
	// how many received it.
	Publish(channel, message string) int
}

// ZMember is one element of a sorted set.
type ZMember struct {
	Member string
	Score  float64
}

// NowMillis returns the store's server time in Unix milliseconds, the unit
// Lua scripts compute from TIME.
func NowMillis(st Store) int64 { return st.Now().UnixMilli() }
