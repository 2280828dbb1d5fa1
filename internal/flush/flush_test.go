package flush

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type none struct{}

// fake is a backend for the engine: it applies items to a map, and can
// refuse keys, fail batches or hang.
type fake struct {
	mu      sync.Mutex
	applied map[string]int64
	batches []int // items per batch
	seqs    []int64
	refuse  map[string]error
	fail    []error // next batch errors, in order (nil: apply)
	hang    chan struct{}
	hanging chan struct{}
	lastSeq int64
	tries   map[string]int
}

func newFake() *fake {
	return &fake{applied: map[string]int64{}, refuse: map[string]error{}, tries: map[string]int{}}
}

func (f *fake) send(ctx context.Context, b *Batch[none]) error {
	f.mu.Lock()
	hang := f.hang
	f.mu.Unlock()
	if hang != nil {
		select {
		case f.hanging <- struct{}{}:
		default:
		}
		<-hang // ignores ctx, like a client that does not honour deadlines
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, len(b.Items))
	f.seqs = append(f.seqs, b.Seq)
	var err error
	if len(f.fail) > 0 {
		err, f.fail = f.fail[0], f.fail[1:]
	}
	if err != nil && !errors.Is(err, backend.ErrIndeterminate) {
		return err
	}
	if b.Seq > f.lastSeq { // exactly once, as the scripts' marker does
		f.lastSeq = b.Seq
		for i := range b.Items {
			it := &b.Items[i]
			f.tries[it.E.Key()]++
			if e := f.refuse[it.E.Key()]; e != nil {
				it.Err = e
				continue
			}
			f.applied[it.E.Key()] += it.Delta
			it.Applied = true
		}
	} else {
		for i := range b.Items {
			it := &b.Items[i]
			it.Applied = f.refuse[it.E.Key()] == nil
		}
	}
	return err // an indeterminate error after applying: the reply was lost
}

func (f *fake) get(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied[key]
}

func newEngine(t *testing.T, f *fake, cfg Config[none]) *Engine[none] {
	t.Helper()
	cfg.Send = f.send
	cfg.Applied = func(*Batch[none], int) {}
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour
	}
	g := New(cfg)
	g.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return g
}

// add accepts delta on key with the check-then-publish loop of a primitive.
func add(g *Engine[none], key string, delta int64) {
	for {
		e := g.Entry(key, nil)
		n := e.Added()
		if g.Accept(e, n, n+delta) {
			return
		}
	}
}

func TestFlushTouchesOnlyDirtyEntries(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{MaxBatch: 100})
	for i := range 10_000 {
		add(g, fmt.Sprint("k", i), 1)
	}
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.batches) != 100 {
		t.Fatalf("10 000 keys went in %d batches, want 100 of MaxBatch 100", len(f.batches))
	}
	f.batches = nil
	add(g, "k42", 1)
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.batches) != "[1]" || f.get("k42") != 2 {
		t.Fatalf("after one more delta: batches %v, k42 = %d; want one batch of one item", f.batches, f.get("k42"))
	}
	f.batches = nil
	if err := g.Flush(ctx); err != nil || len(f.batches) != 0 {
		t.Fatalf("flush with nothing pending sent %v (%v)", f.batches, err)
	}
}

func TestIndeterminateBatchResentFirst(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{})
	add(g, "a", 1)
	f.fail = []error{fmt.Errorf("lost reply: %w", backend.ErrIndeterminate)}
	var fe *Error
	if err := g.Flush(ctx); !errors.As(err, &fe) || !errors.Is(err, backend.ErrIndeterminate) || fe.Pending["a"] != 1 {
		t.Fatalf("Flush: %v; want an *Error matching ErrIndeterminate with a:1 pending", err)
	}
	add(g, "a", 10)
	add(g, "b", 1)
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.seqs) != "[1 1 2]" {
		t.Fatalf("batch numbers sent: %v; want the unresolved batch 1 again, then 2", f.seqs)
	}
	if f.get("a") != 11 || f.get("b") != 1 {
		t.Fatalf("applied a=%d b=%d; want 11, 1", f.get("a"), f.get("b"))
	}
	if p := g.Pending(); len(p) != 0 {
		t.Fatalf("Pending = %v", p)
	}
}

