package instancecounter_test

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

func newReview13(t *testing.T, b *memory.Backend, id string) (*instancecounter.Strict, *testkit.Wrapped) {
	t.Helper()
	w := testkit.Wrap(b.Connect())
	c, err := instancecounter.NewStrict(w, instancecounter.Options{Prefix: "r13", InstanceID: id, DeadAfter: instancecounter.MinDeadAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		w.Partition(false)
		c.Close(ctx)
	})
	return c, w
}

// A slice of math.MinInt64 is a valid slice (SetOnInstance accepts it and
// the cumulative value is in range): its instance can take it back, and
// once the instance is gone it leaves the totals like any other slice.
func TestReview13_MinInt64SliceLeaves(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	b, _ := newReview13(t, mem, "b")
	if c, m, err := b.SetOnInstance(ctx, "k", math.MinInt64); err != nil || c != math.MinInt64 || m != math.MinInt64 {
		t.Fatalf("SetOnInstance(MinInt64): (%d, %d), %v", c, m, err)
	}
	if c, m, err := b.SetOnInstance(ctx, "k", 0); err != nil || c != 0 || m != 0 {
		t.Fatalf("SetOnInstance(0) from a MinInt64 slice: (%d, %d), %v; want (0, 0)", c, m, err)
	}
	b.SetOnInstance(ctx, "k", math.MinInt64)
	if c, m, err := b.DelOnInstance(ctx, "k"); err != nil || c != 0 || m != 0 {
		t.Fatalf("DelOnInstance of a MinInt64 slice: (%d, %d), %v; want (0, 0)", c, m, err)
	}

	// The instance dies holding it: the others keep working and it leaves.
	d, w := newReview13(t, mem, "d")
	if _, _, err := d.SetOnInstance(ctx, "k", math.MinInt64); err != nil {
		t.Fatal(err)
	}
	w.Partition(true) // d vanishes
	var c, m int64
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, m, err = b.Get(ctx, "k"); err == nil && c == 0 {
			break
		}
	}
	if err != nil || c != 0 || m != 0 {
		t.Fatalf("after d died holding MinInt64: b.Get: (%d, %d), %v; want (0, 0)", c, m, err)
	}
}

// Removing a dead instance's slice may leave the others' sum outside the
// int64 range (every call was in range when it ran). Cleanup must not
// fail for ever then: every script of every instance runs it first, so the
// whole prefix would stop working, heartbeats included.
func TestReview13_DeadSliceRemovalOverflowDoesNotBrickPrefix(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	a, _ := newReview13(t, mem, "a")
	b, wb := newReview13(t, mem, "b")
	c, _ := newReview13(t, mem, "c")
	if _, _, err := b.Dec(ctx, "k", 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Inc(ctx, "k", 10); err != nil {
		t.Fatal(err)
	}
	if cum, _, err := a.Inc(ctx, "k", math.MaxInt64); err != nil || cum != math.MaxInt64 {
		t.Fatalf("a.Inc(MaxInt64): %d, %v", cum, err)
	}
	wb.Partition(true) // b (slice -10) vanishes; a + c = MaxInt64 + 10
	time.Sleep(2 * instancecounter.MinDeadAfter)
	var err error
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, _, err = a.Inc(ctx, "other", 1); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("a.Inc(other) after b died: %v", err)
	}
	// b's slice could not leave (MaxInt64 + 10 is beyond int64): it stays
	// counted, and leaves with a Set of its key.
	if cum, mine, err := a.Get(ctx, "k"); err != nil || cum != math.MaxInt64 || mine != math.MaxInt64 {
		t.Fatalf("a.Get(k): (%d, %d), %v; want (MaxInt64, MaxInt64)", cum, mine, err)
	}
	if cum, _, err := a.Set(ctx, "k", 1); err != nil || cum != 1 {
		t.Fatalf("a.Set(k, 1): %d, %v", cum, err)
	}
	if cum, _, err := c.Get(ctx, "k"); err != nil || cum != 1 {
		t.Fatalf("c.Get(k) after the Set: %d, %v; want 1", cum, err)
	}
}

