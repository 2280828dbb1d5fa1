package memory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/conformance"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		t.Run("Backend", func(t *testing.T) { conformance.RunBackend(t, conformance.MemoryHarness) })
		t.Run("Primitives", func(t *testing.T) { conformance.RunPrimitives(t, conformance.MemoryHarness) })
	})
}

var incr = driver.NewScript("test-incr", `return redis.call('INCR', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		v, _, _ := st.Get(keys[0])
		n := int64(len(v)) + 1 // one byte per increment: enough to count applications
		return backend.Int(n), st.Set(keys[0], v+"x", 0)
	})

func count(t *testing.T, b *memory.Backend) int64 {
	t.Helper()
	get := driver.NewScript("test-len", "", func(st driver.Store, keys, _ []string) (backend.Value, error) {
		v, _, _ := st.Get(keys[0])
		return backend.Int(int64(len(v))), nil
	})
	v, err := b.Connect().EvalScript(context.Background(), get, []string{"k"})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := v.Int64()
	return n
}

func TestFailNext(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	b.FailNext(2, nil)
	for i := range 2 {
		if _, err := b.EvalScript(ctx, incr, []string{"k"}); !errors.Is(err, backend.ErrNotApplied) {
			t.Fatalf("call %d: %v, want ErrNotApplied", i, err)
		}
	}
	if got := count(t, b); got != 0 {
		t.Fatalf("failed calls applied %d times", got)
	}
	if _, err := b.EvalScript(ctx, incr, []string{"k"}); err != nil {
		t.Fatalf("third call: %v", err)
	}
	custom := errors.New("boom")
	b.FailNext(1, driver.Indeterminate(custom))
	if _, err := b.EvalScript(ctx, incr, []string{"k"}); !errors.Is(err, backend.ErrIndeterminate) || !errors.Is(err, custom) {
		t.Fatalf("custom error: %v", err)
	}
	if got := count(t, b); got != 1 {
		t.Fatalf("applied %d times, want 1", got)
	}
}

func TestFailAfterApply(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	b.FailAfterApply(1)
	res := b.EvalScripts(ctx, []backend.Call{{Script: incr, Keys: []string{"k"}}, {Script: incr, Keys: []string{"k"}}})
	if !errors.Is(res[0].Err, backend.ErrIndeterminate) || res[1].Err != nil {
		t.Fatalf("batch: %v / %v; want indeterminate then success", res[0].Err, res[1].Err)
	}
	if got := count(t, b); got != 2 {
		t.Fatalf("applied %d times, want 2 (the indeterminate call did apply)", got)
	}
}

func TestLatency(t *testing.T) {
	b := memory.New(memory.Options{})
	b.Latency(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.EvalScript(ctx, incr, []string{"k"}); !errors.Is(err, backend.ErrNotApplied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("latency past deadline: %v", err)
	}
	b.Latency(0)
	if got := count(t, b); got != 0 {
		t.Fatalf("applied %d times, want 0", got)
	}
}

func TestConnectSharesDataNotFaults(t *testing.T) {
	ctx := context.Background()
	a := memory.New(memory.Options{})
	c := a.Connect()
	a.FailNext(1, nil)
	if _, err := c.EvalScript(ctx, incr, []string{"k"}); err != nil {
		t.Fatalf("other client hit a's fault: %v", err)
	}
	c.Close()
	if _, err := a.EvalScript(ctx, incr, []string{"k"}); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("a's own fault: %v", err)
	}
	if _, err := a.EvalScript(ctx, incr, []string{"k"}); err != nil {
		t.Fatalf("a after c closed: %v", err)
	}
	if got := count(t, a); got != 2 {
		t.Fatalf("count %d, want 2", got)
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func TestInjectedClock(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := memory.New(memory.Options{Clock: fixedClock{start}})
	if !b.Now().Equal(start) {
		t.Fatalf("Now %v, want %v", b.Now(), start)
	}
	b.Advance(time.Minute)
	if want := start.Add(time.Minute); !b.Now().Equal(want) {
		t.Fatalf("after Advance: %v, want %v", b.Now(), want)
	}
}

func TestNotifier(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	ch, unsub, err := b.Subscribe(ctx, "chan")
	if err != nil {
		t.Fatal(err)
	}
	pub := driver.NewScript("test-pub", "", func(st driver.Store, _, args []string) (backend.Value, error) {
		return backend.Int(int64(st.Publish(args[0], "m"))), nil
	})
	v, err := b.Connect().EvalScript(ctx, pub, nil, "chan")
	if n, _ := v.Int64(); err != nil || n != 1 {
		t.Fatalf("publish reached %v subscribers (%v), want 1", v, err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("no notification delivered")
	}
	unsub()
	if v, _ := b.EvalScript(ctx, pub, nil, "chan"); !v.Equal(backend.Int(0)) {
		t.Fatalf("publish after unsubscribe reached %v", v)
	}
}
