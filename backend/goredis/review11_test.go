package goredis_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/distkit-go/distkit/backend"
	dkdriver "github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/goredis"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/internal/redistest"
)

// review11Witness counts its executions in KEYS[1].
var review11Witness = dkdriver.NewScript("review11-witness", `return redis.call('INCR', KEYS[1])`,
	func(st dkdriver.Store, keys, _ []string) (backend.Value, error) {
		cur, _, err := st.Get(keys[0])
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(cur, 10, 64)
		n++
		return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), 0)
	})

type dialFn = func(ctx context.Context, network, addr string) (net.Conn, error)

// r11Kinds are the three go-redis client kinds over the shared servers,
// every data server behind a proxy of set; opts adjusts the options.
func r11Kinds(t *testing.T) map[string]func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
	return map[string]func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient){
		"Client": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			set, err := faultproxy.NewSet(env.Server(t).Addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.Dialer = []string{env.Server(t).Addr}, set.Dial
				return redis.NewClient(o.Simple())
			}
		},
		"ClusterClient": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			set, err := faultproxy.NewSet(env.Cluster(t).Addrs()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.Dialer = env.Cluster(t).Addrs(), set.Dial
				return redis.NewClusterClient(o.Cluster())
			}
		},
		"FailoverClient": func(t *testing.T) (*faultproxy.Set, func(o *redis.UniversalOptions) redis.UniversalClient) {
			g := env.Sentinel(t)
			set, err := faultproxy.NewSet(g.DataAddrs()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(set.Close)
			return set, func(o *redis.UniversalOptions) redis.UniversalClient {
				o.Addrs, o.MasterName, o.Dialer = g.SentinelAddrs(), g.Name, set.Dial
				return redis.NewFailoverClient(o.Failover())
			}
		},
	}
}

func r11Backend(t *testing.T, c redis.UniversalClient) backend.Backend {
	t.Cleanup(func() { c.Close() })
	b, err := goredis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A user's client with ReadTimeout/WriteTimeout -2 ("no deadline calls"):
// the package doc promises that distkit's commands are bounded by the
// call's context (ContextTimeoutEnabled). In a blackhole a call with a
// 300 ms deadline must end long before the blackhole does.
func TestReview11_NoDeadlineCallsOptionIgnoresContext(t *testing.T) {
	for name, kind := range r11Kinds(t) {
		t.Run(name, func(t *testing.T) {
			set, mk := kind(t)
			b := r11Backend(t, mk(&redis.UniversalOptions{ReadTimeout: -2, WriteTimeout: -2}))
			key := "{r11}:nodeadline:" + name
			if _, err := b.EvalScript(context.Background(), review11Witness, []string{key}); err != nil {
				t.Fatal(err)
			}
			set.Blackhole(true)
			unblock := time.AfterFunc(5*time.Second, func() { set.Blackhole(false) })
			defer unblock.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			start := time.Now()
			_, err := b.EvalScript(ctx, review11Witness, []string{key})
			el := time.Since(start)
			cancel()
			set.Restore()
			if el > 2*time.Second {
				t.Errorf("a call with a 300 ms deadline took %v in a blackhole (%v)", el, err)
			}
			if !errors.Is(err, backend.ErrIndeterminate) && !errors.Is(err, backend.ErrNotApplied) {
				t.Errorf("outcome %v", err)
			}
		})
	}
}

// A batch whose calls all meet MOVED (the client's slot map is stale) is
// re-sent by go-redis to the new master; that one runs every call and the
// replies are lost. Every call ran once: none may be reported
// ErrNotApplied (go-redis keeps the stale MOVED error on the calls after
// the one whose read failed).
func TestReview11_ClusterBatchMovedThenReplyLost(t *testing.T) {
	cl := env.Cluster(t)
	set, err := faultproxy.NewSet(cl.Addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	b := r11Backend(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), Dialer: set.Dial}))
	for _, n := range cl.Nodes { // no NOSCRIPT round on the new master
		if _, err := n.Do("SCRIPT", "LOAD", review11Witness.Source()); err != nil {
			t.Fatal(err)
		}
	}
	tag := fmt.Sprintf("{r11mv%d}", time.Now().UnixNano())
	ctx := context.Background()
	if _, err := b.EvalScript(ctx, review11Witness, []string{tag + ":warm"}); err != nil {
		t.Fatal(err)
	}
	slot, err := cl.KeySlot(tag)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := cl.MoveSlot(slot)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{tag + "-000001-", tag + "-000002-", tag + "-000003-"}
	calls := make([]backend.Call, len(ids))
	for i, id := range ids {
		calls[i] = backend.Call{Script: review11Witness, Keys: []string{tag + ":w:" + id}, Args: []string{id}}
	}
	set.Get(dst.Addr).DropReplyTo(ids[0])
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	res := b.EvalScripts(cctx, calls)
	cancel()
	set.Restore()
	for i, r := range res {
		v, err := dst.Do("GET", calls[i].Keys[0])
		n, _ := strconv.Atoi(v)
		if err != nil && !strings.Contains(err.Error(), "nil") {
			t.Fatal(err)
		}
		t.Logf("call %d: executions %d, outcome %v %v", i, n, r.Value, r.Err)
		switch {
		case r.Err == nil && n != 1:
			t.Errorf("call %d: success, but executed %d times", i, n)
		case errors.Is(r.Err, backend.ErrNotApplied) && n != 0:
			t.Errorf("call %d: ErrNotApplied, but executed %d time(s): %v", i, n, r.Err)
		case n > 1:
			t.Errorf("call %d: executed %d times", i, n)
		}
	}
}