// The package doc: "A process restarted with the same id before its
// predecessor's last heartbeat expired therefore waits up to DeadAfter,
// unless the predecessor closed." A predecessor closed with
// KeepSlicesOnClose closed too.
func TestReview13_RestartAfterCloseKeepingSlices(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	opts := instancecounter.Options{Prefix: "r13", InstanceID: "x", KeepSlicesOnClose: true}
	a, err := instancecounter.NewStrict(mem.Connect(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Inc(ctx, "k", 5); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	obs, err := instancecounter.NewStrict(mem.Connect(), instancecounter.Options{Prefix: "r13", InstanceID: "obs"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close(ctx)
	if c, _, err := obs.Get(ctx, "k"); err != nil || c != 5 {
		t.Fatalf("the closed instance's kept slice: cumulative %d, %v; want 5", c, err)
	}
	b, err := instancecounter.NewStrict(mem.Connect(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	// The restarted counter remembers nothing: the kept slice leaves when
	// it takes the id (it would have left with the heartbeat anyway).
	c, m, err := b.Inc(ctx, "k", 1)
	if err != nil || c != 1 || m != 1 {
		t.Fatalf("the restarted instance, its predecessor closed (keeping its slices): (%d, %d), %v; want (1, 1)", c, m, err)
	}
}

// lateRejoin holds the next Rejoin script on its way to the server: the
// caller's context ending makes the call return (indeterminate), but the
// request still runs once released, as a request a network client had
// sent does.
type lateRejoin struct {
	backend.Backend
	armed atomic.Bool
	held  chan struct{} // closed when the Rejoin is held
	hold  chan struct{} // close to let it run
	ran   chan struct{} // closed once it ran
}

func (l *lateRejoin) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() != icscript.Rejoin.Name() || !l.armed.CompareAndSwap(true, false) {
		return l.Backend.EvalScript(ctx, s, keys, args...)
	}
	type result struct {
		v   backend.Value
		err error
	}
	res := make(chan result, 1)
	close(l.held)
	go func() {
		defer close(l.ran)
		<-l.hold
		v, err := l.Backend.EvalScript(context.WithoutCancel(ctx), s, keys, args...)
		res <- result{v, err}
	}()
	select {
	case r := <-res:
		return r.v, r.err
	case <-ctx.Done():
		return backend.Value{}, driver.Indeterminate(ctx.Err())
	}
}

var expireScript = driver.NewScript("r13-expire", `return redis.call('ZADD', KEYS[1], 0, ARGV[1])`,
	func(st driver.Store, keys, args []string) (backend.Value, error) {
		return backend.Int(0), st.ZAdd(keys[0], 0, args[0])
	})

// Close returned nil, so this instance's slices are out of the totals and
// stay out: a heartbeat's Rejoin that was on its way when Close began (its
// context cancelled by Close, the request already sent) must not bring
// them back when it reaches the server after Close's Remove.
func TestReview13_LateHeartbeatRejoinAfterClose(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	l := &lateRejoin{Backend: mem.Connect(), held: make(chan struct{}), hold: make(chan struct{}), ran: make(chan struct{})}
	a, err := instancecounter.NewStrict(l, instancecounter.Options{Prefix: "r13", InstanceID: "a", DeadAfter: instancecounter.MinDeadAfter})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := instancecounter.NewStrict(mem.Connect(), instancecounter.Options{Prefix: "r13", InstanceID: "obs"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close(ctx)
	if _, _, err := a.Inc(ctx, "k", 5); err != nil {
		t.Fatal(err)
	}
	// Declare a dead behind its back: its next heartbeat rejoins.
	l.armed.Store(true)
	if _, err := mem.Connect().EvalScript(ctx, expireScript, keyspace.InstanceCounter("r13").List()[:1], keyspace.InstanceMember("a")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.held:
	case <-time.After(3 * time.Second):
		t.Fatal("no heartbeat rejoined")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	close(l.hold) // the request reaches the server now
	<-l.ran
	if c, _, err := obs.Get(ctx, "k"); err != nil || c != 0 {
		t.Fatalf("after a.Close returned nil, its late Rejoin ran: cumulative %d, %v; want 0", c, err)
	}
}
