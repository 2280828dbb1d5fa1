package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 300 * time.Millisecond

// fakeOps counts calls and answers with what the test sets.
type fakeOps struct {
	renews, releases atomic.Int32
	renew            atomic.Pointer[func(context.Context) (bool, error)]
	release          atomic.Pointer[func(context.Context) (bool, error)]
}

func (f *fakeOps) onRenew(fn func(context.Context) (bool, error))   { f.renew.Store(&fn) }
func (f *fakeOps) onRelease(fn func(context.Context) (bool, error)) { f.release.Store(&fn) }

func (f *fakeOps) ops() Ops {
	return Ops{
		Renew: func(ctx context.Context) (bool, error) {
			f.renews.Add(1)
			if fn := f.renew.Load(); fn != nil {
				return (*fn)(ctx)
			}
			return true, nil
		},
		Release: func(ctx context.Context) (bool, error) {
			f.releases.Add(1)
			if fn := f.release.Load(); fn != nil {
				return (*fn)(ctx)
			}
			return true, nil
		},
	}
}

func newLease(f *fakeOps, sent time.Time) *Lease {
	return New(Config{Name: "test", TTL: ttl, Ops: f.ops()}, sent)
}

func waitDone(t *testing.T, l *Lease, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-l.Done():
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("not done within %v (state %v)", within, l.State())
	}
	return 0
}

func TestRenewalsKeepTheLease(t *testing.T) {
	f := &fakeOps{}
	l := newLease(f, time.Now())
	first := l.Deadline()
	time.Sleep(2 * ttl)
	if l.State() != Held || !l.Deadline().After(first) || f.renews.Load() < 4 {
		t.Fatalf("state %v, deadline moved %v, %d renewals", l.State(), l.Deadline().Sub(first), f.renews.Load())
	}
	if st, err := l.Release(context.Background()); st != Released || err != nil {
		t.Fatalf("Release: %v, %v", st, err)
	}
	if !errors.Is(l.Cause(), context.Canceled) {
		t.Fatalf("cause after release %v", l.Cause())
	}
}

// TestTransientErrorsRetriedUntilDeadline: every renewal fails; the lease
// is lost at its deadline, not before, with the last error in the cause,
// and nothing is sent after the loss.
func TestTransientErrorsRetriedUntilDeadline(t *testing.T) {
	f := &fakeOps{}
	errNet := errors.New("connection reset")
	f.onRenew(func(context.Context) (bool, error) { return false, driver.Indeterminate(errNet) })
	sent := time.Now()
	l := newLease(f, sent)
	ctx := l.Context(context.Background())
	waitDone(t, l, 2*ttl)
	lostAt := time.Since(sent)
	if lostAt < ttl-Margin(ttl)-5*time.Millisecond {
		t.Fatalf("lost after %v, before the deadline %v", lostAt, ttl-Margin(ttl))
	}
	if n := f.renews.Load(); n < 3 {
		t.Fatalf("%d renewals: transient errors must be retried", n)
	}
	cause := context.Cause(ctx)
	if l.State() != Lost || !errors.Is(cause, distkit.ErrLeaseLost) || !errors.Is(cause, errNet) {
		t.Fatalf("state %v, cause %v", l.State(), cause)
	}
	n := f.renews.Load()
	time.Sleep(ttl)
	if f.renews.Load() != n {
		t.Fatalf("renewals went on after the loss: %d, then %d", n, f.renews.Load())
	}
	if st, err := l.Release(context.Background()); st != Lost || !errors.Is(err, distkit.ErrNotHeld) || !errors.Is(err, distkit.ErrLeaseLost) {
		t.Fatalf("Release of a lost lease: %v, %v", st, err)
	}
}

func TestRefusalIsLostAtOnce(t *testing.T) {
	f := &fakeOps{}
	f.onRenew(func(context.Context) (bool, error) { return false, nil })
	const long = 3 * time.Second // the refusal at 1 s, the deadline at 2.97 s
	l := New(Config{Name: "test", TTL: long, Ops: f.ops()}, time.Now())
	if d := waitDone(t, l, long); d > 2*time.Second {
		t.Fatalf("a refused renewal reported after %v, not at once", d)
	}
	if f.renews.Load() != 1 || !errors.Is(l.Cause(), distkit.ErrLeaseLost) {
		t.Fatalf("%d renewals, cause %v", f.renews.Load(), l.Cause())
	}
}

func TestPermanentErrorNotRetried(t *testing.T) {
	f := &fakeOps{}
	f.onRenew(func(context.Context) (bool, error) { return false, driver.NotApplied(backend.ErrClosed) })
	sent := time.Now()
	l := newLease(f, sent)
	waitDone(t, l, 2*ttl)
	if time.Since(sent) < ttl-Margin(ttl)-5*time.Millisecond || f.renews.Load() != 1 {
		t.Fatalf("lost after %v with %d renewals; want at the deadline after one", time.Since(sent), f.renews.Load())
	}
	if !errors.Is(l.Cause(), backend.ErrClosed) {
		t.Fatalf("cause %v", l.Cause())
	}
}

