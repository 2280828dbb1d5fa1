package instancecounter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// afterFirst runs hook once, right after the first call of script returned.
type afterFirst struct {
	backend.Backend
	script string
	once   sync.Once
	hook   func()
}

func (a *afterFirst) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	v, err := a.Backend.EvalScript(ctx, s, keys, args...)
	if s.Name() == a.script {
		a.once.Do(a.hook)
	}
	return v, err
}

// A Rejoin that finds the instance registered already (an earlier Rejoin
// ran but its caller never learnt it) replies {"ok"}: the operation that
// asked for it retries, it does not fail with "malformed reply ["ok"]"
// (seen once on goredis+cluster under make test's load: the background
// registration's Rejoin outlived its DeadAfter/3 deadline, the first Inc's
// Op ran before it and found the instance absent, and the Inc's own Rejoin
// ran after it).
func TestReview21b_RejoinFindsRegistered(t *testing.T) {
	mem := memory.New(memory.Options{})
	w := testkit.Wrap(mem.Connect())
	// The background registration's Rejoin: its caller gives up at its
	// deadline (DeadAfter/3); it reaches the server only when delivered.
	late := w.SendLateNext("instancecounter-rejoin")
	b := &afterFirst{Backend: w, script: "instancecounter-op", hook: func() {
		// The Inc's Op ran (and found the instance absent): now the late
		// Rejoin runs, before the Inc's own Rejoin.
		late.Deliver()
		<-late.Done
	}}
	c, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "rj", InstanceID: "a", DeadAfter: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	select {
	case <-late.Entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the background registration did not start")
	}
	testkit.Eventually(t, 10*time.Second, "the background registration gives up", func() bool {
		return w.Finished("instancecounter-rejoin") == 1
	})
	ctx := context.Background()
	total, mine, err := c.Inc(ctx, "k", 1)
	if err != nil {
		t.Fatalf("Inc: %v", err)
	}
	if total != 1 || mine != 1 {
		t.Fatalf("Inc = %d, %d; want 1, 1", total, mine)
	}
	if total, mine, err = c.Get(ctx, "k"); err != nil || total != 1 || mine != 1 {
		t.Fatalf("Get = %d, %d, %v; want 1, 1, nil", total, mine, err)
	}
}
