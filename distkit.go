// Package distkit holds what every distkit primitive shares: key rules,
// comparators, sentinel errors and the Clock.
//
// distkit gives Go services distributed counters, instance-aware counters,
// locks and rate limiting backed by Redis (through rueidis or go-redis) or
// by a pure-Go in-memory backend:
//
//	b := memory.New(memory.Options{})          // or rueidis.New(client), goredis.New(client)
//	defer b.Close()
//	c, _ := counter.NewStrict(b, counter.Options{Prefix: "shop"})
//	n, _ := c.Inc(ctx, "orders", 1)            // 1, stored in Redis hash {shop}:counter
//
// Every error a primitive returns can be matched with errors.Is against the
// sentinels below. Backend failures additionally match ErrNotApplied
// (certainly not executed, safe to retry) or ErrIndeterminate (may have
// executed).
package distkit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/distkit-go/distkit/backend"
)

// Sentinel errors. Every error a primitive returns wraps one of them.
var (
	// ErrInvalidKey: a key, prefix, name or owner breaks the rules of
	// ValidateKey. Nothing was sent to the backend.
	ErrInvalidKey = errors.New("distkit: invalid key")
	// ErrInvalidOption: an option or argument is out of range. Nothing was
	// sent to the backend.
	ErrInvalidOption = backend.ErrInvalidOption
	// ErrClosed: the primitive or backend was closed.
	ErrClosed = backend.ErrClosed
	// ErrNotAcquired: a single lock attempt found the lock held.
	ErrNotAcquired = errors.New("distkit: not acquired")
	// ErrTimeout: a lock was not acquired within the given time.
	ErrTimeout = errors.New("distkit: timeout")
	// ErrRetriesExhausted: a lock was not acquired within the given number
	// of attempts; the error is a *RetriesError.
	ErrRetriesExhausted = errors.New("distkit: retries exhausted")
	// ErrNotHeld: a release or renewal found the lock held by someone else
	// or not at all.
	ErrNotHeld = errors.New("distkit: not held")
	// ErrLeaseLost: the lease backing a held lock or instance was lost.
	ErrLeaseLost = errors.New("distkit: lease lost")
	// ErrOverflow: the operation would overflow an int64; nothing changed.
	ErrOverflow = errors.New("distkit: int64 overflow")

	// ErrNotApplied: the backend certainly did not execute the operation.
	ErrNotApplied = backend.ErrNotApplied
	// ErrIndeterminate: the backend may or may not have executed the operation.
	ErrIndeterminate = backend.ErrIndeterminate
)

// RetriesError reports that a bounded number of attempts all failed. It
// matches ErrRetriesExhausted.
type RetriesError struct {
	Attempts int   // how many attempts were made
	Last     error // the last attempt's error, if it was not a plain refusal
}

func (e *RetriesError) Error() string {
	msg := "distkit: retries exhausted after " + strconv.Itoa(e.Attempts) + " attempts"
	if e.Last != nil {
		msg += ": " + e.Last.Error()
	}
	return msg
}

// Is reports whether target is ErrRetriesExhausted.
func (e *RetriesError) Is(target error) bool { return target == ErrRetriesExhausted }

// Unwrap returns the last attempt's error.
func (e *RetriesError) Unwrap() error { return e.Last }

// Clock tells time; see backend.Clock.
type Clock = backend.Clock

// SystemClock is the operating system's Clock.
type SystemClock = backend.SystemClock

// DefaultPrefix is the prefix primitives use when Options.Prefix is empty.
const DefaultPrefix = "distkit"

// MaxKeyLen is the longest key, prefix, name or owner accepted, in bytes.
const MaxKeyLen = 255

// ValidateKey checks a user-supplied key, prefix, name or owner: 1 to 255
// bytes, no ':' (the separator), no '{' or '}' (hash-tag characters), no
// control characters. what names the argument in the error ("key",
// "prefix", …). The error wraps ErrInvalidKey and says which rule failed.
func ValidateKey(what, key string) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: %s is empty", ErrInvalidKey, what)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalidKey, what, len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == ':':
			return fmt.Errorf("%w: %s %q contains ':' (the key separator) at byte %d", ErrInvalidKey, what, key, i)
		case c == '{' || c == '}':
			return fmt.Errorf("%w: %s %q contains %q (a hash-tag character) at byte %d", ErrInvalidKey, what, key, c, i)
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("%w: %s %q contains control character 0x%02x at byte %d", ErrInvalidKey, what, key, c, i)
		}
	}
	return nil
}

// SanitizeKey removes the characters ValidateKey forbids (':', '{', '}',
// control characters) and truncates the result to MaxKeyLen bytes without
// splitting a UTF-8 sequence. It returns "" when nothing is left, which
// ValidateKey still rejects.
func SanitizeKey(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		if r == ':' || r == '{' || r == '}' || r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len()+len(string(r)) > MaxKeyLen {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// PrefixOrDefault returns DefaultPrefix for "" and prefix otherwise, after
// validating it.
func PrefixOrDefault(prefix string) (string, error) {
	if prefix == "" {
		return DefaultPrefix, nil
	}
	if err := ValidateKey("prefix", prefix); err != nil {
		return "", err
	}
	return prefix, nil
}
