package keyspace_test

import (
	"strings"
	"testing"

	"github.com/distkit-go/distkit/internal/keyspace"
)

// checkEscaped fails unless s is a well-formed escape: no ':', '{', '}'
// or control byte, and every '%' starts an upper-case hex escape.
func checkEscaped(t *testing.T, in, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ':' || c == '{' || c == '}' || c < 0x20 || c == 0x7f:
			t.Fatalf("Escape(%q) = %q holds byte 0x%02x", in, s, c)
		case c == '%':
			if i+2 >= len(s) || !strings.ContainsRune("0123456789ABCDEF", rune(s[i+1])) || !strings.ContainsRune("0123456789ABCDEF", rune(s[i+2])) {
				t.Fatalf("Escape(%q) = %q: malformed escape at %d", in, s, i)
			}
		}
	}
}

// FuzzEscape: Escape is injective (it round-trips through Unescape, and two
// inputs share an encoding only when they are equal) and its output holds
// no separator, hash-tag or control byte.
func FuzzEscape(f *testing.F) {
	f.Add("user:42", "user%3A42")
	f.Add("2001:db8:0:1::", "2001:db80:1::")
	f.Add("a{b}c", "a%7Bb%7Dc")
	f.Add("\x00\xff", "%00\xff")
	f.Fuzz(func(t *testing.T, a, b string) {
		ea, eb := keyspace.Escape(a), keyspace.Escape(b)
		checkEscaped(t, a, ea)
		if back, err := keyspace.Unescape(ea); err != nil || back != a {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", a, back, err)
		}
		if (ea == eb) != (a == b) {
			t.Fatalf("Escape(%q) = %q, Escape(%q) = %q", a, ea, b, eb)
		}
		// Unescape accepts nothing but Escape's output.
		if back, err := keyspace.Unescape(b); err == nil && keyspace.Escape(back) != b {
			t.Fatalf("Unescape(%q) = %q, which escapes to %q", b, back, keyspace.Escape(back))
		}
	})
}

