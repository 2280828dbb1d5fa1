package rueidis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	dkdriver "github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/faultproxy"
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
