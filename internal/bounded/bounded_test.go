package bounded

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReturnsResult(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, abandoned, err := Run(ctx, func() (int, error) { return 7, nil }, func(int, error) { t.Error("late called") })
	if v != 7 || abandoned || err != nil {
		t.Fatalf("Run = %v, %v, %v", v, abandoned, err)
	}
}

// A call that ignores its ctx is abandoned within Grace of ctx's end, and
// late gets its results when it returns.
func TestAbandonsOverrun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	late := make(chan int, 1)
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	v, abandoned, err := Run(ctx, func() (int, error) { <-release; return 3, nil }, func(v int, _ error) { late <- v })
	el := time.Since(start)
	if !abandoned || v != 0 || !errors.Is(err, distkit.ErrIndeterminate) || !errors.Is(err, ErrAbandoned) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, %v, %v; want abandoned, ErrIndeterminate, ErrAbandoned, Canceled", v, abandoned, err)
	}
	if el > time.Second {
		t.Errorf("Run returned after %v, want soon after 50ms", el)
	}
	close(release)
	select {
	case v := <-late:
		if v != 3 {
			t.Errorf("late got %d, want 3", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("late was not called")
	}
}

// A ctx that can never end runs f on the caller's goroutine.
func TestNoBudgetRunsInline(t *testing.T) {
	v, abandoned, err := Run(context.Background(), func() (int, error) { return 1, errors.New("x") }, nil)
	if v != 1 || abandoned || err == nil {
		t.Fatalf("Run = %v, %v, %v", v, abandoned, err)
	}
}
