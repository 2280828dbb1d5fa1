package httplimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// ErrNoKey is a key function's error when a request carries nothing to key
// it by (a missing header, an unparsable address); the middleware answers
// 400 by default.
var ErrNoKey = errors.New("httplimit: no key")

// KeyFunc returns the key a request is limited by. An error wrapping
// ErrNoKey is the client's (400 by default); see Options.OnError.
type KeyFunc func(r *http.Request) (string, error)

// IPOptions say how a request's client address is found and grouped. The
// zero value keys by the connection's peer address (RemoteAddr), an IPv4
// client by its address and an IPv6 client by its /64.
type IPOptions struct {
	// IPv6Prefix is how many leading bits of an IPv6 address name one
	// client: 1 to 128, default 64 (what one subscriber is usually
	// given, so that a client cannot rotate through its own addresses to
	// escape the limit). 128 keys every address apart.
	IPv6Prefix int
	// IPv4Prefix is the same for IPv4 (and IPv4-mapped IPv6) addresses: 1
	// to 32, default 32.
	IPv4Prefix int
	// TrustedProxies are the peers whose forwarding header is believed
	// (an IPv4 proxy may be listed as IPv4 or IPv4-mapped IPv6).
	// Empty (the default): the header is never read and the key is the
	// peer address. Otherwise, when the peer is one of them, the client is
	// the rightmost address of the header that is not a trusted proxy
	// (the leftmost when all are), so that what a client writes in the
	// header itself is never taken unless every proxy is trusted.
	TrustedProxies []netip.Prefix
	// Header is the forwarding header read from trusted proxies:
	// "X-Forwarded-For" (the default; comma-separated addresses, one per
	// hop), "Forwarded" (RFC 7239, its for= parameters) or "X-Real-IP"
	// (one address).
	Header string
}

func (o IPOptions) check() error {
	switch {
	case o.IPv6Prefix < 0 || o.IPv6Prefix > 128:
		return invalid("IPOptions.IPv6Prefix %d is not between 1 and 128", o.IPv6Prefix)
	case o.IPv4Prefix < 0 || o.IPv4Prefix > 32:
		return invalid("IPOptions.IPv4Prefix %d is not between 1 and 32", o.IPv4Prefix)
	}
	for _, p := range o.TrustedProxies {
		if !p.IsValid() {
			return invalid("IPOptions.TrustedProxies holds an invalid prefix %v", p)
		}
	}
	return nil
}

// Key keys r by its client address, grouped by IPv6Prefix and IPv4Prefix:
// "192.0.2.7", "2001:db8:1:2::/64". Errors wrap ErrNoKey (no address) or
// distkit.ErrInvalidOption (o itself is invalid).
func (o IPOptions) Key(r *http.Request) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	a, err := o.Addr(r)
	if err != nil {
		return "", err
	}
	bits, full := o.IPv6Prefix, 128
	if bits == 0 {
		bits = 64
	}
	if a.Is4() {
		bits, full = o.IPv4Prefix, 32
		if bits == 0 {
			bits = 32
		}
	}
	if bits == full {
		return a.String(), nil
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	return p.String(), nil
}

// Addr is r's client address as Key finds it (before grouping): the peer
// (RemoteAddr), or, from a trusted proxy, the forwarding header's
// rightmost untrusted hop. IPv4-mapped IPv6 addresses are returned as
// IPv4, zones dropped. Errors wrap ErrNoKey.
func (o IPOptions) Addr(r *http.Request) (netip.Addr, error) {
	peer, err := parseHost(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: RemoteAddr %q: %v", ErrNoKey, r.RemoteAddr, err)
	}
	if !o.trusted(peer) {
		return peer, nil
	}
	name := o.Header
	if name == "" {
		name = "X-Forwarded-For"
	}
	hops, err := forwarded(r.Header, name)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(hops) == 0 { // the proxy itself (a health check), or it forwards nothing
		return peer, nil
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !o.trusted(hops[i]) {
			return hops[i], nil
		}
	}
	return hops[0], nil
}

// trusted reports whether a (unmapped) is a trusted proxy. An IPv4
// address is also looked up in its IPv4-mapped IPv6 form (::ffff:a.b.c.d),
// the form a dual-stack listener shows it in, so that a proxy listed
// either way is trusted.
func (o IPOptions) trusted(a netip.Addr) bool {
	mapped := netip.AddrFrom16(a.As16())
	for _, p := range o.TrustedProxies {
		if p.Contains(a) || (a.Is4() && p.Contains(mapped)) {
			return true
		}
	}
	return false
}

// forwarded lists the hops of a forwarding header, leftmost (the original
// client, as claimed) first. A malformed hop is an error: the proxy that
// wrote it cannot be understood.
func forwarded(h http.Header, name string) ([]netip.Addr, error) {
	var raw []string
	for _, v := range h.Values(name) {
		for _, e := range strings.Split(v, ",") {
			raw = append(raw, strings.TrimSpace(e))
		}
	}
	if len(raw) == 1 && raw[0] == "" {
		raw = nil
	}
	isForwarded := strings.EqualFold(name, "Forwarded")
	out := make([]netip.Addr, 0, len(raw))
	for _, e := range raw {
		v := e
		if isForwarded {
			v = ""
			for _, pair := range strings.Split(e, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					v = strings.Trim(strings.TrimSpace(val), `"`)
				}
			}
		}
		a, err := parseHost(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s hop %q: %v", ErrNoKey, name, e, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseHost reads "addr", "addr:port", "[v6]" or "[v6]:port" (zones
// dropped, IPv4-mapped addresses unmapped).
func parseHost(s string) (netip.Addr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return a.Unmap().WithZone(""), nil
}

// Header keys a request by the value of the named request header (e.g.
// an API key, or a user id an authentication middleware set); a missing
// or empty header is ErrNoKey. The value is the key as it is: a value
// longer than distkit.MaxKeyLen is refused by the limiter (400).
func Header(name string) KeyFunc {
	canonical := http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, error) {
		v := r.Header.Get(canonical)
		if v == "" {
			return "", fmt.Errorf("%w: header %s is missing", ErrNoKey, canonical)
		}
		return v, nil
	}
}

// Route keys a request by the ServeMux pattern that serves it (e.g. "GET
// /items/{id}"): every path of a route shares one key, and paths nobody
// serves share the empty one. With mux nil it reads r.Pattern, which is
// set when the middleware wraps a handler inside the mux; with the mux, it
// asks mux.Handler, for a middleware that wraps the whole mux.
func Route(mux *http.ServeMux) KeyFunc {
	return func(r *http.Request) (string, error) {
		if mux == nil {
			return r.Pattern, nil
		}
		_, p := mux.Handler(r)
		return p, nil
	}
}

// Join keys a request by several keys at once (e.g. per route and
// client IP); the first error is the result's. Distinct key tuples give
// distinct keys (each part is length-prefixed).
func Join(keys ...KeyFunc) KeyFunc {
	return func(r *http.Request) (string, error) {
		var b strings.Builder
		for _, k := range keys {
			v, err := k(r)
			if err != nil {
				return "", err
			}
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteByte(':')
			b.WriteString(v)
		}
		return b.String(), nil
	}
}
