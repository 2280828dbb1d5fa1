package httplimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/ratelimit"
	"github.com/distkit-go/distkit/primitives/ratelimit/httplimit"
)

// ok is the handler behind the middleware: 200 with the decision's
// remaining units.
var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	d, found := httplimit.DecisionFrom(r.Context())
	if !found {
		w.WriteHeader(299) // served without a decision
		return
	}
	w.Header().Set("X-Remaining", strFmt(d.Remaining))
	w.WriteHeader(http.StatusOK)
})

func strFmt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func match(s, re string) bool { return regexp.MustCompile(re).MatchString(s) }

func newLocal(t *testing.T) *ratelimit.Local {
	t.Helper()
	l, err := ratelimit.NewLocal(ratelimit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func mustNew(t *testing.T, o httplimit.Options) *httplimit.Middleware {
	t.Helper()
	m, err := httplimit.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func do(h http.Handler, remote string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "/items", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

type problemDoc struct {
	Type     string   `json:"type"`
	Title    string   `json:"title"`
	Status   int      `json:"status"`
	Detail   string   `json:"detail"`
	Violated []string `json:"violated-policies"`
}

// The draft-11 fields on admissions and rejections, Retry-After and the
// 429 problem document.
func TestFieldsAnd429(t *testing.T) {
	l := newLocal(t)
	h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerMinute(3), Policy: "api"}).Wrap(ok)
	// t: the oldest unit leaves the window a minute (and up to one
	// bucket, 600 ms) after it was admitted.
	for i := range 3 {
		w := do(h, "192.0.2.1:1234")
		if w.Code != 200 || w.Header().Get("RateLimit-Policy") != `"api";q=3;w=60` ||
			!match(w.Header().Get("RateLimit"), `^"api";r=`+strFmt(int64(2-i))+`;t=6[01]$`) || w.Header().Get("Retry-After") != "" {
			t.Fatalf("request %d: %d %v", i, w.Code, w.Header())
		}
	}
	w := do(h, "192.0.2.1:1234")
	retry := w.Header().Get("Retry-After")
	if w.Code != 429 || !match(retry, `^6[01]$`) || w.Header().Get("RateLimit") != `"api";r=0;t=`+retry ||
		w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("4th request: %d %v", w.Code, w.Header())
	}
	var p problemDoc
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != 429 || p.Violated[0] != "api" ||
		p.Type != "https://iana.org/assignments/http-problem-types#quota-exceeded" || !strings.Contains(p.Detail, "retry in "+retry+" s") {
		t.Fatalf("429 body %q: %+v, %v", w.Body, p, err)
	}
	// Another client is not affected.
	if w := do(h, "192.0.2.2:1234"); w.Code != 200 {
		t.Fatalf("another client: %d", w.Code)
	}
}

// The legacy trio, alone or with the draft fields; NoFields sends none but
// Retry-After; a period not in whole seconds has no w.
func TestFieldChoices(t *testing.T) {
	l := newLocal(t)
	for _, tc := range []struct {
		fields            httplimit.Fields
		draft, legacy     bool
		limit             ratelimit.Limit
		policy, rateLimit string
	}{
		{httplimit.LegacyFields, false, true, ratelimit.PerSecond(1), "", ""},
		{httplimit.DraftFields | httplimit.LegacyFields, true, true, ratelimit.PerSecond(1), `"default";q=1;w=1`, `^"default";r=0;t=[12]$`},
		{httplimit.NoFields, false, false, ratelimit.PerSecond(1), "", ""},
		{0, true, false, ratelimit.Every(1500 * time.Millisecond), `"default";q=1`, `^"default";r=0;t=2$`},
	} {
		h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: tc.limit, Fields: tc.fields}).Wrap(ok)
		remote := "198.51.100." + strFmt(int64(tc.fields)) + ":1"
		w := do(h, remote)
		if w.Code != 200 || (w.Header().Get("RateLimit") != "") != tc.draft || (w.Header().Get("RateLimit-Limit") != "") != tc.legacy {
			t.Fatalf("fields %v: %v", tc.fields, w.Header())
		}
		if tc.draft && (w.Header().Get("RateLimit-Policy") != tc.policy || !match(w.Header().Get("RateLimit"), tc.rateLimit)) {
			t.Fatalf("fields %v: %v; want %s and %s", tc.fields, w.Header(), tc.policy, tc.rateLimit)
		}
		if tc.legacy && (w.Header().Get("RateLimit-Limit") != "1" || w.Header().Get("RateLimit-Remaining") != "0" || !match(w.Header().Get("RateLimit-Reset"), `^[12]$`)) {
			t.Fatalf("legacy fields: %v", w.Header())
		}
		if w := do(h, remote); w.Code != 429 || w.Header().Get("Retry-After") == "" {
			t.Fatalf("fields %v, second request: %d %v", tc.fields, w.Code, w.Header())
		}
	}
}

