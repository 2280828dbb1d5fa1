package rueidis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	dkdriver "github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/primitives/lock"
)

// wrapped is how hooks and instrumentation wrap a rueidis client (for
// example rueidishook.WithHook): a wrapper of a nil client is a nil client
// all the same (issue 11 item 5).
type wrapped struct{ rd.Client }

func TestReview11_NewRefusesWrappedNilClient(t *testing.T) {
	for name, c := range map[string]rd.Client{"*wrapper": &wrapped{}, "wrapper": wrapped{}} {
		b, err := rueidis.New(c)
		if errors.Is(err, backend.ErrInvalidOption) {
			continue
		}
		if err != nil {
			t.Errorf("New(%s of nil): %v, want ErrInvalidOption", name, err)
			continue
		}
		m, err := lock.NewMutex(b, "r11-nil", lock.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err = m.Lock(ctx)
		cancel()
		t.Errorf("New(%s of nil) accepted the client; Mutex.Lock then: %v", name, err)
		b.Close()
	}
}

// Keys in different Cluster slots are still refused before anything is
// sent (the builder's panic), as ErrNotApplied.
func TestReview11_CrossSlotStillNotApplied(t *testing.T) {
	c, err := rd.NewClient(rd.ClientOption{InitAddress: env.Cluster(t).Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.EvalScript(context.Background(), r11Echo, []string{"a", "b"})
	if !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("cross-slot keys: %v, want ErrNotApplied", err)
	}
}

var r11Echo = dkdriver.NewScript("r11-echo", `return 1`, func(dkdriver.Store, []string, []string) (backend.Value, error) {
	return backend.Int(1), nil
})

var r11Witness = dkdriver.NewScript("r11-witness", `return redis.call('INCR', KEYS[1])`,
	func(st dkdriver.Store, keys, _ []string) (backend.Value, error) {
		cur, _, err := st.Get(keys[0])
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(cur, 10, 64)
		n++
		return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), 0)
	})