func TestNotAppliedBatchDropped(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{})
	add(g, "a", 1)
	f.fail = []error{backend.ErrNotApplied}
	if err := g.Flush(ctx); !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("Flush: %v", err)
	}
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.seqs) != "[1 2]" || f.get("a") != 1 {
		t.Fatalf("seqs %v, a = %d; a batch certainly not applied is rebuilt, not resent", f.seqs, f.get("a"))
	}
}

// A refused key is set aside with its own backoff: the others flush every
// round, the refused one is retried rarely, and recovers when its cause
// goes away.
func TestRefusedKeyBacksOffAlone(t *testing.T) {
	f := newFake()
	errBad := errors.New("refused")
	f.refuse["bad"] = errBad
	g := newEngine(t, f, Config[none]{Interval: time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	add(g, "bad", 1)
	var stop atomic.Bool
	go func() {
		for !stop.Load() {
			add(g, "good", 1)
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	stop.Store(true)
	f.mu.Lock()
	tries, goodTries := f.tries["bad"], f.tries["good"]
	f.mu.Unlock()
	t.Logf("in 400 ms: refused key tried %d times, healthy key %d times", tries, goodTries)
	if tries > 12 || goodTries < 20 {
		t.Fatalf("refused key tried %d times, healthy key %d times in 400 ms", tries, goodTries)
	}
	if err := g.Failed()["bad"]; err != errBad {
		t.Fatalf("Failed = %v", g.Failed())
	}
	if p := g.Pending(); p["bad"] != 1 {
		t.Fatalf("Pending = %v", p)
	}
	f.mu.Lock()
	delete(f.refuse, "bad")
	f.mu.Unlock()
	testEventually(t, "the refused key recovers by itself", func() bool { return f.get("bad") == 1 && len(g.Failed()) == 0 })
}

func TestAmountBeyondInt64GoesInTwoBatches(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{})
	add(g, "k", math.MinInt64+1)
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	e := g.Entry("k", nil)
	if !g.Accept(e, math.MinInt64+1, math.MaxInt64) { // pending 2^64-2
		t.Fatal("Accept")
	}
	if p := g.Pending(); p["k"] != math.MaxInt64 {
		t.Fatalf("Pending = %v, want saturated", p)
	}
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.get("k"); got != math.MaxInt64 { // the true total of the deltas
		t.Fatalf("applied %d, want MaxInt64", got)
	}
	if fmt.Sprint(f.batches) != "[1 1 1]" {
		t.Fatalf("batches %v, want one, then the amount in two", f.batches)
	}
	if p := g.Pending(); len(p) != 0 {
		t.Fatalf("Pending = %v", p)
	}
}

// Close and Pending do not wait for a flush that hangs on a backend that
// ignores its context; Close reports the remainder.
func TestCloseAndPendingWhileSendHangs(t *testing.T) {
	f := newFake()
	f.hang, f.hanging = make(chan struct{}), make(chan struct{}, 1)
	defer close(f.hang)
	g := New(Config[none]{Interval: time.Millisecond, Send: f.send, Applied: func(*Batch[none], int) {}})
	g.Start()
	add(g, "k", 3)
	<-f.hanging
	start := time.Now()
	if p := g.Pending(); p["k"] != 3 {
		t.Fatalf("Pending = %v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := g.Close(ctx)
	var fe *Error
	if !errors.As(err, &fe) || fe.Pending["k"] != 3 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Fatalf("Pending and Close took %v with a 50 ms context", el)
	}
}

// Entries with nothing pending leave after IdleAfter, and memory goes
// back to where it was.
func TestIdleEntriesEvicted(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	var hold atomic.Bool
	hold.Store(true)
	g := newEngine(t, f, Config[none]{Interval: 5 * time.Millisecond, IdleAfter: 300 * time.Millisecond,
		CanEvict: func(*Entry[none]) bool { return !hold.Load() }})
	base := heap()
	const n = 50_000
	for i := range n {
		add(g, fmt.Sprint("idle-key-", i), 1)
	}
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if f.get("idle-key-7") != 1 {
		t.Fatal("idle-key-7 was not flushed")
	}
	f.mu.Lock()
	f.applied, f.tries = map[string]int64{}, map[string]int{} // the fake's own memory
	f.mu.Unlock()
	peak := heap()
	if peak-base < n*100 {
		t.Fatalf("heap grew by %d KiB only with %d entries", (peak-base)>>10, n)
	}
	if g.Len() != n {
		t.Fatalf("Len = %d while eviction is held", g.Len())
	}
	hold.Store(false)
	add(g, "busy", 1)
	testEventually(t, "idle entries evicted", func() bool { add(g, "busy", 1); return g.Len() <= 1 })
	g.Flush(ctx)
	after := heap()
	t.Logf("heap: %d KiB before, %d KiB with %d entries, %d KiB after they went idle", base>>10, peak>>10, n, after>>10)
	if after-base > (peak-base)/10 {
		t.Fatalf("heap %d KiB above the start after eviction (%d KiB with the entries)", (after-base)>>10, (peak-base)>>10)
	}
}

// Deltas accepted on an entry while the sweep evicts it are not lost: the
// entry still reaches the dirty set and is flushed.
func TestEvictionRacingAccepts(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{Interval: time.Millisecond, IdleAfter: time.Millisecond})
	var wg sync.WaitGroup
	var total [8]atomic.Int64
	deadline := time.Now().Add(300 * time.Millisecond)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for time.Now().Before(deadline) {
				k := r.IntN(8)
				add(g, fmt.Sprint("k", k), 1)
				total[k].Add(1)
				if r.IntN(64) == 0 {
					time.Sleep(2 * time.Millisecond) // let keys go idle
				}
			}
		}()
	}
	wg.Wait()
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range total {
		if got, want := f.get(fmt.Sprint("k", k)), total[k].Load(); got != want {
			t.Errorf("k%d: applied %d, accepted %d", k, got, want)
		}
	}
}

// The dirty-set protocol under concurrency: every accepted delta is
// applied exactly once while rounds run concurrently.
func TestConcurrentAcceptsAndRounds(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	g := newEngine(t, f, Config[none]{Interval: time.Millisecond, MaxBatch: 7})
	var wg sync.WaitGroup
	var total [64]atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for range 20_000 {
				k := r.IntN(64)
				add(g, fmt.Sprint("k", k), 1)
				total[k].Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 50 {
			g.Flush(ctx)
		}
	}()
	wg.Wait()
	if err := g.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for k := range total {
		if got, want := f.get(fmt.Sprint("k", k)), total[k].Load(); got != want {
			t.Errorf("k%d: applied %d, accepted %d", k, got, want)
		}
	}
}

func testEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func heap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// A batch whose send was indeterminate (applied, reply lost) stays in
// flight until a resend is answered: a resend that fails without running
// (NotApplied: connection refused, LOADING after a restart) or with any
// other error says nothing about the first send, so the batch is resent
// again with its number, never rebuilt as a new batch (which would apply
// its deltas twice).
func TestResendRefusedKeepsBatchInFlight(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"NotApplied", fmt.Errorf("LOADING Redis is loading the dataset in memory: %w", backend.ErrNotApplied)},
		{"ScriptError", &backend.ScriptError{Script: "flush", Msg: "WRONGTYPE Operation against a key holding the wrong kind of value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFake()
			g := newEngine(t, f, Config[none]{})
			add(g, "a", 5)
			f.fail = []error{fmt.Errorf("lost reply: %w", backend.ErrIndeterminate), tc.err, tc.err}
			if err := g.Flush(ctx); !errors.Is(err, backend.ErrIndeterminate) {
				t.Fatalf("first flush: %v; want ErrIndeterminate", err)
			}
			for range 2 {
				if err := g.Flush(ctx); !errors.Is(err, tc.err) {
					t.Fatalf("flush with the resend refused: %v", err)
				}
			}
			if p := g.Pending(); p["a"] != 5 {
				t.Fatalf("Pending = %v while the batch is unresolved", p)
			}
			add(g, "a", 1)
			if err := g.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if got := f.get("a"); got != 6 {
				t.Fatalf("applied a = %d, want 6 (5 exactly once, then 1); batches sent %v", got, f.seqs)
			}
			if fmt.Sprint(f.seqs) != "[1 1 1 1 2]" {
				t.Fatalf("batch numbers sent: %v; want batch 1 until a resend is answered, then 2", f.seqs)
			}
			if p := g.Pending(); len(p) != 0 {
				t.Fatalf("Pending = %v", p)
			}
		})
	}
}