// IPv6 clients are grouped by /64 by default (a client cannot escape by
// rotating its own addresses), by any prefix if asked; IPv4-mapped
// addresses count as IPv4; zones are dropped.
func TestIPv6Grouping(t *testing.T) {
	l := newLocal(t)
	for _, tc := range []struct {
		ip       httplimit.IPOptions
		a, b     string
		together bool
	}{
		{httplimit.IPOptions{}, "[2001:db8:1:2::1]:80", "[2001:db8:1:2:ffff::9]:80", true},
		{httplimit.IPOptions{}, "[2001:db8:1:2::1]:80", "[2001:db8:1:3::1]:80", false},
		{httplimit.IPOptions{IPv6Prefix: 128}, "[2001:db8:1:2::1]:80", "[2001:db8:1:2::2]:80", false},
		{httplimit.IPOptions{IPv6Prefix: 48}, "[2001:db8:1:2::1]:80", "[2001:db8:1:3::1]:80", true},
		{httplimit.IPOptions{}, "[::ffff:192.0.2.9]:80", "192.0.2.9:81", true},
		{httplimit.IPOptions{}, "[fe80::1%eth0]:80", "[fe80::1%eth1]:80", true},
		{httplimit.IPOptions{IPv4Prefix: 24}, "192.0.2.9:80", "192.0.2.200:80", true},
		{httplimit.IPOptions{}, "192.0.2.9:80", "192.0.2.200:80", false},
	} {
		h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), IP: tc.ip,
			Policy: "p" + strFmt(time.Now().UnixNano())}).Wrap(ok)
		if w := do(h, tc.a); w.Code != 200 {
			t.Fatalf("%+v %s: %d", tc.ip, tc.a, w.Code)
		}
		if w := do(h, tc.b); (w.Code == 429) != tc.together {
			t.Fatalf("%+v: %s after %s: %d; want the same client: %v", tc.ip, tc.b, tc.a, w.Code, tc.together)
		}
	}
}

// Forwarding headers are believed only from trusted proxies, and then the
// rightmost untrusted hop is the client: what a client writes itself in
// the header never picks its key.
func TestTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	for _, tc := range []struct {
		name   string
		ip     httplimit.IPOptions
		remote string
		hdr    []string
		want   string
	}{
		{"no trusted proxies: the header is ignored", httplimit.IPOptions{}, "192.0.2.1:1", []string{"X-Forwarded-For", "203.0.113.9"}, "192.0.2.1"},
		{"an untrusted peer: ignored", httplimit.IPOptions{TrustedProxies: trusted}, "192.0.2.1:1", []string{"X-Forwarded-For", "203.0.113.9"}, "192.0.2.1"},
		{"a trusted peer", httplimit.IPOptions{TrustedProxies: trusted}, "10.1.1.1:1", []string{"X-Forwarded-For", "203.0.113.9"}, "203.0.113.9"},
		{"a spoofed hop left of the real one", httplimit.IPOptions{TrustedProxies: trusted}, "10.1.1.1:1",
			[]string{"X-Forwarded-For", "6.6.6.6, 203.0.113.9, 10.2.2.2"}, "203.0.113.9"},
		{"hops over several header lines", httplimit.IPOptions{TrustedProxies: trusted}, "10.1.1.1:1",
			[]string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-For", "203.0.113.9"}, "203.0.113.9"},
		{"every hop trusted", httplimit.IPOptions{TrustedProxies: trusted}, "10.1.1.1:1", []string{"X-Forwarded-For", "10.3.3.3, 10.2.2.2"}, "10.3.3.3"},
		{"a trusted peer without the header", httplimit.IPOptions{TrustedProxies: trusted}, "10.1.1.1:1", nil, "10.1.1.1"},
		{"IPv6 hops, grouped by /64", httplimit.IPOptions{TrustedProxies: trusted}, "[2001:db8:ffff::1]:1",
			[]string{"X-Forwarded-For", "2001:db8:5:6:7::8"}, "2001:db8:5:6::/64"},
		{"Forwarded (RFC 7239)", httplimit.IPOptions{TrustedProxies: trusted, Header: "Forwarded"}, "10.1.1.1:1",
			[]string{"Forwarded", `for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.9.9.9`}, "2001:db8:cafe::/64"},
		{"X-Real-IP", httplimit.IPOptions{TrustedProxies: trusted, Header: "X-Real-IP", IPv6Prefix: 128}, "10.1.1.1:1",
			[]string{"X-Real-IP", "2001:db8::5"}, "2001:db8::5"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			r.Header.Add(tc.hdr[i], tc.hdr[i+1])
		}
		got, err := tc.ip.Key(r)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// A hop a trusted proxy wrote that is not an address: no key (400),
	// never the proxy's own address (which would lump every client
	// together).
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.1.1:1"
	r.Header.Set("X-Forwarded-For", "203.0.113.9, not-an-ip")
	if k, err := (httplimit.IPOptions{TrustedProxies: trusted}).Key(r); !errors.Is(err, httplimit.ErrNoKey) {
		t.Fatalf("a malformed hop: %q, %v", k, err)
	}
	r.RemoteAddr = "@" // a Unix socket
	if k, err := (httplimit.IPOptions{}).Key(r); !errors.Is(err, httplimit.ErrNoKey) {
		t.Fatalf("no peer address: %q, %v", k, err)
	}
	if _, err := (httplimit.IPOptions{IPv6Prefix: 129}).Key(r); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Fatalf("IPv6Prefix 129: %v", err)
	}
}

