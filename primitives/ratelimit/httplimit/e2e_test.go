package httplimit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit"
	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/ratelimit"
	"github.com/distkit-go/distkit/primitives/ratelimit/httplimit"
)

// serve starts an http.Server on a loopback port; it is closed with t.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// The middleware end to end: two HTTP servers (two instances of a
// service) on loopback share one limit through a real redis-server; a
// client gets the draft's fields, 429 with Retry-After once the shared
// limit is used, 503 while Redis is unreachable (FailClosed) and normal
// answers once it is back; Peek and Reset act on the same window.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	srv := env.Server(t)
	proxy, err := faultproxy.Start(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{proxy.Addr}, DisableCache: true, ConnWriteTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	b, err := rueidisbackend.New(c)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testkit.Prefix(t)
	limiter, err := ratelimit.NewRedis(b, ratelimit.Options{Prefix: prefix}) // FailClosed
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { limiter.Close(ctx) })
	var degraded atomic.Int64
	lim := ratelimit.PerMinute(5)
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	var urls []string
	for range 2 {
		m := mustNew(t, httplimit.Options{Limiter: limiter.Absolute(), Limit: lim, Policy: "api",
			Fields: httplimit.DraftFields | httplimit.LegacyFields,
			OnDecision: func(r *http.Request, key string, d ratelimit.Decision) {
				if d.Degraded != nil && degraded.Add(1) == 1 {
					t.Logf("a degraded decision: %+v", d)
				}
			}})
		urls = append(urls, serve(t, m.Wrap(app)))
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(url string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(url + "/items")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	codes := map[int]int{}
	var last *http.Response
	var lastBody string
	for i := range 6 {
		resp, body := get(urls[i%2])
		codes[resp.StatusCode]++
		if resp.StatusCode == 200 && (resp.Header.Get("RateLimit-Policy") != `"api";q=5;w=60` || !strings.HasPrefix(resp.Header.Get("RateLimit"), `"api";r=`) ||
			resp.Header.Get("RateLimit-Limit") != "5" || body != "hello") {
			t.Fatalf("admitted request %d: %v %q", i, resp.Header, body)
		}
		last, lastBody = resp, body
	}
	if codes[200] != 5 || codes[429] != 1 {
		t.Fatalf("6 requests from one client over two servers sharing PerMinute(5): %v", codes)
	}
	var p problemDoc
	if err := json.Unmarshal([]byte(lastBody), &p); err != nil || last.StatusCode != 429 || !match(last.Header.Get("Retry-After"), `^6[01]$`) ||
		last.Header.Get("RateLimit-Remaining") != "0" || p.Violated[0] != "api" || p.Status != 429 {
		t.Fatalf("the 6th: %d %v %q", last.StatusCode, last.Header, lastBody)
	}
	t.Logf("429 from a real server:\nRetry-After: %s\nRateLimit-Policy: %s\nRateLimit: %s\n%s", last.Header.Get("Retry-After"),
		last.Header.Get("RateLimit-Policy"), last.Header.Get("RateLimit"), lastBody)

	// The library sees the same window under the middleware's key.
	st, err := limiter.Absolute().Peek(ctx, "api:127.0.0.1", lim)
	if err != nil || st.Count != 5 {
		t.Fatalf("Peek of the client's window: %+v, %v", st, err)
	}
	if err := limiter.Reset(ctx, "api:127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := get(urls[1]); resp.StatusCode != 200 {
		t.Fatalf("after Reset: %d", resp.StatusCode)
	}

	// Redis unreachable: FailClosed refuses, the middleware says 503 (the
	// server's trouble), not 429, and sends no quota it does not know.
	proxy.Cut()
	resp, body := get(urls[0])
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("RateLimit") != "" ||
		!strings.Contains(body, "temporary-reduced-capacity") || degraded.Load() == 0 {
		t.Fatalf("Redis cut: %d %v %q (degraded decisions seen: %d)", resp.StatusCode, resp.Header, body, degraded.Load())
	}
	t.Logf("503 while Redis is unreachable:\nRetry-After: %s\nRateLimit-Policy: %s\n%s", resp.Header.Get("Retry-After"),
		resp.Header.Get("RateLimit-Policy"), body)
	proxy.Restore()
	testkit.Eventually(t, 10*time.Second, "answers once Redis is back", func() bool {
		resp, _ := get(urls[0])
		return resp.StatusCode == 200 && resp.Header.Get("RateLimit") != ""
	})
	if err := limiter.Reset(ctx, ""); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Fatalf("Reset of an empty key: %v", err)
	}
}
