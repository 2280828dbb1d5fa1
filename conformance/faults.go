package conformance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// FaultInjector injects faults between a client and the data servers of a
// FaultHarness (every server behind a TCP proxy).
type FaultInjector interface {
	// DropReplyTo arms a one-shot fault: the next request containing
	// marker reaches the server, its reply is discarded and the connection
	// reset.
	DropReplyTo(marker string)
	// ResetBeforeWrite arms a one-shot fault: the next request containing
	// marker never reaches the server; its connection is reset.
	ResetBeforeWrite(marker string)
	// ReplyLatency delays every reply by d (0 = off).
	ReplyLatency(d time.Duration)
	// Blackhole drops every byte while on; connections that lost bytes are
	// reset when it ends.
	Blackhole(on bool)
	// Cut resets every connection and refuses new ones until Restore.
	Cut()
	// Restore ends every fault.
	Restore()
}

// FaultHarness is one driver and client kind (how a user builds the client)
// over a real deployment whose data servers sit behind fault proxies.
// RunFaults uses it.
type FaultHarness interface {
	// NewClient builds the client kind under test, its connections going
	// through the proxies, and a backend over it. closeClient closes the
	// user's client (not the backend); the harness cleans up both when t
	// ends.
	NewClient(t *testing.T) (b backend.Backend, closeClient func())
	// Direct returns a backend on the same data without faults, to read
	// the witness.
	Direct(t *testing.T) backend.Backend
	// Faults injects faults on every data server.
	Faults() FaultInjector
	// Restart kills -9 the data server that serves key and starts it again
	// (with every acknowledged write: AOF, appendfsync always).
	Restart(t *testing.T, key string)
}

// Resharder is a FaultHarness on Redis Cluster that can move the hash slot
// of key to another master while calls run (clients meet ASK, then MOVED).
type Resharder interface {
	MoveSlot(t *testing.T, key string)
}

// Failoverer is a FaultHarness on Redis Sentinel that can fail the master
// over to its replica while calls run.
type Failoverer interface {
	Failover(t *testing.T)
}

// FaultOptions size a RunFaults run.
type FaultOptions struct {
	Calls int // calls per fault (default 4)
	// Rounds repeats the whole matrix (default 1).
	Rounds int
	// OutageBound is how soon a call must be reported ErrNotApplied while
	// the servers refuse connections (default 1 s: about one dial attempt).
	OutageBound time.Duration
	// ConnectSlack is how far past its deadline a call may end while the
	// client re-establishes a connection without honouring the call's
	// context (rueidis: its dial-and-handshake timeout, Dialer.Timeout,
	// 5 s by default). Default 0: deadlines hold to within scheduling noise.
	ConnectSlack time.Duration
	// Failover adds the failover fault on harnesses that are Failoverers
	// (slow: Sentinel reconfigures the old master several seconds later).
	Failover bool
}

// FaultCell counts the outcomes of one fault on one client kind, as the
// server-side witness judged them.
type FaultCell struct {
	Fault         string
	Success       int // acknowledged; the witness saw exactly one execution
	NotApplied    int // ErrNotApplied; the witness saw none
	Indeterminate int // ErrIndeterminate; the witness saw zero or one
	Executions    int // executions the witness saw in total
	// LostToFailover counts acknowledged calls whose execution the new
	// master does not have (Sentinel failover: asynchronous replication and
	// the old master's split-brain window), reported, not a violation.
	LostToFailover int
	MaxNotApplied  time.Duration // slowest ErrNotApplied report (outage)
	Violations     []string
}

func (c FaultCell) String() string {
	s := fmt.Sprintf("%-18s ok %3d  not-applied %3d  indeterminate %3d  executions %3d", c.Fault,
		c.Success, c.NotApplied, c.Indeterminate, c.Executions)
	if c.LostToFailover > 0 {
		s += fmt.Sprintf("  lost-to-failover %d", c.LostToFailover)
	}
	if c.MaxNotApplied > 0 {
		s += fmt.Sprintf("  slowest not-applied %v", c.MaxNotApplied.Round(time.Millisecond))
	}
	return s
}