// Header, Route and Join keys.
func TestKeys(t *testing.T) {
	l := newLocal(t)
	byUser := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Policy: "user",
		Key: httplimit.Header("x-user")}).Wrap(ok)
	if w := do(byUser, "192.0.2.1:1", "X-User", "alice"); w.Code != 200 {
		t.Fatal(w.Code)
	}
	if w := do(byUser, "192.0.2.2:1", "X-User", "alice"); w.Code != 429 {
		t.Fatalf("alice from another address: %d", w.Code)
	}
	if w := do(byUser, "192.0.2.1:1", "X-User", "bob"); w.Code != 200 {
		t.Fatalf("bob: %d", w.Code)
	}
	w := do(byUser, "192.0.2.1:1")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "cannot be attributed") {
		t.Fatalf("no X-User: %d %s", w.Code, w.Body)
	}
	if w := do(byUser, "192.0.2.1:1", "X-User", strings.Repeat("x", distkit.MaxKeyLen)); w.Code != 400 {
		t.Fatalf("an over-long key: %d", w.Code)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", ok)
	mux.Handle("GET /users/{id}", ok)
	perRoute := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(2), Policy: "route",
		Key: httplimit.Join(httplimit.Route(mux), httplimit.IPOptions{}.Key)}).Wrap(mux)
	get := func(path, remote string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		perRoute.ServeHTTP(w, r)
		return w.Code
	}
	for _, s := range []struct {
		path, remote string
		code         int
	}{{"/items/1", "192.0.2.1:1", 200}, {"/items/2", "192.0.2.1:1", 200}, {"/items/3", "192.0.2.1:1", 429},
		{"/users/1", "192.0.2.1:1", 200}, {"/items/1", "192.0.2.2:1", 200}} {
		if got := get(s.path, s.remote); got != s.code {
			t.Fatalf("%s from %s: %d, want %d", s.path, s.remote, got, s.code)
		}
	}
	// Inside the mux, r.Pattern is the route.
	inner := http.NewServeMux()
	inner.Handle("GET /a/{x}", mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Policy: "inner",
		Key: httplimit.Route(nil)}).Wrap(ok))
	for i, want := range []int{200, 429} {
		r := httptest.NewRequest("GET", "/a/"+strFmt(int64(i)), nil)
		w := httptest.NewRecorder()
		inner.ServeHTTP(w, r)
		if w.Code != want {
			t.Fatalf("inner route request %d: %d", i, w.Code)
		}
	}
	// Join is injective: ("a:1", "b") and ("a", "1:b") are different keys.
	k := func(parts ...string) string {
		var fs []httplimit.KeyFunc
		for _, p := range parts {
			fs = append(fs, func(*http.Request) (string, error) { return p, nil })
		}
		s, _ := httplimit.Join(fs...)(httptest.NewRequest("GET", "/", nil))
		return s
	}
	if k("a:1", "b") == k("a", "1:b") || k("", "x") == k("x", "") {
		t.Fatal("Join maps two key tuples to one key")
	}
}