// FromURL's forms all work, master_name included, and the client it
// builds carries distkit's settings on every topology.
func TestReview11_FromURLForms(t *testing.T) {
	g, s, cl := env.Sentinel(t), env.Server(t), env.Cluster(t)
	sa := g.SentinelAddrs()
	for name, u := range map[string]string{
		"standalone":  "redis://" + s.Addr + "/0",
		"cluster":     "redis://" + cl.Addrs()[0] + "?addr=" + strings.Join(cl.Addrs()[1:], "&addr="),
		"master_set":  "redis://" + sa[0] + "/0?addr=" + strings.Join(sa[1:], "&addr=") + "&master_set=" + g.Name,
		"master_name": "redis://" + sa[0] + "/0?addr=" + strings.Join(sa[1:], "&addr=") + "&master_name=" + g.Name,
	} {
		b, err := goredis.FromURL(u)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := b.EvalScript(context.Background(), review11Witness, []string{"{r11}:url:" + name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		var retries, dials int
		var ctxOn bool
		switch c := b.Client().(type) {
		case *redis.Client:
			retries, dials, ctxOn = c.Options().MaxRetries, c.Options().DialerRetries, c.Options().ContextTimeoutEnabled
		case *redis.ClusterClient:
			retries, dials, ctxOn = c.Options().MaxRetries, c.Options().DialerRetries, c.Options().ContextTimeoutEnabled
		}
		if retries > 0 || dials != 1 || !ctxOn {
			t.Errorf("%s: client %T with MaxRetries %d, DialerRetries %d, ContextTimeoutEnabled %v", name, b.Client(), retries, dials, ctxOn)
		}
		b.Close()
	}
}

// A call whose context is cancelled (no deadline) while the server does
// not answer: the call should end soon after the cancel.
//
// go-redis bounds socket reads and writes by a context's deadline only
// (ContextTimeoutEnabled); a cancel without a deadline is not seen until
// the read timeout (5 s by default). Seen: 5.0 s on Client, ClusterClient
// and FailoverClient. rueidis ends such a call at the cancel.
func TestReview11_CancelDuringBlackhole(t *testing.T) {

	for name, kind := range r11Kinds(t) {
		t.Run(name, func(t *testing.T) {
			set, mk := kind(t)
			b := r11Backend(t, mk(&redis.UniversalOptions{}))
			key := "{r11}:cancel:" + name
			if _, err := b.EvalScript(context.Background(), review11Witness, []string{key}); err != nil {
				t.Fatal(err)
			}
			set.Blackhole(true)
			unblock := time.AfterFunc(8*time.Second, func() { set.Blackhole(false) })
			defer unblock.Stop()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			_, err := b.EvalScript(ctx, review11Witness, []string{key})
			el := time.Since(start)
			set.Restore()
			if el > 2*time.Second {
				t.Errorf("a call cancelled after 300 ms took %v in a blackhole (%v)", el, err)
			}
		})
	}
}

// A batch spanning every master while one master refuses connections: the
// calls on the others succeed once, those on the refused one are not run.
func TestReview11_ClusterBatchOneNodeDown(t *testing.T) {
	cl := env.Cluster(t)
	set, err := faultproxy.NewSet(cl.Addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	b := r11Backend(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), Dialer: set.Dial}))
	ctx := context.Background()
	// One tag per master, so that the batch spans every node.
	byNode := map[string]string{}
	for i := 0; len(byNode) < 3 && i < 1000; i++ {
		tag := fmt.Sprintf("{r11dn%d-%d}", time.Now().UnixNano(), i)
		slot, _ := cl.KeySlot(tag)
		m, err := cl.MasterOf(slot)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := byNode[m.Addr]; !ok {
			byNode[m.Addr] = tag
		}
	}
	var calls []backend.Call
	var owners []string
	for addr, tag := range byNode {
		if _, err := b.EvalScript(ctx, review11Witness, []string{tag + ":warm"}); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ {
			calls = append(calls, backend.Call{Script: review11Witness, Keys: []string{fmt.Sprintf("%s:w:%d", tag, j)}})
			owners = append(owners, addr)
		}
	}
	down := owners[0]
	set.Get(down).Cut()
	defer set.Restore()
	// The first batch may meet the refused master's old connection reset
	// under it (ErrIndeterminate, honest); the second must be told
	// ErrNotApplied for those calls.
	for round := 0; round < 2; round++ {
		for i := range calls {
			calls[i].Keys = []string{fmt.Sprintf("%s:r%d", calls[i].Keys[0], round)}
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		start := time.Now()
		res := b.EvalScripts(cctx, calls)
		el := time.Since(start)
		cancel()
		for i, r := range res {
			var srv *redistest.Server
			for _, n := range cl.Nodes {
				if n.Addr == owners[i] {
					srv = n
				}
			}
			v, _ := srv.Do("GET", calls[i].Keys[0])
			n, _ := strconv.Atoi(v)
			t.Logf("round %d call %d on %s (down %v): executions %d, outcome %v", round, i, owners[i], owners[i] == down, n, r.Err)
			switch {
			case r.Err == nil && n != 1:
				t.Errorf("call %d: success, but executed %d times", i, n)
			case errors.Is(r.Err, backend.ErrNotApplied) && n != 0:
				t.Errorf("call %d: ErrNotApplied, but executed %d time(s)", i, n)
			case owners[i] != down && r.Err != nil:
				t.Errorf("call %d on a live master: %v", i, r.Err)
			case owners[i] == down && r.Err == nil:
				t.Errorf("call %d on the refused master succeeded", i)
			case owners[i] == down && round == 1 && !errors.Is(r.Err, backend.ErrNotApplied):
				t.Errorf("call %d on the refused master: %v, want ErrNotApplied", i, r.Err)
			}
		}
		t.Logf("round %d: batch took %v", round, el)
	}
}

// A Cluster batch whose calls on one master first fail to connect (go-redis
// re-sends them after a backoff); the master is back for the re-send, which
// runs them, and the replies are lost. No call may keep the stale dial
// error (ErrNotApplied).
func TestReview11_ClusterBatchDialFailedThenReplyLost(t *testing.T) {
	cl := env.Cluster(t)
	set, err := faultproxy.NewSet(cl.Addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	tag := fmt.Sprintf("{r11df%d}", time.Now().UnixNano())
	slot, err := cl.KeySlot(tag)
	if err != nil {
		t.Fatal(err)
	}
	master, err := cl.MasterOf(slot)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{tag + "-000001-", tag + "-000002-", tag + "-000003-"}
	var armed atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := set.Dial(ctx, network, addr)
		if err != nil && addr == master.Addr && armed.CompareAndSwap(true, false) {
			set.Get(master.Addr).Restore()           // back for go-redis's re-send …
			set.Get(master.Addr).DropReplyTo(ids[0]) // … whose replies are lost
		}
		return c, err
	}
	b := r11Backend(t, redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), Dialer: dial}))
	ctx := context.Background()
	if _, err := b.EvalScript(ctx, review11Witness, []string{tag + ":warm"}); err != nil {
		t.Fatal(err)
	}
	calls := make([]backend.Call, len(ids))
	for i, id := range ids {
		calls[i] = backend.Call{Script: review11Witness, Keys: []string{tag + ":w:" + id}, Args: []string{id}}
	}
	set.Get(master.Addr).Cut()
	armed.Store(true)
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	res := b.EvalScripts(cctx, calls)
	cancel()
	set.Restore()
	if armed.Load() {
		t.Fatal("go-redis did not dial the refused master")
	}
	for i, r := range res {
		v, _ := master.Do("GET", calls[i].Keys[0])
		n, _ := strconv.Atoi(v)
		t.Logf("call %d: executions %d, outcome %v", i, n, r.Err)
		switch {
		case r.Err == nil && n != 1:
			t.Errorf("call %d: success, but executed %d times", i, n)
		case errors.Is(r.Err, backend.ErrNotApplied) && n != 0:
			t.Errorf("call %d: ErrNotApplied, but executed %d time(s): %v", i, n, r.Err)
		case n > 1:
			t.Errorf("call %d: executed %d times", i, n)
		}
	}
}