// witnessScript counts its executions: each call has a key of its own and
// INCR makes the count the witness reads back.
var witnessScript = driver.NewScript("fault-witness", `return redis.call('INCR', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		cur, _, err := st.Get(keys[0])
		if err != nil {
			return backend.Value{}, err
		}
		n, _ := strconv.ParseInt(cur, 10, 64)
		n++
		return backend.Int(n), st.Set(keys[0], strconv.FormatInt(n, 10), 0)
	})

var witnessRead = driver.NewScript("fault-witness-read", `return redis.call('GET', KEYS[1])`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		v, ok, err := st.Get(keys[0])
		if !ok || err != nil {
			return backend.Nil(), err
		}
		return backend.Str(v), nil
	})

// faultRun is one run of the matrix on one harness.
type faultRun struct {
	t    *testing.T
	h    FaultHarness
	tag  string // hash tag of every witness key
	next int
	mu   sync.Mutex
}

// call is one witnessed script call.
type call struct {
	id      string
	err     error
	val     backend.Value
	elapsed time.Duration
}

func (r *faultRun) newCall() *call {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	// Fixed width, so that no id is a prefix of another (proxy markers).
	return &call{id: fmt.Sprintf("%s-%06d-", r.tag, r.next)}
}

func (r *faultRun) key(c *call) string { return "{" + r.tag + "}:w:" + c.id }

func (r *faultRun) do(ctx context.Context, b backend.Backend, c *call) {
	start := time.Now()
	c.val, c.err = b.EvalScript(ctx, witnessScript, []string{r.key(c)}, c.id)
	c.elapsed = time.Since(start)
}

// executions reads the witness of c through a fault-free client.
func (r *faultRun) executions(d backend.Backend, c *call) int {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := d.EvalScript(ctx, witnessRead, []string{r.key(c)}, c.id)
		cancel()
		if err == nil {
			if v.IsNil() {
				return 0
			}
			s, _ := v.Text()
			n, _ := strconv.Atoi(s)
			return n
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("reading the witness of %s: %v", c.id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// judge checks every call of a fault against the witness and counts it.
func (r *faultRun) judge(cell *FaultCell, d backend.Backend, calls []*call, failover bool) {
	for _, c := range calls {
		n := r.executions(d, c)
		cell.Executions += n
		bad := func(format string, a ...any) {
			cell.Violations = append(cell.Violations, fmt.Sprintf("%s: call %s: ", cell.Fault, c.id)+fmt.Sprintf(format, a...))
		}
		if n > 1 {
			bad("executed %d times (outcome %v)", n, c.err)
		}
		switch {
		case c.err == nil:
			cell.Success++
			if got, _ := c.val.Int64(); got != 1 {
				bad("success returned %d: the script ran more than once", got)
			}
			if n == 0 {
				if failover {
					cell.LostToFailover++
				} else {
					bad("success, but the witness saw no execution")
				}
			}
		case errors.Is(c.err, backend.ErrNotApplied):
			cell.NotApplied++
			cell.MaxNotApplied = max(cell.MaxNotApplied, c.elapsed)
			if n != 0 {
				bad("ErrNotApplied, but the witness saw %d execution(s): %v", n, c.err)
			}
		case errors.Is(c.err, backend.ErrIndeterminate):
			cell.Indeterminate++
		default:
			bad("error in no class: %v", c.err)
		}
	}
}

// RunFaults runs the fault matrix on one client kind: for each fault, calls
// of a witness script whose every execution the server counts, then checks
// each outcome against the count. Success must mean exactly one execution,
// ErrNotApplied none, anything else must be ErrIndeterminate; no call may
// run twice. It returns the counts per fault (for the report) and fails t
// on any violation.
func RunFaults(t *testing.T, h FaultHarness, o FaultOptions) []FaultCell {
	if o.Calls <= 0 {
		o.Calls = 4
	}
	if o.Rounds <= 0 {
		o.Rounds = 1
	}
	if o.OutageBound <= 0 {
		o.OutageBound = time.Second
	}
	var rb [4]byte
	rand.Read(rb[:])
	r := &faultRun{t: t, h: h, tag: "dkf" + hex.EncodeToString(rb[:])}
	d := h.Direct(t)
	faults := []struct {
		name string
		run  func(*FaultCell) []*call
	}{
		{"drop-reply", func(cell *FaultCell) []*call { return r.dropReply(o) }},
		{"drop-reply-batch", func(cell *FaultCell) []*call { return r.dropReplyBatch(o) }},
		{"reset-before-write", func(cell *FaultCell) []*call { return r.resetBeforeWrite(o) }},
		{"refused", func(cell *FaultCell) []*call { return r.refused(o) }},
		{"blackhole", func(cell *FaultCell) []*call { return r.blackhole(o) }},
		{"close-client", func(cell *FaultCell) []*call { return r.closeInFlight(o, false) }},
		{"close-backend", func(cell *FaultCell) []*call { return r.closeInFlight(o, true) }},
		{"restart", func(cell *FaultCell) []*call { return r.restart(o) }},
	}
	if _, ok := h.(Resharder); ok {
		faults = append(faults, struct {
			name string
			run  func(*FaultCell) []*call
		}{"moved", func(cell *FaultCell) []*call { return r.moved(o) }})
	}
	if _, ok := h.(Failoverer); ok && o.Failover {
		faults = append(faults, struct {
			name string
			run  func(*FaultCell) []*call
		}{"failover", func(cell *FaultCell) []*call { return r.failover(o) }})
	}
	cells := make([]FaultCell, len(faults))
	for round := 0; round < o.Rounds; round++ {
		for i, f := range faults {
			cells[i].Fault = f.name
			calls := f.run(&cells[i])
			h.Faults().Restore()
			r.judge(&cells[i], d, calls, f.name == "failover")
		}
	}
	var violations []string
	for _, c := range cells {
		violations = append(violations, c.Violations...)
		if c.Fault == "refused" && c.NotApplied == 0 {
			violations = append(violations, "refused: no call was reported ErrNotApplied during the outage")
		}
	}
	sort.Strings(violations)
	if len(violations) > 0 {
		t.Errorf("%d violation(s) of the outcome rule:\n%s", len(violations), strings.Join(violations, "\n"))
	}
	return cells
}

// client returns a fresh client whose script cache is warm (so that a
// fault armed on a call hits its EVALSHA, not a NOSCRIPT round).
func (r *faultRun) client() (backend.Backend, func()) {
	b, closeClient := r.h.NewClient(r.t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c := r.newCall()
		r.do(ctx, b, c)
		if c.err == nil {
			return b, closeClient
		}
		if ctx.Err() != nil {
			r.t.Fatalf("warm-up call: %v", c.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// dropReply: each call's reply is lost after the server ran it.
func (r *faultRun) dropReply(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	var calls []*call
	for range o.Calls {
		c := r.newCall()
		r.h.Faults().DropReplyTo(c.id)
		ctx, cancel := withTimeout(3 * time.Second)
		r.do(ctx, b, c)
		cancel()
		calls = append(calls, c)
	}
	return calls
}

// dropReplyBatch: a batch of three calls whose middle call's reply is lost
// (with the replies after it on the same connection).
func (r *faultRun) dropReplyBatch(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	var calls []*call
	for range o.Calls {
		batch := []*call{r.newCall(), r.newCall(), r.newCall()}
		r.h.Faults().DropReplyTo(batch[1].id)
		bc := make([]backend.Call, len(batch))
		for i, c := range batch {
			bc[i] = backend.Call{Script: witnessScript, Keys: []string{r.key(c)}, Args: []string{c.id}}
		}
		ctx, cancel := withTimeout(3 * time.Second)
		res := b.EvalScripts(ctx, bc)
		cancel()
		for i, c := range batch {
			c.val, c.err = res[i].Value, res[i].Err
		}
		calls = append(calls, batch...)
	}
	return calls
}

// resetBeforeWrite: each call's connection is reset before its request
// reaches the server.
func (r *faultRun) resetBeforeWrite(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	var calls []*call
	for range o.Calls {
		c := r.newCall()
		r.h.Faults().ResetBeforeWrite(c.id)
		ctx, cancel := withTimeout(3 * time.Second)
		r.do(ctx, b, c)
		cancel()
		calls = append(calls, c)
	}
	return calls
}

// refused: the servers refuse connections (an outage). Every call must
// end within o.OutageBound (about one dial attempt), long before its
// deadline. The first calls may meet a connection reset under them, and a
// client may answer a later call with a connection's stale error without
// writing it (rueidis): both are ErrIndeterminate, which is honest. But the
// last call, and most calls after the first four, must be ErrNotApplied.
func (r *faultRun) refused(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	r.h.Faults().Cut()
	var calls []*call
	later, laterNA := 0, 0
	n := o.Calls + 4
	for i := range n {
		c := r.newCall()
		ctx, cancel := withTimeout(5 * time.Second)
		r.do(ctx, b, c)
		cancel()
		calls = append(calls, c)
		na := errors.Is(c.err, backend.ErrNotApplied)
		if c.elapsed > o.OutageBound {
			r.t.Errorf("refused: call %d took %v (%v), want within %v (about one dial attempt)", i, c.elapsed, c.err, o.OutageBound)
		}
		if i >= 4 {
			later++
			if na {
				laterNA++
			}
		}
		if i == n-1 && !na {
			r.t.Errorf("refused: the last call during the outage: %v, want ErrNotApplied", c.err)
		}
	}
	if 2*laterNA < later {
		r.t.Errorf("refused: only %d of %d calls after the first four were ErrNotApplied", laterNA, later)
	}
	return calls
}

// blackhole: nothing gets through; each call must end by its deadline.
func (r *faultRun) blackhole(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	r.h.Faults().Blackhole(true)
	var calls []*call
	for range o.Calls {
		c := r.newCall()
		ctx, cancel := withTimeout(300 * time.Millisecond)
		r.do(ctx, b, c)
		cancel()
		calls = append(calls, c)
		if c.elapsed > 2*time.Second+o.ConnectSlack {
			r.t.Errorf("blackhole: a call with a 300 ms deadline took %v", c.elapsed)
		}
	}
	r.h.Faults().Blackhole(false)
	return calls
}

// closeInFlight: calls whose replies are slow are in flight when the
// user's client (or the backend) is closed.
func (r *faultRun) closeInFlight(o FaultOptions, backendClose bool) []*call {
	b, closeClient := r.client()
	defer b.Close()
	// Longer than the grace a closing client gives replies in flight
	// (rueidis: 1 s), so that some calls are cut off after they ran.
	r.h.Faults().ReplyLatency(1500 * time.Millisecond)
	calls := make([]*call, o.Calls+1)
	var wg sync.WaitGroup
	for i := range calls {
		calls[i] = r.newCall()
		wg.Add(1)
		go func(c *call) {
			defer wg.Done()
			ctx, cancel := withTimeout(5 * time.Second)
			r.do(ctx, b, c)
			cancel()
		}(calls[i])
	}
	time.Sleep(150 * time.Millisecond)
	if backendClose {
		b.Close()
	} else {
		closeClient()
	}
	wg.Wait()
	return calls
}

// restart: the server serving the witness is killed (-9) and restarted
// while calls are in flight.
func (r *faultRun) restart(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	r.h.Faults().ReplyLatency(200 * time.Millisecond)
	calls := make([]*call, o.Calls)
	var wg sync.WaitGroup
	for i := range calls {
		calls[i] = r.newCall()
		wg.Add(1)
		go func(c *call) {
			defer wg.Done()
			ctx, cancel := withTimeout(5 * time.Second)
			r.do(ctx, b, c)
			cancel()
		}(calls[i])
	}
	time.Sleep(100 * time.Millisecond)
	r.h.Restart(r.t, r.key(calls[0]))
	wg.Wait()
	r.h.Faults().Restore()
	// Calls after the restart succeed again.
	ctx, cancel := withTimeout(10 * time.Second)
	defer cancel()
	for {
		c := r.newCall()
		r.do(ctx, b, c)
		calls = append(calls, c)
		if c.err == nil {
			break
		}
		if ctx.Err() != nil {
			r.t.Errorf("restart: no call succeeded within 10 s of the restart: %v", c.err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return calls
}

// callLoop runs calls one after another until stop is closed.
func (r *faultRun) callLoop(b backend.Backend, stop <-chan struct{}) []*call {
	var calls []*call
	for {
		select {
		case <-stop:
			return calls
		default:
		}
		c := r.newCall()
		ctx, cancel := withTimeout(3 * time.Second)
		r.do(ctx, b, c)
		cancel()
		calls = append(calls, c)
		time.Sleep(2 * time.Millisecond)
	}
}

// moved: the witness's hash slot moves to another master while calls run
// (ASK during the migration, MOVED after it).
func (r *faultRun) moved(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	stop := make(chan struct{})
	var calls []*call
	done := make(chan struct{})
	go func() { defer close(done); calls = r.callLoop(b, stop) }()
	for range max(1, o.Calls/4) {
		time.Sleep(30 * time.Millisecond)
		r.h.(Resharder).MoveSlot(r.t, "{"+r.tag+"}")
	}
	time.Sleep(30 * time.Millisecond)
	close(stop)
	<-done
	return calls
}

// failover: Sentinel fails the master over while calls run.
func (r *faultRun) failover(o FaultOptions) []*call {
	b, _ := r.client()
	defer b.Close()
	stop := make(chan struct{})
	var calls []*call
	done := make(chan struct{})
	go func() { defer close(done); calls = r.callLoop(b, stop) }()
	time.Sleep(50 * time.Millisecond)
	r.h.(Failoverer).Failover(r.t)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	return calls
}
