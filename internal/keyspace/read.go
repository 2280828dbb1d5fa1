package keyspace

import (
	"fmt"
	"strconv"
	"strings"
)

// Reading layouts back: what a tool that inspects live state (cmd/distkit)
// needs to turn Redis key names, fields and values into the user's strings
// again. Each function decodes what the corresponding layout function above
// builds, and the key-name parsers check their answer by rebuilding the
// name with that layout function, so a layout is still defined only once.

// GlobQuote escapes s for a Redis MATCH pattern (SCAN, HSCAN): '*', '?',
// '[', ']' and '\' get a backslash, so the pattern matches s literally.
func GlobQuote(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CounterKey decodes a field of CounterHash back to the user's key.
func CounterKey(field string) (string, error) { return Unescape(field) }

// CounterFieldMatch is an HSCAN MATCH pattern over CounterHash selecting
// the fields of every key that starts with lit (any bytes, "" for all).
func CounterFieldMatch(lit string) string { return GlobQuote(CounterField(lit)) + "*" }

// InstanceID decodes a member of the instances zset (InstanceMember) back
// to the instance id.
func InstanceID(member string) (string, error) { return Unescape(member) }

// InstanceCounterKey decodes a field of the total or epochs hash
// (InstanceKeyField) back to the user's key.
func InstanceCounterKey(field string) (string, error) { return Unescape(field) }

// ParseInstanceSlice decodes a field of the slices hash (InstanceSlice):
// the instance id and the key.
func ParseInstanceSlice(field string) (id, key string, err error) {
	i := strings.IndexByte(field, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%w: slice field %q has no ':'", ErrNotEscaped, field)
	}
	if id, err = Unescape(field[:i]); err == nil {
		key, err = Unescape(field[i+1:])
	}
	if err != nil {
		return "", "", fmt.Errorf("slice field %q: %w", field, err)
	}
	return id, key, nil
}

// LockMatch is a SCAN MATCH pattern selecting the keys of every lock under
// prefix whose name starts with lit (any bytes, "" for all). It may select
// other keys too (a rate-limited key's share the same shape); ParseLockKey
// tells the locks' apart.
func LockMatch(prefix, lit string) string {
	return "{" + GlobQuote(Escape(prefix)) + Sep + GlobQuote(Escape(lit)) + "*}" + Sep + "*"
}

// ParseLockKey reports whether key is one of the stored keys of a lock
// under prefix (Lock(prefix, name).Lock, Readers, WaitingWriter or Fence)
// and returns that lock's name.
func ParseLockKey(prefix, key string) (name string, ok bool) {
	rest, ok := strings.CutPrefix(key, "{"+Escape(prefix)+Sep)
	if !ok {
		return "", false
	}
	i := strings.IndexByte(rest, '}')
	if i < 1 {
		return "", false
	}
	name, err := Unescape(rest[:i])
	if err != nil {
		return "", false
	}
	switch k := Lock(prefix, name); key {
	case k.Lock, k.Readers, k.WaitingWriter, k.Fence:
		return name, true
	}
	return "", false
}

// ParseLockAcquisition decodes an acquisition id (LockAcquisition, also
// the value of the waiting-writer mark): the owner and distkit's nonce.
func ParseLockAcquisition(id string) (owner, nonce string, err error) {
	i := strings.IndexByte(id, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%w: acquisition %q has no ':'", ErrNotEscaped, id)
	}
	if owner, err = Unescape(id[:i]); err != nil {
		return "", "", fmt.Errorf("acquisition %q: %w", id, err)
	}
	nonce = id[i+1:]
	if nonce == "" || strings.IndexByte(nonce, ':') >= 0 {
		return "", "", fmt.Errorf("%w: acquisition %q: bad nonce", ErrNotEscaped, id)
	}
	return owner, nonce, nil
}

// ParseLockLease decodes a lock value or a member of the readers zset:
// the acquisition id (LockAcquisition), ':' and the fencing token.
func ParseLockLease(v string) (owner, nonce string, token int64, err error) {
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return "", "", 0, fmt.Errorf("%w: lease %q has no ':'", ErrNotEscaped, v)
	}
	if token, err = strconv.ParseInt(v[i+1:], 10, 64); err != nil || token < 1 {
		return "", "", 0, fmt.Errorf("%w: lease %q: bad token", ErrNotEscaped, v)
	}
	owner, nonce, err = ParseLockAcquisition(v[:i])
	return owner, nonce, token, err
}

// RateLimitTotalField is the field of RateLimitKeys.Counts holding the
// window total as of the last decision; RateLimitGeometryField holds the
// window's geometry "B/nb" (bucket ms / buckets per window) it was last
// written with; every other field is a bucket index (a decimal integer:
// server time in ms divided by the bucket size).
const (
	RateLimitTotalField    = "t"
	RateLimitGeometryField = "g"
)