// During an outage every client kind reports ErrNotApplied fast, and
// go-redis logs at most about one dial line per call.
func TestReview11_OutageEveryKind(t *testing.T) {
	logs := &countingLogger{}
	redis.SetLogger(logs)
	for name, kind := range r11Kinds(t) {
		t.Run(name, func(t *testing.T) {
			set, mk := kind(t)
			b := r11Backend(t, mk(&redis.UniversalOptions{DialerRetries: 1}))
			key := "{r11}:outage:" + name
			if _, err := b.EvalScript(context.Background(), review11Witness, []string{key}); err != nil {
				t.Fatal(err)
			}
			set.Cut()
			defer set.Restore()
			logs.dial.Store(0)
			const calls = 10
			var slowest time.Duration
			for i := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				_, err := b.EvalScript(ctx, review11Witness, []string{key})
				slowest = max(slowest, time.Since(start))
				cancel()
				if i > 0 && !errors.Is(err, backend.ErrNotApplied) {
					t.Errorf("call %d during the outage: %v, want ErrNotApplied", i, err)
				}
			}
			t.Logf("%s: slowest %v, %d dial log lines for %d calls", name, slowest, logs.dial.Load(), calls)
			if slowest > time.Second {
				t.Errorf("a call during the outage took %v", slowest)
			}
			if n := logs.dial.Load(); n > 2*calls {
				t.Errorf("%d dial log lines for %d calls", n, calls)
			}
		})
	}
}
