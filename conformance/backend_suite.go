package conformance

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/testkit"
)

// Test scripts, each with its Go twin (those the parity scenarios use too
// live in internal/testkit).
var (
	typesScript     = testkit.TypesScript
	raiseScript     = testkit.RaiseScript
	bumpScript      = testkit.BumpScript
	echoScript      = testkit.EchoScript
	wrongTypeScript = testkit.WrongTypeScript

	nilScript = driver.NewScript("conf-nil", `return redis.call('GET', KEYS[1])`,
		func(st driver.Store, keys, _ []string) (backend.Value, error) {
			v, ok, err := st.Get(keys[0])
			if err != nil || !ok {
				return backend.Nil(), err
			}
			return backend.Str(v), nil
		})

	// aliveScript lists the members of a heartbeat group alive at server now.
	aliveScript = driver.NewScript("conf-alive", driver.LuaNowMillis+`
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', now_ms), '+inf')
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
		ms, err := st.ZRangeByScore(keys[0], float64(driver.NowMillis(st))+0.5, 1e300)
		if err != nil {
			return backend.Value{}, err
		}
		out := make([]backend.Value, len(ms))
		for i, m := range ms {
			out[i] = backend.Str(m.Member)
		}
		return backend.Arr(out...), nil
	})

	timeScript = driver.NewScript("conf-time", driver.LuaNowMillis+`return now_ms`,
		func(st driver.Store, _, _ []string) (backend.Value, error) {
			return backend.Int(driver.NowMillis(st)), nil
		})
)

// RunBackend checks the Backend contract of package backend's doc.
func RunBackend(t *testing.T, newHarness NewHarness) {
	t.Run("ScriptResultTypes", func(t *testing.T) { testResultTypes(t, newHarness(t)) })
	t.Run("ScriptErrors", func(t *testing.T) { testScriptErrors(t, newHarness(t)) })
	t.Run("ScriptAtomicity", func(t *testing.T) { testAtomicity(t, newHarness(t)) })
	t.Run("NoScriptRecovery", func(t *testing.T) { testNoScript(t, newHarness(t)) })
	t.Run("EvalScriptsOrder", func(t *testing.T) { testEvalScriptsOrder(t, newHarness(t)) })
	t.Run("ServerTime", func(t *testing.T) { testServerTime(t, newHarness(t)) })
	t.Run("Heartbeat", func(t *testing.T) { testHeartbeat(t, newHarness(t)) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, newHarness(t)) })
	t.Run("LeaseExpiry", func(t *testing.T) { testLeaseExpiry(t, newHarness(t)) })
	t.Run("ClosedAndCancelled", func(t *testing.T) { testClosed(t, newHarness(t)) })
	t.Run("Notifier", func(t *testing.T) { testNotifier(t, newHarness(t)) })
}

func testResultTypes(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	v, err := b.EvalScript(ctx, typesScript, nil, "arg")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := typesScript.Run(nil, nil, []string{"arg"})
	if !v.Equal(want) {
		t.Fatalf("types: got %v, want %v", v, want)
	}
	v, err = b.EvalScript(ctx, nilScript, []string{tagged(p, "absent")})
	if err != nil || !v.IsNil() {
		t.Fatalf("absent key: got %v, %v; want nil, nil", v, err)
	}
}

func testScriptErrors(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	p := prefix(t)
	_, err := b.EvalScript(ctx, raiseScript, []string{tagged(p, "k")}, "boom")
	var se *backend.ScriptError
	if !errors.Is(err, backend.ErrScript) || !errors.As(err, &se) {
		t.Fatalf("error_reply: got %v, want a *ScriptError matching ErrScript", err)
	}
	if se.Code() != "DKTEST" || errors.Is(err, backend.ErrNotApplied) || errors.Is(err, backend.ErrIndeterminate) {
		t.Fatalf("error_reply: code %q, err %v; want code DKTEST and no transport class", se.Code(), err)
	}
	_, err = b.EvalScript(ctx, wrongTypeScript, []string{tagged(p, "s")})
	if !errors.As(err, &se) || se.Code() != "WRONGTYPE" {
		t.Fatalf("runtime error: got %v, want a WRONGTYPE ScriptError", err)
	}
	// The backend stays usable after script errors.
	if v, err := b.EvalScript(ctx, echoScript, nil, "still-ok"); err != nil || !v.Equal(backend.Str("still-ok")) {
		t.Fatalf("after errors: %v, %v", v, err)
	}
}

func testAtomicity(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	key := tagged(p, "bump")
	const workers, each = 8, 40
	seen := make([]bool, workers*each+1)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		b := open(t, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v, err := b.EvalScript(ctx, bumpScript, []string{key})
				if err != nil {
					errs <- err
					return
				}
				n, _ := v.Int64()
				mu.Lock()
				if n < 1 || int(n) >= len(seen) || seen[n] {
					mu.Unlock()
					errs <- errors.New("duplicate or out-of-range result " + strconv.FormatInt(n, 10))
					return
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, err := open(t, h).EvalScript(ctx, nilScript, []string{key})
	if err != nil || !v.Equal(backend.Str(strconv.Itoa(workers*each))) {
		t.Fatalf("final: got %v, %v; want %d (a lost update means scripts are not atomic)", v, err, workers*each)
	}
}

func testNoScript(t *testing.T, h Harness) {
	f, ok := h.(ScriptFlusher)
	if !ok {
		t.Skip("harness has no script cache to flush")
	}
	ctx := context.Background()
	b := open(t, h)
	for round := range 2 {
		if v, err := b.EvalScript(ctx, echoScript, nil, "a"); err != nil || !v.Equal(backend.Str("a")) {
			t.Fatalf("round %d eval: %v, %v", round, v, err)
		}
		calls := []backend.Call{{Script: echoScript, Args: []string{"x"}}, {Script: timeScript}, {Script: echoScript, Args: []string{"y"}}}
		res := b.EvalScripts(ctx, calls)
		if res[0].Err != nil || res[1].Err != nil || res[2].Err != nil ||
			!res[0].Value.Equal(backend.Str("x")) || !res[2].Value.Equal(backend.Str("y")) {
			t.Fatalf("round %d batch: %+v", round, res)
		}
		f.FlushScripts(t)
	}
}

func testEvalScriptsOrder(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	if res := b.EvalScripts(ctx, nil); len(res) != 0 {
		t.Fatalf("empty batch: %d results", len(res))
	}
	p := prefix(t)
	var calls []backend.Call
	for i := range 30 {
		s := strconv.Itoa(i)
		switch i % 3 {
		case 0:
			calls = append(calls, backend.Call{Script: echoScript, Args: []string{s}})
		case 1:
			// Keys in many different slots (on Cluster: many nodes).
			calls = append(calls, backend.Call{Script: bumpScript, Keys: []string{tagged(p+"-"+s, "n")}})
		case 2:
			calls = append(calls, backend.Call{Script: raiseScript, Args: []string{s}})
		}
	}
	res := b.EvalScripts(ctx, calls)
	if len(res) != len(calls) {
		t.Fatalf("%d results for %d calls", len(res), len(calls))
	}
	for i, r := range res {
		s := strconv.Itoa(i)
		switch i % 3 {
		case 0:
			if r.Err != nil || !r.Value.Equal(backend.Str(s)) {
				t.Fatalf("call %d: %v, %v; want %q", i, r.Value, r.Err, s)
			}
		case 1:
			if r.Err != nil || !r.Value.Equal(backend.Int(1)) {
				t.Fatalf("call %d: %v, %v; want 1", i, r.Value, r.Err)
			}
		case 2:
			var se *backend.ScriptError
			if !errors.As(r.Err, &se) || !strings.HasPrefix(se.Msg, "DKTEST "+s) {
				t.Fatalf("call %d: %v; want its own DKTEST %s error", i, r.Err, s)
			}
		}
	}
}

func evalInt(t *testing.T, b backend.Backend, s backend.Script, keys []string, args ...string) int64 {
	t.Helper()
	v, err := b.EvalScript(context.Background(), s, keys, args...)
	if err != nil {
		t.Fatalf("%s: %v", s.Name(), err)
	}
	n, err := v.Int64()
	if err != nil {
		t.Fatalf("%s: %v", s.Name(), err)
	}
	return n
}

func testServerTime(t *testing.T, h Harness) {
	b := open(t, h)
	t0 := evalInt(t, b, timeScript, nil)
	h.Wait(t, 200*time.Millisecond)
	t1 := evalInt(t, b, timeScript, nil)
	if d := t1 - t0; d < 200 {
		t.Fatalf("server time advanced %d ms across a wait of 200 ms", d)
	}
}

func alive(t *testing.T, b backend.Backend, group string) []string {
	t.Helper()
	v, err := b.EvalScript(context.Background(), aliveScript, []string{group})
	if err != nil {
		t.Fatal(err)
	}
	arr, err := v.Array()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(arr))
	for i, e := range arr {
		out[i], _ = e.Text()
	}
	return out
}

func testHeartbeat(t *testing.T, h Harness) {
	ctx := context.Background()
	b := open(t, h)
	group := tagged(prefix(t), "alive")
	if err := b.Heartbeat(ctx, group, "a", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx, group, "b", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := alive(t, b, group); len(got) != 2 {
		t.Fatalf("alive after heartbeats: %v, want [a b]", got)
	}
	h.Wait(t, 500*time.Millisecond)
	if got := alive(t, b, group); len(got) != 1 || got[0] != "a" {
		t.Fatalf("alive after b's ttl: %v, want [a]", got)
	}
	if err := b.Heartbeat(ctx, group, "b", time.Second); err != nil {
		t.Fatal(err)
	}
	if got := alive(t, b, group); len(got) != 2 {
		t.Fatalf("alive after b came back: %v, want [a b]", got)
	}
	if err := b.Heartbeat(ctx, group, "c", 0); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("zero ttl: got %v, want ErrNotApplied", err)
	}
}

func mustLease(t *testing.T, what string, ok bool, err error, want bool) {
	t.Helper()
	if err != nil || ok != want {
		t.Fatalf("%s: got %v, %v; want %v", what, ok, err, want)
	}
}

func testLeases(t *testing.T, h Harness) {
	ctx := context.Background()
	a, bb := open(t, h), open(t, h)
	key := tagged(prefix(t), "lease")
	const ttl = 5 * time.Second
	ok, err := a.AcquireLease(ctx, key, "A", ttl)
	mustLease(t, "A acquires a free lease", ok, err, true)
	ok, err = bb.AcquireLease(ctx, key, "B", ttl)
	mustLease(t, "B acquires A's lease", ok, err, false)
	ok, err = a.AcquireLease(ctx, key, "A", ttl)
	mustLease(t, "A re-acquires its own lease", ok, err, true)
	ok, err = bb.RenewLease(ctx, key, "B", ttl)
	mustLease(t, "B renews A's lease", ok, err, false)
	ok, err = bb.ReleaseLease(ctx, key, "B")
	mustLease(t, "B releases A's lease", ok, err, false)
	ok, err = a.RenewLease(ctx, key, "A", ttl)
	mustLease(t, "A renews after B's attempts", ok, err, true)
	ok, err = a.ReleaseLease(ctx, key, "A")
	mustLease(t, "A releases", ok, err, true)
	ok, err = a.ReleaseLease(ctx, key, "A")
	mustLease(t, "A releases twice", ok, err, false)
	ok, err = a.RenewLease(ctx, key, "A", ttl)
	mustLease(t, "A renews a released lease", ok, err, false)
	ok, err = bb.AcquireLease(ctx, key, "B", ttl)
	mustLease(t, "B acquires after release", ok, err, true)
	if _, err := a.AcquireLease(ctx, key, "A", 0); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("zero ttl: got %v, want ErrNotApplied", err)
	}
}

func testLeaseExpiry(t *testing.T, h Harness) {
	ctx := context.Background()
	a, bb := open(t, h), open(t, h)
	key := tagged(prefix(t), "lease")
	ok, err := a.AcquireLease(ctx, key, "A", 300*time.Millisecond)
	mustLease(t, "A acquires", ok, err, true)
	ok, err = a.RenewLease(ctx, key, "A", 300*time.Millisecond)
	mustLease(t, "A renews", ok, err, true)
	h.Wait(t, 500*time.Millisecond)
	ok, err = a.RenewLease(ctx, key, "A", time.Second)
	mustLease(t, "A renews an expired lease", ok, err, false)
	ok, err = bb.AcquireLease(ctx, key, "B", time.Second)
	mustLease(t, "B acquires the expired lease", ok, err, true)
	ok, err = a.ReleaseLease(ctx, key, "A")
	mustLease(t, "A releases B's lease", ok, err, false)
	ok, err = bb.RenewLease(ctx, key, "B", time.Second)
	mustLease(t, "B still holds it", ok, err, true)
}

func testClosed(t *testing.T, h Harness) {
	b := h.NewBackend(t)
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.EvalScript(cctx, echoScript, nil, "x"); !errors.Is(err, backend.ErrNotApplied) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: got %v, want ErrNotApplied wrapping context.Canceled", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.EvalScript(ctx, echoScript, nil, "x"); !errors.Is(err, backend.ErrClosed) || !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("after Close: got %v, want ErrClosed and ErrNotApplied", err)
	}
	for _, r := range b.EvalScripts(ctx, []backend.Call{{Script: echoScript, Args: []string{"x"}}}) {
		if !errors.Is(r.Err, backend.ErrClosed) {
			t.Fatalf("batch after Close: got %v, want ErrClosed", r.Err)
		}
	}
	if _, err := b.AcquireLease(ctx, "{x}:y", "o", time.Second); !errors.Is(err, backend.ErrClosed) {
		t.Fatalf("lease after Close: got %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
