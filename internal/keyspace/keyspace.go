// Package keyspace is the one place where distkit turns what a user names
// (keys, prefixes, lock names, owners, instance ids) into Redis key names,
// hash fields, sorted-set members and channel names. Every primitive builds
// its layout here, and so will any tool that inspects live state.
//
// # Encoding
//
// A user-supplied string is any byte string of 1 to distkit.MaxKeyLen bytes
// (validated by distkit.ValidateKey). Escape encodes it injectively: the
// bytes '%', ':', '{', '}', every byte below 0x20 and 0x7f become '%'
// followed by two upper-case hex digits; every other byte, 0x80–0xFF
// included, is kept as it is. So an escaped string never contains ':' (the
// separator of composed names), '{' or '}' (the Cluster hash-tag
// delimiters) nor a control byte, and two distinct strings never escape to
// the same one. A string without any of the escaped bytes is its own
// encoding, so data written before the encoding existed (when those bytes
// were rejected) keeps its names, except for strings containing '%'.
//
// # Composed names
//
// Names composed of several escaped parts join them with ':' (Sep). Since
// no escaped part contains ':', the parts can be split again, and all names
// starting with the parts x and ':' form the lexical range [x: , x;) — ';'
// (SepNext) is the byte after ':'. Scripts that scan such a range (Redis
// ZRANGEBYLEX '[x:' '(x;') and their Go twins (LexRange) use exactly this
// bound, which holds for every byte that may follow.
package keyspace

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distkit-go/distkit"
)

// Sep joins the escaped parts of a composed name; SepNext is the byte after
// it, the exclusive upper bound of a lexical range of names sharing a first
// part.
const (
	Sep     = ":"
	SepNext = ";"
)

const hexDigits = "0123456789ABCDEF"

// escaped reports whether Escape encodes c.
func escaped(c byte) bool {
	return c == '%' || c == ':' || c == '{' || c == '}' || c < 0x20 || c == 0x7f
}

// Escape encodes s injectively (see the package documentation). A string
// without bytes to escape is returned as it is, without allocating.
func Escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if escaped(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escaped(c) {
			b = append(b, '%', hexDigits[c>>4], hexDigits[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// ErrNotEscaped reports a string Unescape cannot decode: it was not
// produced by Escape.
var ErrNotEscaped = errors.New("keyspace: not an escaped string")

// Unescape decodes what Escape produced. It accepts only Escape's exact
// output (upper-case hex, no byte left unescaped that Escape would have
// escaped), so Unescape(x) succeeds iff x == Escape(Unescape(x)).
func Unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		for i := 0; i < len(s); i++ {
			if escaped(s[i]) {
				return "", fmt.Errorf("%w: byte 0x%02x at %d", ErrNotEscaped, s[i], i)
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if escaped(c) {
				return "", fmt.Errorf("%w: byte 0x%02x at %d", ErrNotEscaped, c, i)
			}
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w: truncated escape at %d", ErrNotEscaped, i)
		}
		hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: bad escape %q at %d", ErrNotEscaped, s[i:i+3], i)
		}
		d := byte(hi<<4 | lo)
		if !escaped(d) {
			return "", fmt.Errorf("%w: byte 0x%02x needs no escape (at %d)", ErrNotEscaped, d, i)
		}
		b = append(b, d)
		i += 2
	}
	return string(b), nil
}

// Join composes escaped parts into one name (parts must already be
// escaped or be fixed words without escaped bytes).
func Join(parts ...string) string { return strings.Join(parts, Sep) }

// LexRange returns the bounds of the names whose first part is the escaped
// string x: every such name n has lo <= n < hi (byte-wise), and no other
// name does. Redis scripts use ZRANGEBYLEX '['..lo '('..hi.
func LexRange(x string) (lo, hi string) { return x + Sep, x + SepNext }

// InLexRange reports whether name's first part is the escaped string x,
// the way ZRANGEBYLEX over LexRange(x) selects it.
func InLexRange(name, x string) bool {
	lo, hi := LexRange(x)
	return name >= lo && name < hi
}

// Prefix validates a user's prefix and returns it, or distkit.DefaultPrefix
// for "". The error wraps distkit.ErrInvalidKey.
func Prefix(prefix string) (string, error) {
	if prefix == "" {
		return distkit.DefaultPrefix, nil
	}
	if err := distkit.ValidateKey("prefix", prefix); err != nil {
		return "", err
	}
	return prefix, nil
}

// tag is a hash tag over escaped parts: "{a:b}". Keys sharing a tag share a
// Cluster slot.
func tag(parts ...string) string { return "{" + Join(parts...) + "}" }