// A batch whose calls all meet MOVED (stale slot map) is re-sent to the
// new master, which runs every call; the replies are lost. No call may be
// reported ErrNotApplied.
func TestReview11_ClusterBatchMovedThenReplyLost(t *testing.T) {
	cl := env.Cluster(t)
	set, err := faultproxy.NewSet(cl.Addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	c, err := rd.NewClient(rd.ClientOption{InitAddress: cl.Addrs(), DisableCache: true,
		DialCtxFn: func(ctx context.Context, dst string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return set.Dial(ctx, "tcp", dst)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, n := range cl.Nodes {
		if _, err := n.Do("SCRIPT", "LOAD", r11Witness.Source()); err != nil {
			t.Fatal(err)
		}
	}
	tag := fmt.Sprintf("{r11mv%d}", time.Now().UnixNano())
	ctx := context.Background()
	if _, err := b.EvalScript(ctx, r11Witness, []string{tag + ":warm"}); err != nil {
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
		calls[i] = backend.Call{Script: r11Witness, Keys: []string{tag + ":w:" + id}, Args: []string{id}}
	}
	set.Get(dst.Addr).DropReplyTo(ids[0])
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	res := b.EvalScripts(cctx, calls)
	cancel()
	set.Restore()
	for i, r := range res {
		v, _ := dst.Do("GET", calls[i].Keys[0])
		n, _ := strconv.Atoi(v)
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

// hooked is a wrapper as instrumentation builds it: the client in a named
// field (rueidishook, rueidisotel).
type hooked struct {
	client rd.Client
}

func (h *hooked) B() rd.Builder { return h.client.B() }
func (h *hooked) Do(ctx context.Context, cmd rd.Completed) rd.RedisResult {
	return h.client.Do(ctx, cmd)
}
func (h *hooked) DoMulti(ctx context.Context, cmds ...rd.Completed) []rd.RedisResult {
	return h.client.DoMulti(ctx, cmds...)
}
func (h *hooked) DoStream(ctx context.Context, cmd rd.Completed) rd.RedisResultStream {
	return h.client.DoStream(ctx, cmd)
}
func (h *hooked) DoMultiStream(ctx context.Context, cmds ...rd.Completed) rd.MultiRedisResultStream {
	return h.client.DoMultiStream(ctx, cmds...)
}
func (h *hooked) DoCache(ctx context.Context, cmd rd.Cacheable, ttl time.Duration) rd.RedisResult {
	return h.client.DoCache(ctx, cmd, ttl)
}
func (h *hooked) DoMultiCache(ctx context.Context, cmds ...rd.CacheableTTL) []rd.RedisResult {
	return h.client.DoMultiCache(ctx, cmds...)
}
func (h *hooked) Receive(ctx context.Context, sub rd.Completed, fn func(rd.PubSubMessage)) error {
	return h.client.Receive(ctx, sub, fn)
}
func (h *hooked) Dedicated(fn func(rd.DedicatedClient) error) error { return h.client.Dedicated(fn) }
func (h *hooked) Dedicate() (rd.DedicatedClient, func())            { return h.client.Dedicate() }
func (h *hooked) Nodes() map[string]rd.Client                       { return h.client.Nodes() }
func (h *hooked) Mode() rd.ClientMode                               { return h.client.Mode() }
func (h *hooked) Close()                                            { h.client.Close() }

// A client built with ConnLifetime re-sends commands in flight when its
// connection expires (see TestNewRefuses), so New refuses it; wrapped by a
// hook or an instrumentation layer it must still be refused.
func TestReview11_NewRefusesWrappedConnLifetime(t *testing.T) {
	s := env.Server(t)
	c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true, ConnLifetime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for name, w := range map[string]rd.Client{"embedded": wrapped{Client: c}, "field": &hooked{client: c},
		"twice": &hooked{client: &wrapped{Client: c}}} {
		if _, err := rueidis.New(w); !errors.Is(err, backend.ErrInvalidOption) {
			t.Errorf("New(%s wrapper of a ConnLifetime client): %v, want ErrInvalidOption", name, err)
		}
	}
	plain, err := rd.NewClient(rd.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := rueidis.New(&hooked{client: plain}); err != nil {
		t.Errorf("New(wrapper of a client without ConnLifetime): %v", err)
	}
}

// FromURL's forms all work, master_name included.
func TestReview11_FromURLForms(t *testing.T) {
	g, s, cl := env.Sentinel(t), env.Server(t), env.Cluster(t)
	sa := g.SentinelAddrs()
	for name, u := range map[string]string{
		"standalone":  "redis://" + s.Addr + "/0",
		"cluster":     "redis://" + cl.Addrs()[0] + "?addr=" + strings.Join(cl.Addrs()[1:], "&addr="),
		"master_set":  "redis://" + sa[0] + "/0?addr=" + strings.Join(sa[1:], "&addr=") + "&master_set=" + g.Name,
		"master_name": "redis://" + sa[0] + "/0?addr=" + strings.Join(sa[1:], "&addr=") + "&master_name=" + g.Name,
	} {
		b, err := rueidis.FromURL(u)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := b.EvalScript(context.Background(), r11Witness, []string{"{r11}:url:" + name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		b.Close()
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
	c, err := rd.NewClient(rd.ClientOption{InitAddress: cl.Addrs(), DisableCache: true,
		DialCtxFn: func(ctx context.Context, dst string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return set.Dial(ctx, "tcp", dst)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
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
		if _, err := b.EvalScript(ctx, r11Witness, []string{tag + ":warm"}); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 2; j++ {
			calls = append(calls, backend.Call{Script: r11Witness, Keys: []string{fmt.Sprintf("%s:w:%d", tag, j)}})
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

// The user closes their client while distkit still uses it (shutdown
// order): a Lock should not spin on the closed client until its deadline.
// Seen: it spins until the context ends (forever without a deadline),
// ending with "context deadline exceeded".
func TestReview11_LockOnClosedClient(t *testing.T) {

	c, err := rd.NewClient(rd.ClientOption{InitAddress: []string{env.Server(t).Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m, err := lock.NewMutex(b, fmt.Sprintf("r11-closed-%d", time.Now().UnixNano()), lock.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = m.Lock(ctx)
	el := time.Since(start)
	t.Logf("Lock on a closed client: %v after %v", err, el)
	if !errors.Is(err, backend.ErrClosed) || el > time.Second {
		t.Errorf("Lock on a closed client: %v after %v; want an error matching ErrClosed at once", err, el)
	}
}

// The driver finds rueidis's "closed" flag on every client kind New
// accepts, directly and behind a wrapper, so a Lock on a client the user
// closed ends at once (TestReview11_LockOnClosedClient) instead of spinning.
func TestStopFlagFoundOnEveryClientKind(t *testing.T) {
	kinds := map[string]rd.ClientOption{
		"standalone": {InitAddress: []string{env.Server(t).Addr}, DisableCache: true},
		"cluster":    {InitAddress: env.Cluster(t).Addrs(), DisableCache: true},
	}
	if g, err := env.SentinelGroup(); err != nil {
		t.Fatal(err)
	} else {
		kinds["sentinel"] = rd.ClientOption{InitAddress: g.SentinelAddrs(), Sentinel: rd.SentinelOption{MasterSet: g.Name}, DisableCache: true}
	}
	for name, opt := range kinds {
		t.Run(name, func(t *testing.T) {
			c, err := rd.NewClient(opt)
			if err != nil {
				t.Fatal(err)
			}
			for _, client := range []rd.Client{c, &hooked{client: c}} {
				b, err := rueidis.New(client)
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				if _, err := b.EvalScript(ctx, r11Witness, []string{"{r11}:stop:" + name}); err != nil {
					t.Fatalf("%T before Close: %v", client, err)
				}
				defer b.Close()
			}
			c.Close()
			for _, client := range []rd.Client{c, &hooked{client: c}} {
				b, err := rueidis.New(client)
				if err != nil {
					t.Fatal(err)
				}
				_, err = b.EvalScript(context.Background(), r11Witness, []string{"{r11}:stop:" + name})
				if !errors.Is(err, backend.ErrClosed) || !errors.Is(err, backend.ErrNotApplied) {
					t.Errorf("%T after the user closed it: %v, want ErrClosed and ErrNotApplied", client, err)
				}
				b.Close()
			}
		})
	}
}