// TestPausedPastDeadline: a process that resumes after its deadline
// reports the loss before sending anything.
func TestPausedPastDeadline(t *testing.T) {
	f := &fakeOps{}
	l := newLease(f, time.Now().Add(-2*ttl))
	waitDone(t, l, time.Second)
	if f.renews.Load() != 0 || l.State() != Lost {
		t.Fatalf("%d renewals, state %v", f.renews.Load(), l.State())
	}
}

// TestLateConfirmation: a renewal that ignores its context and confirms
// after the deadline does not revive the lease: Lost happened at the
// deadline and is final.
func TestLateConfirmation(t *testing.T) {
	f := &fakeOps{}
	unblock := make(chan struct{})
	f.onRenew(func(context.Context) (bool, error) { <-unblock; return true, nil })
	sent := time.Now()
	l := newLease(f, sent)
	waitDone(t, l, 5*time.Second) // the renewal hangs until unblocked: only the deadline ends this
	if el := time.Since(sent); el < ttl-Margin(ttl)-5*time.Millisecond {
		t.Fatalf("lost after %v, before the deadline", el)
	}
	close(unblock)
	time.Sleep(ttl / 2)
	if l.State() != Lost {
		t.Fatalf("state %v after a late confirmation", l.State())
	}
}

func TestConcurrentRelease(t *testing.T) {
	for range 50 {
		f := &fakeOps{}
		f.onRelease(func(context.Context) (bool, error) {
			time.Sleep(time.Millisecond)
			return f.releases.Load() == 1, nil // a second removal would find nothing
		})
		l := newLease(f, time.Now())
		var wg sync.WaitGroup
		var bad atomic.Int32
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, err := l.Release(context.Background()); st != Released || err != nil {
					bad.Add(1)
				}
			}()
		}
		wg.Wait()
		if bad.Load() != 0 || f.releases.Load() != 1 || l.State() != Released {
			t.Fatalf("%d bad outcomes, %d releases sent, state %v", bad.Load(), f.releases.Load(), l.State())
		}
	}
}

// TestReleaseFailsThenRetried: a failed Release stops renewals, keeps the
// state and can be called again.
func TestReleaseFailsThenRetried(t *testing.T) {
	f := &fakeOps{}
	errDown := driver.NotApplied(errors.New("down"))
	f.onRelease(func(context.Context) (bool, error) { return false, errDown })
	l := New(Config{Name: "test", TTL: 3 * time.Second, Ops: f.ops()}, time.Now())
	if st, err := l.Release(context.Background()); st != Held || !errors.Is(err, errDown) {
		t.Fatalf("failed Release: %v, %v", st, err)
	}
	n := f.renews.Load()
	time.Sleep(1500 * time.Millisecond)
	if f.renews.Load() != n {
		t.Fatal("renewals went on after Release")
	}
	f.onRelease(func(context.Context) (bool, error) { return true, nil })
	if st, err := l.Release(context.Background()); st != Released || err != nil {
		t.Fatalf("second Release: %v, %v", st, err)
	}
}

// TestReleaseWaitsWithinCtx: a Release waiting for another one returns
// when its context ends.
func TestReleaseWaitsWithinCtx(t *testing.T) {
	f := &fakeOps{}
	unblock := make(chan struct{})
	f.onRelease(func(context.Context) (bool, error) { <-unblock; return true, nil })
	l := newLease(f, time.Now())
	go l.Release(context.Background())
	for f.releases.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Release(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting Release: %v", err)
	}
	close(unblock)
	waitDone(t, l, time.Second)
}

func TestAbandon(t *testing.T) {
	f := &fakeOps{}
	l := newLease(f, time.Now())
	ctx := l.Context(context.Background())
	l.Abandon()
	if l.State() != Lost || !errors.Is(context.Cause(ctx), distkit.ErrLeaseLost) {
		t.Fatalf("state %v, cause %v", l.State(), context.Cause(ctx))
	}
	deadline := time.Now().Add(time.Second)
	for f.releases.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if f.releases.Load() != 1 {
		t.Fatal("an abandoned lease was not released")
	}
	l.Abandon() // no-op
}

// TestContextsDoNotAccumulate: contexts that end on their own are dropped.
func TestContextsDoNotAccumulate(t *testing.T) {
	f := &fakeOps{}
	l := newLease(f, time.Now())
	defer l.Release(context.Background())
	for range 10000 {
		parent, cancel := context.WithCancel(context.Background())
		l.Context(parent)
		cancel()
	}
	l.mu.Lock()
	n := len(l.ctxs)
	l.mu.Unlock()
	if n > 64 {
		t.Fatalf("%d derived contexts kept", n)
	}
}

func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{driver.NotApplied(errors.New("refused")), false},
		{driver.Indeterminate(errors.New("reset")), false},
		{driver.NotApplied(backend.ErrClosed), true},
		{driver.Indeterminate(backend.ErrClosed), true},
		{backend.ErrInvalidOption, true},
		{&backend.ScriptError{Script: "s", Msg: "WRONGTYPE x"}, true},
		{driver.ClassifyReply("s", "READONLY You can't write against a read only replica."), false},
		{driver.ClassifyReply("s", "NOPERM no permission"), true},
		{context.DeadlineExceeded, false},
		{errors.New("unclassified"), true},
	} {
		if got := Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
