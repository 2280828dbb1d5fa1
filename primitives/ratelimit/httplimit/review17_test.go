package httplimit_test

import (
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"testing"

	"github.com/distkit-go/distkit/primitives/ratelimit"
	"github.com/distkit-go/distkit/primitives/ratelimit/httplimit"
)

// sfInteger reports whether s is an Integer of RFC 8941 (Structured Field
// Values), which draft-ietf-httpapi-ratelimit-headers-11 makes q, w, r and
// t: at most 15 decimal digits. A field with a longer one is malformed,
// and a client must ignore it (draft section 7).
func sfInteger(s string) bool {
	return match(s, `^-?[0-9]{1,15}$`)
}

// The fields stay well-formed for every valid Limit: N may be up to
// ratelimit.MaxCount (16 digits), beyond the Structured Field Integer
// range, and was written as is (q=9007199254740991, r=9007199254740990):
// a malformed RateLimit-Policy and RateLimit that clients must ignore.
// A value beyond the range is announced as the largest Integer: a lower
// quota and availability than the limiter's, which the draft allows.
func TestReview17_FieldIntegersInRange(t *testing.T) {
	l := newLocal(t)
	for _, fields := range []httplimit.Fields{httplimit.DraftFields, httplimit.LegacyFields} {
		h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerMinute(ratelimit.MaxCount), Policy: "big",
			Fields: fields}).Wrap(ok)
		w := do(h, "192.0.2.1:1")
		if w.Code != 200 {
			t.Fatalf("%d", w.Code)
		}
		var values []string
		if fields == httplimit.DraftFields {
			re := `^"big";q=([0-9-]+);w=60$`
			pol := w.Header().Get("RateLimit-Policy")
			if !match(pol, re) {
				t.Fatalf("RateLimit-Policy %q", pol)
			}
			rl := w.Header().Get("RateLimit")
			if !match(rl, `^"big";r=([0-9-]+);t=[0-9]+$`) {
				t.Fatalf("RateLimit %q", rl)
			}
			values = append(values, regexpSub(pol, re), regexpSub(rl, `^"big";r=([0-9-]+);`))
		} else {
			values = append(values, w.Header().Get("RateLimit-Limit"), w.Header().Get("RateLimit-Remaining"))
		}
		for _, v := range values {
			if !sfInteger(v) {
				t.Errorf("fields %v: %q is not a Structured Field Integer (at most 15 digits): the field is malformed (%v)", fields, v, w.Header())
			}
		}
		if len(values) == 2 {
			q, _ := strconv.ParseInt(values[0], 10, 64)
			r, _ := strconv.ParseInt(values[1], 10, 64)
			if r > q || q > ratelimit.MaxCount {
				t.Errorf("fields %v: quota %d, remaining %d", fields, q, r)
			}
		}
	}
}

// A trusted proxy is trusted whichever form of its address the server
// sees: on a dual-stack listener an IPv4 peer appears as an IPv4-mapped
// IPv6 address (::ffff:10.0.0.1), and an operator who lists the proxy in
// that form (::ffff:10.0.0.0/104, as the logs show it) must get its
// forwarding header believed. The peer was unmapped before the comparison
// and the mapped prefix matched nothing: every client behind the proxy was
// keyed as the proxy itself, one limit for all of them.
func TestReview17_TrustedProxyIPv4Mapped(t *testing.T) {
	for _, tc := range []struct {
		proxies, remote string
	}{
		{"::ffff:10.0.0.0/104", "[::ffff:10.0.0.1]:80"},
		{"::ffff:10.0.0.0/104", "10.0.0.1:80"},
		{"::ffff:10.0.0.0/126", "10.0.0.1:80"},
		{"10.0.0.0/8", "[::ffff:10.0.0.1]:80"},
	} {
		o := httplimit.IPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix(tc.proxies)}}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		r.Header.Set("X-Forwarded-For", "203.0.113.9, ::ffff:10.0.0.2")
		k, err := o.Key(r)
		if err != nil || k != "203.0.113.9" {
			t.Errorf("trusted %s, peer %s, X-Forwarded-For 203.0.113.9 then the proxy ::ffff:10.0.0.2: key %q, %v; want the client 203.0.113.9",
				tc.proxies, tc.remote, k, err)
		}
	}
}

func regexpSub(s, re string) string {
	m := regexpFind(re, s)
	if len(m) < 2 {
		return ""
	}
	return m[1]
}

func regexpFind(re, s string) []string { return regexp.MustCompile(re).FindStringSubmatch(s) }