// Cost: units per request; 0 serves without asking; negative is a
// server error.
func TestCost(t *testing.T) {
	l := newLocal(t)
	h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(10), Cost: func(r *http.Request) int64 {
		switch r.Header.Get("X-Cost") {
		case "0":
			return 0
		case "-1":
			return -1
		case "big":
			return 11
		}
		return 4
	}}).Wrap(ok)
	for i, want := range []int{200, 200, 429} { // 4 + 4, then 4 > 2 left
		if w := do(h, "192.0.2.1:1"); w.Code != want {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	if w := do(h, "192.0.2.1:1", "X-Cost", "0"); w.Code != 299 || w.Header().Get("RateLimit") != "" {
		t.Fatalf("cost 0: %d %v; want served without a decision", w.Code, w.Header())
	}
	if w := do(h, "192.0.2.1:1", "X-Cost", "-1"); w.Code != 500 {
		t.Fatalf("cost -1: %d", w.Code)
	}
	w := do(h, "192.0.2.9:1", "X-Cost", "big")
	if w.Code != 429 || w.Header().Get("Retry-After") != "" || !strings.Contains(w.Body.String(), "never fits") {
		t.Fatalf("a request above the limit: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// Degraded decisions: FollowDecision serves what the limiter admitted
// and answers 503 (not 429) to what it refused; ServeDegraded and
// RefuseDegraded override; OnDecision sees each.
func TestDegraded(t *testing.T) {
	b := memory.New(memory.Options{})
	closed, _ := ratelimit.NewRedis(b, ratelimit.Options{})
	open, _ := ratelimit.NewRedis(b, ratelimit.Options{OnError: ratelimit.FailOpen})
	defer closed.Close(context.Background())
	defer open.Close(context.Background())
	var mu sync.Mutex
	var seen []error
	observe := func(r *http.Request, key string, d ratelimit.Decision) {
		mu.Lock()
		seen = append(seen, d.Degraded)
		mu.Unlock()
	}
	for _, tc := range []struct {
		name    string
		lim     httplimit.Limiter
		policy  httplimit.DegradedPolicy
		code    int
		retryIn string
	}{
		{"FailClosed, FollowDecision", closed.Absolute(), httplimit.FollowDecision, 503, "1"},
		{"FailOpen, FollowDecision", open.Absolute(), httplimit.FollowDecision, 200, ""},
		{"FailClosed, ServeDegraded", closed.Absolute(), httplimit.ServeDegraded, 200, ""},
		{"FailOpen, RefuseDegraded", open.Absolute(), httplimit.RefuseDegraded, 503, "1"},
	} {
		h := mustNew(t, httplimit.Options{Limiter: tc.lim, Limit: ratelimit.PerMinute(100), OnDegraded: tc.policy,
			OnDecision: observe}).Wrap(ok)
		b.FailNext(1, nil)
		w := do(h, "192.0.2.1:1")
		if w.Code != tc.code || w.Header().Get("Retry-After") != tc.retryIn || w.Header().Get("RateLimit") != "" ||
			w.Header().Get("RateLimit-Policy") != `"default";q=100;w=60` {
			t.Fatalf("%s: %d %v; want %d", tc.name, w.Code, w.Header(), tc.code)
		}
		if tc.code == 503 && !strings.Contains(w.Body.String(), "temporary-reduced-capacity") {
			t.Fatalf("%s: 503 body %s", tc.name, w.Body)
		}
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if !errors.Is(last, distkit.ErrNotApplied) {
			t.Fatalf("%s: OnDecision saw %v; want the degraded decision", tc.name, last)
		}
		if w := do(h, "192.0.2.1:1"); w.Code != 200 || w.Header().Get("RateLimit") == "" {
			t.Fatalf("%s, backend back: %d %v", tc.name, w.Code, w.Header())
		}
	}
}

// A closed limiter is 503; a client gone gets nothing; a custom OnLimited
// and OnError replace the answers.
func TestErrorsAndHooks(t *testing.T) {
	l, _ := ratelimit.NewLocal(ratelimit.Options{})
	h := mustNew(t, httplimit.Options{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1)}).Wrap(ok)
	l.Close(context.Background())
	if w := do(h, "192.0.2.1:1"); w.Code != 503 {
		t.Fatalf("closed limiter: %d", w.Code)
	}
	l2 := newLocal(t)
	var gotErr error
	h = mustNew(t, httplimit.Options{Limiter: l2.Absolute(), Limit: ratelimit.PerHour(1),
		OnLimited: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := httplimit.DecisionFrom(r.Context())
			w.WriteHeader(418)
			w.Write([]byte(strFmt(d.RetryAfter.Milliseconds())))
		}),
		OnError: func(w http.ResponseWriter, r *http.Request, err error) { gotErr = err; w.WriteHeader(402) },
	}).Wrap(ok)
	do(h, "192.0.2.1:1")
	if w := do(h, "192.0.2.1:1"); w.Code != 418 || w.Header().Get("Retry-After") == "" || w.Body.String() == "0" {
		t.Fatalf("custom OnLimited: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if w := do(h, "nonsense"); w.Code != 402 || !errors.Is(gotErr, httplimit.ErrNoKey) {
		t.Fatalf("custom OnError: %d %v", w.Code, gotErr)
	}
	// A client that went away: the default OnError writes nothing.
	h = mustNew(t, httplimit.Options{Limiter: l2.Absolute(), Limit: ratelimit.PerHour(1)}).Wrap(ok)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	r.RemoteAddr = "192.0.2.77:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Body.Len() != 0 || w.Header().Get("Content-Type") != "" {
		t.Fatalf("gone client: %d %v %q", w.Code, w.Header(), w.Body)
	}
}

func TestNewRejects(t *testing.T) {
	l := newLocal(t)
	for _, o := range []httplimit.Options{
		{Limit: ratelimit.PerHour(1)},
		{Limiter: l.Absolute()},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Policy: `a"b`},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Policy: "a:b"},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Policy: strings.Repeat("p", 65)},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), IP: httplimit.IPOptions{IPv4Prefix: 33}},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), IP: httplimit.IPOptions{TrustedProxies: []netip.Prefix{{}}}},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), Fields: httplimit.NoFields | httplimit.DraftFields},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), OnDegraded: 7},
		{Limiter: l.Absolute(), Limit: ratelimit.PerHour(1), DegradedRetryAfter: -time.Second},
	} {
		if _, err := httplimit.New(o); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("New(%+v): %v", o, err)
		}
	}
}