// hashTag is the part of a Redis key that decides its Cluster slot.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// FuzzLayouts: every layout maps distinct inputs to distinct names, keeps
// all names of one unit in one hash tag, and composed members fall in
// exactly their own lexical range.
func FuzzLayouts(f *testing.F) {
	f.Add("p", "k", "p", "k")
	f.Add("a", "b:c", "a:b", "c")
	f.Add("a}", "{b", "a", "}{b")
	f.Add("x", "\xff\xff", "x\xff", "\xff")
	f.Add("%", "3A", "%3A", "")
	f.Fuzz(func(t *testing.T, p1, k1, p2, k2 string) {
		same := p1 == p2 && k1 == k2
		two := map[string][2]string{
			"Lock":          {keyspace.Lock(p1, k1).Lock, keyspace.Lock(p2, k2).Lock},
			"Channel":       {keyspace.Lock(p1, k1).Channel, keyspace.Lock(p2, k2).Channel},
			"RateLimit":     {keyspace.RateLimit(p1, k1).Counts, keyspace.RateLimit(p2, k2).Counts},
			"Semaphore":     {keyspace.Semaphore(p1, k1).Holders, keyspace.Semaphore(p2, k2).Holders},
			"SemChannel":    {keyspace.Semaphore(p1, k1).Channel, keyspace.Semaphore(p2, k2).Channel},
			"Election":      {keyspace.Election(p1, k1).Leader, keyspace.Election(p2, k2).Leader},
			"ElectChannel":  {keyspace.Election(p1, k1).Channel, keyspace.Election(p2, k2).Channel},
			"LaxMarker":     {keyspace.CounterLaxMarker(p1, k1), keyspace.CounterLaxMarker(p2, k2)},
			"ICMarker":      {keyspace.InstanceCounterMarker(p1, k1), keyspace.InstanceCounterMarker(p2, k2)},
			"Slice":         {keyspace.InstanceSlice(p1, k1), keyspace.InstanceSlice(p2, k2)},
			"Holder":        {keyspace.InstanceHolder(p1, k1), keyspace.InstanceHolder(p2, k2)},
			"Acquisition":   {keyspace.LockAcquisition(p1, keyspace.Escape(k1)), keyspace.LockAcquisition(p2, keyspace.Escape(k2))},
			"CounterHash":   {keyspace.CounterHash(p1 + k1), keyspace.CounterHash(p2 + k2)},
			"InstanceTotal": {keyspace.InstanceCounter(p1 + k1).Total, keyspace.InstanceCounter(p2 + k2).Total},
		}
		for name, v := range two {
			sameIn := same
			if name == "CounterHash" || name == "InstanceTotal" {
				sameIn = p1+k1 == p2+k2
			}
			if (v[0] == v[1]) != sameIn {
				t.Fatalf("%s: (%q, %q) → %q and (%q, %q) → %q", name, p1, k1, v[0], p2, k2, v[1])
			}
		}
		// One unit, one slot.
		lk := keyspace.Lock(p1, k1)
		for _, k := range []string{lk.Readers, lk.WaitingWriter, lk.Fence, lk.Channel} {
			if hashTag(k) != hashTag(lk.Lock) {
				t.Fatalf("lock keys %q and %q in different slots", lk.Lock, k)
			}
		}
		if want := keyspace.Escape(p1) + ":" + keyspace.Escape(k1); hashTag(lk.Lock) != want {
			t.Fatalf("lock %q: hash tag %q, want %q", lk.Lock, hashTag(lk.Lock), want)
		}
		sk, ek := keyspace.Semaphore(p1, k1), keyspace.Election(p1, k1)
		for _, k := range []string{sk.Holders, sk.Queue, sk.QueueExpiry, sk.Fence, sk.Gone, sk.Channel, ek.Leader, ek.Fence, ek.Channel} {
			if hashTag(k) != hashTag(lk.Lock) {
				t.Fatalf("%q not in the slot of lock %q (one name, one tag)", k, lk.Lock)
			}
		}
		// A lock, a semaphore and an election of one name never share a key.
		seen := map[string]bool{}
		for _, k := range []string{lk.Lock, lk.Readers, lk.WaitingWriter, lk.Fence, lk.Channel,
			sk.Holders, sk.Queue, sk.QueueExpiry, sk.Fence, sk.Gone, sk.Channel, ek.Leader, ek.Fence, ek.Channel} {
			if seen[k] {
				t.Fatalf("key %q used twice by the primitives of (%q, %q)", k, p1, k1)
			}
			seen[k] = true
		}
		if p1 == "" { // not a valid prefix; "{}" is no hash tag
			return
		}
		ic := keyspace.InstanceCounter(p1)
		for _, k := range append(ic.List(), keyspace.InstanceCounterMarker(p1, k1), keyspace.CounterHash(p1), keyspace.CounterLaxMarker(p1, k1)) {
			if hashTag(k) != keyspace.Escape(p1) {
				t.Fatalf("%q not in the slot of prefix %q", k, p1)
			}
		}
		rl := keyspace.RateLimit(p1, k1)
		if hashTag(rl.Counts) != hashTag(rl.Index) {
			t.Fatalf("rate-limit keys %q and %q in different slots", rl.Counts, rl.Index)
		}
		// Lexical ranges: a slice of (p1, k1) is in p1's range, and in p2's
		// only when p1 == p2.
		m := keyspace.InstanceSlice(p1, k1)
		if !keyspace.InLexRange(m, keyspace.Escape(p1)) {
			t.Fatalf("%q outside the range of %q", m, p1)
		}
		if keyspace.InLexRange(m, keyspace.Escape(p2)) != (p1 == p2) {
			t.Fatalf("%q (instance %q) in the range of %q: %v", m, p1, p2, !(p1 == p2))
		}
	})
}
