package httplimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/ratelimit"
	"github.com/distkit-go/distkit/primitives/ratelimit/httplimit"
)

func Example() {
	ctx := context.Background()
	b := memory.New(memory.Options{}) // or a Redis driver, shared by every instance
	limiter, _ := ratelimit.NewRedis(b, ratelimit.Options{})
	defer limiter.Close(ctx)

	perIP, err := httplimit.New(httplimit.Options{
		Limiter: limiter.Absolute(),
		Limit:   ratelimit.PerHour(2),
		Policy:  "api",
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "items") })
	h := perIP.Wrap(mux)

	for range 3 {
		r := httptest.NewRequest("GET", "/items", nil)
		r.RemoteAddr = "[2001:db8:1:2::7]:50000"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code, w.Header().Get("RateLimit-Policy"), strings.SplitAfter(w.Header().Get("RateLimit"), ";t=")[0])
	}
	// Output:
	// 200 "api";q=2;w=3600 "api";r=1;t=
	// 200 "api";q=2;w=3600 "api";r=0;t=
	// 429 "api";q=2;w=3600 "api";r=0;t=
}

// Behind a reverse proxy: the forwarding header is believed from the proxy
// only, and an IPv6 client is one /64.
func ExampleIPOptions_Key() {
	ip := httplimit.IPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, c := range []struct{ peer, xff string }{
		{"10.0.0.5:443", "2001:db8:aa:bb:1::9"},   // via the proxy
		{"10.0.0.5:443", "6.6.6.6, 198.51.100.7"}, // a client's own entry is ignored
		{"203.0.113.9:5000", "198.51.100.7"},      // not from the proxy: header ignored
		{"[2001:db8:aa:bb:2::1]:5000", ""},        // direct, same /64 as the first
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		key, err := ip.Key(r)
		fmt.Println(key, err)
	}
	// Output:
	// 2001:db8:aa:bb::/64 <nil>
	// 198.51.100.7 <nil>
	// 203.0.113.9 <nil>
	// 2001:db8:aa:bb::/64 <nil>
}

// Per route and client: one middleware in front of the mux keys each
// request by the pattern that serves it and the client IP; per user: by
// a header an authentication middleware set.
func ExampleJoin() {
	ctx := context.Background()
	l, _ := ratelimit.NewLocal(ratelimit.Options{})
	defer l.Close(ctx)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {})
	perRoute, _ := httplimit.New(httplimit.Options{
		Limiter: l.Absolute(),
		Limit:   ratelimit.PerMinute(1),
		Key:     httplimit.Join(httplimit.Route(mux), httplimit.IPOptions{}.Key),
	})
	h := perRoute.Wrap(mux)
	for _, path := range []string{"/items/1", "/items/2", "/search"} {
		r := httptest.NewRequest("GET", path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(path, w.Code)
	}
	// Output:
	// /items/1 200
	// /items/2 429
	// /search 200
}