// Suppressed behind the middleware: a probabilistic rejection says come
// back in a second.
func TestSuppressed(t *testing.T) {
	l, _ := ratelimit.NewLocal(ratelimit.Options{HardLimitFactor: 3, SuppressionCache: time.Nanosecond})
	defer l.Close(context.Background())
	h := mustNew(t, httplimit.Options{Limiter: l.Suppressed(), Limit: ratelimit.PerHour(10)}).Wrap(ok)
	var codes = map[int]int{}
	for range 40 {
		w := do(h, "192.0.2.1:1")
		codes[w.Code]++
		if w.Code == 429 && w.Header().Get("Retry-After") == "" {
			t.Fatalf("a Suppressed rejection without Retry-After: %v", w.Header())
		}
		if w.Header().Get("RateLimit-Policy") != `"default";q=30;w=3600` {
			t.Fatalf("policy of a Suppressed limiter: %v", w.Header())
		}
	}
	if codes[200] < 10 || codes[200] > 30 || codes[429] < 10 {
		t.Fatalf("Suppressed at 4× the limit: %v", codes)
	}
}

// Under FailLocal a degraded refusal is still a quota decision: the
// limiter decided against its local view and knows when room comes back,
// so FollowDecision answers 429 with that Retry-After (not 503 "retry in
// a second", which would invite the client to hammer a full window).
func TestDegradedLocalRefusalIs429(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	hy, err := ratelimit.NewHybrid(b, ratelimit.Options{SyncInterval: time.Hour}) // FailLocal by default
	if err != nil {
		t.Fatal(err)
	}
	defer hy.Close(ctx)
	h := mustNew(t, httplimit.Options{Limiter: hy.Absolute(), Limit: ratelimit.PerMinute(2)}).Wrap(ok)
	for i := 0; i < 2; i++ {
		if w := do(h, "192.0.2.1:1"); w.Code != 200 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	b.FailNext(1000, nil)
	if err := hy.Sync(ctx); err == nil {
		t.Fatal("Sync succeeded with the backend failing")
	}
	w := do(h, "192.0.2.1:1")
	ra, _ := strconv.Atoi(w.Header().Get("Retry-After"))
	if w.Code != http.StatusTooManyRequests || ra < 50 || ra > 61 || !strings.Contains(w.Body.String(), "quota-exceeded") {
		t.Fatalf("degraded local refusal: %d, Retry-After %q, body %s; want 429 with the window's Retry-After (about 60 s)",
			w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}
