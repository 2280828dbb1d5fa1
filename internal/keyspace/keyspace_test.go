package keyspace_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/distkit-go/distkit/internal/keyspace"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"orders":         "orders",
		"user:42":        "user%3A42",
		"a{b}c":          "a%7Bb%7Dc",
		"50%":            "50%25",
		"%3A":            "%253A",
		"2001:db8:0:1::": "2001%3Adb8%3A0%3A1%3A%3A",
		"2001:db80:1::":  "2001%3Adb80%3A1%3A%3A",
		"::":             "%3A%3A",
		"\x00\n\x1f\x7f": "%00%0A%1F%7F",
		"\x80\xff é ;":   "\x80\xff é ;",
		"a b":            "a b",
	} {
		got := keyspace.Escape(in)
		if got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		back, err := keyspace.Unescape(got)
		if err != nil || back != in {
			t.Errorf("Unescape(%q) = %q, %v; want %q", got, back, err, in)
		}
	}
	if keyspace.Escape("2001:db8:0:1::") == keyspace.Escape("2001:db80:1::") {
		t.Fatal("two IPv6 addresses share an encoding")
	}
}

func TestEscapePlainDoesNotAllocate(t *testing.T) {
	key := strings.Repeat("plain-key.", 20)
	if n := testing.AllocsPerRun(100, func() { _ = keyspace.Escape(key) }); n != 0 {
		t.Fatalf("Escape of a plain key allocates %v times", n)
	}
}

func TestUnescapeRejectsForeignStrings(t *testing.T) {
	for _, s := range []string{"a:b", "%3a", "%4", "%", "%GG", "%41", "{x}", "a\nb"} {
		if got, err := keyspace.Unescape(s); !errors.Is(err, keyspace.ErrNotEscaped) {
			t.Errorf("Unescape(%q) = %q, %v; want ErrNotEscaped", s, got, err)
		}
	}
}

// Names of plain keys (no byte that needs escaping) are what they were
// before keys could hold any byte, so existing data keeps its names.
func TestPlainLayoutsUnchanged(t *testing.T) {
	ic := keyspace.InstanceCounter("ws")
	lk := keyspace.Lock("shop", "orders-42")
	rl := keyspace.RateLimit("api", "client-7")
	sk := keyspace.Semaphore("shop", "exports")
	ek := keyspace.Election("shop", "scheduler")
	for got, want := range map[string]string{
		keyspace.CounterHash("shop"):              "{shop}:counter",
		keyspace.CounterField("orders"):           "orders",
		keyspace.CounterLaxMarker("shop", "ab12"): "{shop}:laxseq:ab12",
		ic.Instances: "{ws}:ic:instances",
		ic.Total:     "{ws}:ic:total",
		ic.Slices:    "{ws}:ic:slices",
		ic.Owned:     "{ws}:ic:owned",
		ic.Holders:   "{ws}:ic:holders",
		ic.Epochs:    "{ws}:ic:epochs",
		ic.Registry:  "{ws}:ic:registry",
		ic.Rejoined:  "{ws}:ic:rejoined",
		ic.Cleared:   "{ws}:ic:cleared",
		ic.Clock:     "{ws}:ic:clock",
		keyspace.InstanceCounterMarker("ws", "n1"): "{ws}:ic:seq:n1",
		keyspace.InstanceSlice("n1", "conns"):      "n1:conns",
		keyspace.InstanceHolder("conns", "n1"):     "conns:n1",
		lk.Lock:                                    "{shop:orders-42}:lock",
		lk.Readers:                                 "{shop:orders-42}:readers",
		lk.WaitingWriter:                           "{shop:orders-42}:wwait",
		lk.Fence:                                   "{shop:orders-42}:fence",
		lk.Channel:                                 "{shop:orders-42}:released",
		keyspace.LockAcquisition("owner", "x9"):    "owner:x9",
		rl.Counts:                                  "{api:client-7}:rl:counts",
		sk.Holders:                                 "{shop:exports}:sem:holders",
		sk.Queue:                                   "{shop:exports}:sem:queue",
		sk.QueueExpiry:                             "{shop:exports}:sem:qexp",
		sk.Fence:                                   "{shop:exports}:sem:fence",
		sk.Gone:                                    "{shop:exports}:sem:gone",
		sk.Channel:                                 "{shop:exports}:sem:released",
		ek.Leader:                                  "{shop:scheduler}:elect:leader",
		ek.Fence:                                   "{shop:scheduler}:elect:fence",
		ek.Channel:                                 "{shop:scheduler}:elect:changed",
		rl.Index:                                   "{api:client-7}:rl:index",
		keyspace.InstanceKeyField("conns"):         "conns",
		keyspace.InstanceMember("n1"):              "n1",
		keyspace.CounterHash("ünï"):                "{ünï}:counter",
		keyspace.CounterHash("50%"):                "{50%25}:counter", // the one byte that changed
		keyspace.RateLimit("p", "2001:db8::1").Index: "{p:2001%3Adb8%3A%3A1}:rl:index",
	} {
		if got != want {
			t.Errorf("layout %q, want %q", got, want)
		}
	}
}

func TestLexRange(t *testing.T) {
	id := keyspace.Escape("a")
	for _, key := range []string{"", "\xff", "\xff\xff\xff", "\x80", "x", "%3A", ";"} {
		m := keyspace.InstanceSlice("a", key)
		if !keyspace.InLexRange(m, id) {
			t.Errorf("%q not in the range of instance %q", m, id)
		}
	}
	for _, other := range []string{"a;", "ab", "a\xff", "b", "", "a%3A"} {
		m := keyspace.InstanceSlice(other, "k")
		if keyspace.InLexRange(m, id) {
			t.Errorf("%q (instance %q) in the range of instance %q", m, other, id)
		}
	}
}
