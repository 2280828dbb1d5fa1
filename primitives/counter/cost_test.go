package counter_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
)

// A flush costs what is pending, not what was ever seen: with one pending
// key, it allocates the same whether 100 000 other keys sit idle or none.
func TestLaxFlushCostFollowsPending(t *testing.T) {
	ctx := context.Background()
	perFlush := func(idle int) uint64 {
		b := memory.New(memory.Options{})
		l := newLax(t, b, time.Hour)
		defer l.Close(ctx)
		for i := range idle {
			l.Inc(ctx, fmt.Sprintf("idle-%d", i), 1)
		}
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		const rounds = 20
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		for range rounds {
			l.Inc(ctx, "hot", 1)
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&ms1)
		return (ms1.TotalAlloc - ms0.TotalAlloc) / rounds
	}
	none, many := perFlush(0), perFlush(100_000)
	t.Logf("bytes allocated per flush of one key: %d with no idle keys, %d with 100 000", none, many)
	if many > none+1024 {
		t.Fatalf("a flush of one pending key allocates %d bytes among 100 000 idle keys, %d among none", many, none)
	}
}

// Memory follows the keys in use: after many keys go idle, the heap goes
// back to where it was.
func TestLaxIdleKeysFreeMemory(t *testing.T) {
	ctx := context.Background()
	// No background flush while the keys are added (nothing is evictable
	// while pending); eviction runs on its own schedule.
	l, err := counter.NewLax(testkit.NewAckBackend(), counter.Options{Prefix: "t", AllowedLag: time.Hour, IdleAfter: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	const n = 50_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d:requests", i)
	}
	base := heapAlloc()
	for _, k := range keys {
		l.Inc(ctx, k, 1)
	}
	if tr := l.Tracked(); tr != n {
		t.Fatalf("Tracked = %d after %d keys", tr, n)
	}
	peak := heapAlloc()
	if err := l.Flush(ctx); err != nil { // idle from now on
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for l.Tracked() > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Tracked = %d after 20 s", l.Tracked())
		}
		l.Inc(ctx, "busy", 1)
		l.Flush(ctx)
		time.Sleep(10 * time.Millisecond)
	}
	after := heapAlloc()
	t.Logf("heap: %d KiB before, %d KiB with %d keys, %d KiB after they went idle", base>>10, peak>>10, n, after>>10)
	if after-base > (peak-base)/10 {
		t.Fatalf("after the keys went idle the heap is %d KiB above the start (%d KiB with them)", (after-base)>>10, (peak-base)>>10)
	}
	runtime.KeepAlive(keys)
}

func heapAlloc() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
