package keyspace_test

import (
	"path"
	"strconv"
	"testing"

	"github.com/distkit-go/distkit/internal/keyspace"
)

var oddStrings = []string{
	"orders-42", "user:42", "2001:db8::1", "a{b}c", "50%", "%3A", "*", "a?b", "[x]", `back\slash`,
	"\x00\n\x7f", "\x80\xff", "é", ";", "}", ":", "a b", "x:y:z",
}

func TestReadLayoutsRoundTrip(t *testing.T) {
	for _, prefix := range oddStrings {
		for _, s := range oddStrings {
			k := keyspace.Lock(prefix, s)
			for _, key := range []string{k.Lock, k.Readers, k.WaitingWriter, k.Fence} {
				if name, ok := keyspace.ParseLockKey(prefix, key); !ok || name != s {
					t.Errorf("ParseLockKey(%q, %q) = %q, %v; want %q", prefix, key, name, ok, s)
				}
			}
			rl := keyspace.RateLimit(prefix, s)
			for _, key := range []string{k.Channel, rl.Counts, rl.Index, keyspace.CounterHash(prefix)} {
				if name, ok := keyspace.ParseLockKey(prefix, key); ok {
					t.Errorf("ParseLockKey(%q, %q) = %q: not a lock key", prefix, key, name)
				}
			}
			if got, err := keyspace.CounterKey(keyspace.CounterField(s)); err != nil || got != s {
				t.Errorf("CounterKey round trip of %q: %q, %v", s, got, err)
			}
			if got, err := keyspace.InstanceID(keyspace.InstanceMember(s)); err != nil || got != s {
				t.Errorf("InstanceID round trip of %q: %q, %v", s, got, err)
			}
			if got, err := keyspace.InstanceCounterKey(keyspace.InstanceKeyField(s)); err != nil || got != s {
				t.Errorf("InstanceCounterKey round trip of %q: %q, %v", s, got, err)
			}
			id, key, err := keyspace.ParseInstanceSlice(keyspace.InstanceSlice(prefix, s))
			if err != nil || id != prefix || key != s {
				t.Errorf("ParseInstanceSlice(InstanceSlice(%q, %q)) = %q, %q, %v", prefix, s, id, key, err)
			}
			acq := keyspace.LockAcquisition(s, "k3x9")
			if o, n, err := keyspace.ParseLockAcquisition(acq); err != nil || o != s || n != "k3x9" {
				t.Errorf("ParseLockAcquisition(%q) = %q, %q, %v", acq, o, n, err)
			}
			lease := acq + ":" + strconv.FormatInt(1712345678901234, 10)
			if o, n, tok, err := keyspace.ParseLockLease(lease); err != nil || o != s || n != "k3x9" || tok != 1712345678901234 {
				t.Errorf("ParseLockLease(%q) = %q, %q, %d, %v", lease, o, n, tok, err)
			}
		}
		// A lock of another prefix is not one of this prefix's.
		if name, ok := keyspace.ParseLockKey(prefix, keyspace.Lock(prefix+"x", "n").Lock); ok {
			t.Errorf("lock of prefix %q parsed as %q under %q", prefix+"x", name, prefix)
		}
	}
}

func TestReadLayoutsRejectForeign(t *testing.T) {
	for _, v := range []string{"", "owner", "owner:nonce", "owner:nonce:x", "owner:nonce:0", "a:b:c:1", "o%zz:n:1", "o::1"} {
		if o, n, tok, err := keyspace.ParseLockLease(v); err == nil {
			t.Errorf("ParseLockLease(%q) = %q, %q, %d: want an error", v, o, n, tok)
		}
	}
	for _, f := range []string{"", "noseparator", "a:b%", "a{:b"} {
		if id, key, err := keyspace.ParseInstanceSlice(f); err == nil {
			t.Errorf("ParseInstanceSlice(%q) = %q, %q: want an error", f, id, key)
		}
	}
	for _, k := range []string{"{distkit:}:lock", "{distkit:a:b}:lock", "{distkit:x}:lockx", "distkit:x:lock", "{distkit:x%3a}:lock"} {
		if name, ok := keyspace.ParseLockKey("distkit", k); ok {
			t.Errorf("ParseLockKey(%q) = %q: want not a lock key", k, name)
		}
	}
}

// The MATCH patterns select exactly the names that start with the literal,
// metacharacters included (checked with path.Match, whose syntax agrees with
// Redis's for names without '/').
func TestMatchPatterns(t *testing.T) {
	for _, lit := range []string{"", "a*", "a?", "[x]", `b\`, "user:", "plain"} {
		for _, s := range []string{"a*b", "ab", "a?c", "[x]1", "x", `b\c`, "user:42", "plainly", "a"} {
			want := len(s) >= len(lit) && s[:len(lit)] == lit
			f := keyspace.CounterField(s)
			if got, _ := path.Match(keyspace.CounterFieldMatch(lit), f); got != want {
				t.Errorf("CounterFieldMatch(%q) on %q: %v, want %v", lit, f, got, want)
			}
			k := keyspace.Lock("p", s).Lock
			if got, _ := path.Match(keyspace.LockMatch("p", lit), k); got != want {
				t.Errorf("LockMatch(%q) on %q: %v, want %v", lit, k, got, want)
			}
		}
	}
}
