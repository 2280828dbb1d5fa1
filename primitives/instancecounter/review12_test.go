package instancecounter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Lax.Close returns within its context even while another call of the
// same Lax (here Flush, with a context that has no deadline) waits on a
// backend that stopped answering.
func TestReview12_LaxCloseWithinCtxWhileFlushHangs(t *testing.T) {
	hb := testkit.NewHang(memory.New(memory.Options{}))
	l, err := instancecounter.NewLax(hb, instancecounter.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	userCtx, cancelUser := context.WithCancel(context.Background())
	defer cancelUser()
	l.Inc(userCtx, "k", 1)
	hb.HangOn(func(n string) bool { return n == "instancecounter-flush" })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Flush(userCtx)
	}()
	hb.WaitEntered(t, "instancecounter-flush")
	testkit.ReturnsWithin(t, "Lax.Close", 200*time.Millisecond, 2*time.Second, l.Close, cancelUser)
	cancelUser()
	wg.Wait()
}

// An Inc whose request is delayed past Close (it left before Close began
// and reaches the server after Close removed this instance's slices) must
// not bring the closed instance back: after Close returned nil, the other
// instances never see its slice in the cumulative value.
func TestReview12_StrictIncRacingCloseLeavesNoSlice(t *testing.T) {
	ctx := context.Background()
	mem := memory.New(memory.Options{})
	g := testkit.NewGate(mem, "instancecounter-op")
	gone, err := instancecounter.NewStrict(g, instancecounter.Options{Prefix: "p", InstanceID: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := instancecounter.NewStrict(mem.Connect(), instancecounter.Options{Prefix: "p", InstanceID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	incErr := make(chan error, 1)
	go func() {
		_, _, err := gone.Inc(ctx, "conns", 5)
		incErr <- err
	}()
	<-g.Entered
	closeErr := make(chan error, 1)
	go func() { closeErr <- gone.Close(ctx) }()
	// Let Close run as far as it goes while the Inc is still on its way
	// (it may wait for it), then let the Inc through.
	select {
	case err := <-closeErr:
		closeErr <- err
	case <-time.After(200 * time.Millisecond):
	}
	g.Open()
	err = <-incErr
	if err := <-closeErr; err != nil {
		t.Fatal(err)
	}
	cum, _, gerr := other.Get(ctx, "conns")
	if gerr != nil {
		t.Fatal(gerr)
	}
	if cum != 0 {
		t.Errorf("after Close returned nil (and the racing Inc returned %v), the closed instance's slice is in the total: cumulative %d, want 0", err, cum)
	}
}
