// Package processtest holds distkit's tests that need more than one
// process or a server that crashes: the test binary re-executed as worker
// processes (lock exclusion, a holder frozen with SIGSTOP, an instance
// killed with SIGKILL, a rate-limit bound across processes) and kill -9 of
// an AOF redis-server. The Redis drivers' tests run them
// (internal/drivertest).
package processtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/icmodel"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Multi-process tests re-execute the test binary as worker processes. A
// driver's TestMain starts with
//
//	if processtest.WorkerMain(dial) { return }
//
// where dial connects to the addresses a ProcessHarness hands out.

const workerEnv = "DISTKIT_CONFORMANCE_WORKER"

// icDeadAfter is the instance counters' DeadAfter in the process tests.
const icDeadAfter = 300 * time.Millisecond

// Dial connects a worker process to a server.
type Dial func(addrs []string, cluster bool) (backend.Backend, func(), error)

// ProcessHarness is a testkit.Harness whose server other processes can reach.
type ProcessHarness interface {
	testkit.Harness
	Addrs() []string
	IsCluster() bool
}

type workerSpec struct {
	Mode       string
	Addrs      []string
	Cluster    bool
	Prefix     string
	Dir        string
	Goroutines int
	Iterations int
	// icmodel: the instance to run.
	ID            string
	Lax           bool
	DeadAfter     time.Duration
	FlushInterval time.Duration
}

// WorkerMain runs a worker when this process was started as one, and then
// exits; otherwise it returns false at once.
func WorkerMain(dial Dial) bool {
	raw := os.Getenv(workerEnv)
	if raw == "" {
		return false
	}
	var spec workerSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "worker spec:", err)
		os.Exit(2)
	}
	b, closeFn, err := dial(spec.Addrs, spec.Cluster)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker dial:", err)
		os.Exit(2)
	}
	switch spec.Mode {
	case "hammer":
		err = workerHammer(b, spec)
	case "pause":
		err = workerPause(b, spec)
	case "fair":
		err = workerFair(b, spec)
	case "instance":
		err = workerInstance(b, spec)
	case "semaphore":
		err = workerSemHammer(b, spec)
	case "sem-pause":
		err = workerSemPause(b, spec)
	case "campaign":
		err = workerCampaign(b, spec)
	case "ratelimit", "ratelimit-hybrid":
		err = workerRateLimit(b, spec)
	case "icmodel":
		err = icmodel.Serve(b, icmodel.Spec{Prefix: spec.Prefix, ID: spec.ID, Lax: spec.Lax,
			DeadAfter: spec.DeadAfter, FlushInterval: spec.FlushInterval}, os.Stdin, os.Stdout)
	default:
		err = fmt.Errorf("unknown mode %q", spec.Mode)
	}
	b.Close()
	closeFn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// worker is a re-executed test binary running one workerSpec.
type worker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // closing it tells idle workers to finish
	stdout io.Reader
	stderr *strings.Builder
}

func startWorker(t *testing.T, spec workerSpec) *worker {
	t.Helper()
	raw, _ := json.Marshal(spec)
	w := &worker{cmd: exec.Command(os.Args[0], "-test.run=^$"), stderr: &strings.Builder{}}
	w.cmd.Env = append(os.Environ(), workerEnv+"="+string(raw))
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if w.stdout, err = w.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	w.cmd.Stderr = w.stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.stdin.Close(); w.cmd.Process.Kill(); w.cmd.Wait() })
	return w
}

// RunProcesses runs the multi-process tests (locks, instance counters,
// rate limits, semaphores, elections).
func RunProcesses(t *testing.T, newHarness func(t *testing.T) ProcessHarness) {
	t.Run("LockExclusionAcrossProcesses", func(t *testing.T) { testLockProcesses(t, newHarness(t)) })
	t.Run("LockFairAcrossProcesses", func(t *testing.T) { testLockFair(t, newHarness(t)) })
	t.Run("LockHolderPausedPastTTL", func(t *testing.T) { testLockPaused(t, newHarness(t)) })
	t.Run("InstanceKilled", func(t *testing.T) { testInstanceKilled(t, newHarness(t)) })
	t.Run("RateLimitBoundAcrossProcesses", func(t *testing.T) { testRLProcesses(t, newHarness(t)) })
	t.Run("HybridRateLimitBoundAcrossProcesses", func(t *testing.T) { testHybridProcesses(t, newHarness(t)) })
	t.Run("SemaphoreCapacityAcrossProcesses", func(t *testing.T) { testSemProcesses(t, newHarness(t)) })
	t.Run("SemaphoreHolderPausedPastTTL", func(t *testing.T) { testSemPaused(t, newHarness(t)) })
	t.Run("ElectionLeaderKilled", func(t *testing.T) { testElectionKilled(t, newHarness(t)) })
}

// workerHammer: goroutines doing Lock/Release cycles on one name with a
// witness and an occupancy marker on the file system, shared by all
// processes; tokens are appended to a log while the lock is held.
func workerHammer(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	m, err := lock.NewMutex(b, "res", lock.Options{Prefix: spec.Prefix, TTL: 5 * time.Second, RetryInterval: 5 * time.Millisecond})
	if err != nil {
		return err
	}
	witness := filepath.Join(spec.Dir, "witness")
	occupied := filepath.Join(spec.Dir, "occupied")
	tokens := filepath.Join(spec.Dir, "tokens")
	errs := make(chan error, spec.Goroutines)
	var wg sync.WaitGroup
	for range spec.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range spec.Iterations {
				g, err := m.Lock(ctx)
				if err != nil {
					errs <- err
					return
				}
				f, err := os.OpenFile(occupied, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					errs <- fmt.Errorf("overlap: the occupancy marker exists (%v)", err)
					return
				}
				f.Close()
				raw, _ := os.ReadFile(witness)
				n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
				time.Sleep(300 * time.Microsecond)
				os.WriteFile(witness, []byte(strconv.Itoa(n+1)), 0o600)
				lf, err := os.OpenFile(tokens, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
				if err == nil {
					fmt.Fprintln(lf, g.Token())
					lf.Close()
				}
				os.Remove(occupied)
				if _, err := g.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func testLockProcesses(t *testing.T, h ProcessHarness) {
	dir := t.TempDir()
	spec := workerSpec{Mode: "hammer", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t), Dir: dir, Goroutines: 4, Iterations: 8}
	var procs []*worker
	for range 3 {
		w := startWorker(t, spec)
		go io.Copy(io.Discard, w.stdout)
		procs = append(procs, w)
	}
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v: %s", i, err, p.stderr.String())
		}
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "witness"))
	total := 3 * spec.Goroutines * spec.Iterations
	if got, _ := strconv.Atoi(strings.TrimSpace(string(raw))); got != total {
		t.Fatalf("witness %d after %d acquisitions: updates were lost to overlapping holders", got, total)
	}
	logRaw, _ := os.ReadFile(filepath.Join(dir, "tokens"))
	lines := strings.Fields(string(logRaw))
	if len(lines) != total {
		t.Fatalf("%d tokens logged for %d acquisitions", len(lines), total)
	}
	prev := int64(0)
	for i, l := range lines {
		tok, _ := strconv.ParseInt(l, 10, 64)
		if tok <= prev {
			t.Fatalf("token %d at acquisition %d follows %d", tok, i, prev)
		}
		prev = tok
	}
}

// workerFair: goroutines doing Lock/Release cycles on one name (holding
// the lock a millisecond each time) from the byte on stdin until stdin is
// closed, then printing how many acquisitions they made.
func workerFair(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	m, err := lock.NewMutex(b, "res", lock.Options{Prefix: spec.Prefix, TTL: 5 * time.Second, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	fmt.Println("READY")
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		return err
	}
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	var n atomic.Int64
	errs := make(chan error, spec.Goroutines)
	var wg sync.WaitGroup
	for range spec.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				g, err := m.Lock(ctx)
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Millisecond)
				n.Add(1)
				if _, err := g.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("COUNT %d\n", n.Load())
	return nil
}

// testLockFair: three processes with equally many goroutines contend for
// one Mutex for a while; the FIFO queue must give them about equal shares
// (max/min acquisitions per process at most 1.5; without a queue, one
// process got 4.8× another's).
func testLockFair(t *testing.T, h ProcessHarness) {
	spec := workerSpec{Mode: "fair", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t), Goroutines: 3}
	var procs []*worker
	var outs []*bufio.Scanner
	for range 3 {
		w := startWorker(t, spec)
		procs = append(procs, w)
		outs = append(outs, bufio.NewScanner(w.stdout))
	}
	for i, sc := range outs {
		if !sc.Scan() || sc.Text() != "READY" {
			t.Fatalf("worker %d did not start: %q %s", i, sc.Text(), procs[i].stderr.String())
		}
	}
	for _, p := range procs {
		p.stdin.Write([]byte{'g'})
	}
	time.Sleep(2 * time.Second)
	for _, p := range procs {
		p.stdin.Close()
	}
	var counts []int
	for i, sc := range outs {
		var n int
		if !sc.Scan() {
			t.Fatalf("worker %d: no count: %s", i, procs[i].stderr.String())
		}
		if _, err := fmt.Sscanf(sc.Text(), "COUNT %d", &n); err != nil {
			t.Fatalf("worker %d: %q: %v", i, sc.Text(), err)
		}
		counts = append(counts, n)
		if err := procs[i].cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v: %s", i, err, procs[i].stderr.String())
		}
	}
	lo, hi := slices.Min(counts), slices.Max(counts)
	t.Logf("acquisitions per process: %v", counts)
	if lo == 0 || float64(hi)/float64(lo) > 1.5 {
		t.Fatalf("acquisitions per process %v: max/min above 1.5 under equal contention", counts)
	}
}

// workerPause acquires with a short TTL and reports; the parent stops the
// process past the TTL, takes the lock, and continues it. The worker then
// reports what its guard says, tries a fenced write with its stale token,
// and releases.
func workerPause(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	m, err := lock.NewMutex(b, "res", lock.Options{Prefix: spec.Prefix, TTL: 300 * time.Millisecond})
	if err != nil {
		return err
	}
	store, err := counter.NewStrict(b, counter.Options{Prefix: spec.Prefix + "-store"})
	if err != nil {
		return err
	}
	g, err := m.Lock(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("ACQUIRED %d\n", g.Token())
	os.Stdin.Read(make([]byte, 1)) // the parent writes one byte after SIGCONT
	start := time.Now()
	select {
	case <-g.Done():
		fmt.Printf("LOST %s %d\n", g.State(), time.Since(start).Milliseconds())
	case <-time.After(3 * time.Second):
		fmt.Printf("NOTLOST %s\n", g.State())
	}
	if _, prev, err := store.SetIf(ctx, "fence", distkit.Lt(g.Token()), g.Token()); err != nil {
		return err
	} else if prev < g.Token() {
		fmt.Println("FENCE accepted")
	} else {
		fmt.Println("FENCE rejected")
	}
	_, err = g.Release(ctx)
	fmt.Printf("RELEASE notheld=%v\n", errors.Is(err, distkit.ErrNotHeld))
	return nil
}

func testLockPaused(t *testing.T, h ProcessHarness) {
	ctx := context.Background()
	spec := workerSpec{Mode: "pause", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t)}
	w := startWorker(t, spec)
	cmd, stdin, stdout, stderr := w.cmd, w.stdin, w.stdout, w.stderr
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("worker ended early: %s", stderr.String())
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("worker silent: %s", stderr.String())
		}
		return ""
	}
	var staleToken int64
	if _, err := fmt.Sscanf(next(), "ACQUIRED %d", &staleToken); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// While the holder is frozen, its lease expires and we take the lock.
	b := testkit.Open(t, h)
	m := testkit.NewMutex(t, b, "res", lock.Options{Prefix: spec.Prefix, TTL: 5 * time.Second, RetryInterval: 20 * time.Millisecond})
	g, err := m.TryLockWithTimeout(ctx, 3*time.Second)
	if err != nil {
		cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("could not take the lock from a frozen holder: %v", err)
	}
	if g.Token() <= staleToken {
		t.Fatalf("new token %d not above the frozen holder's %d", g.Token(), staleToken)
	}
	store := testkit.NewStrict(t, b, spec.Prefix+"-store")
	if _, prev, err := store.SetIf(ctx, "fence", distkit.Lt(g.Token()), g.Token()); err != nil || prev >= g.Token() {
		t.Fatalf("current holder's fenced write: prev %d, %v", prev, err)
	}
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stdin.Write([]byte{1})
	var state string
	var ms int
	if l := next(); !strings.HasPrefix(l, "LOST") {
		t.Fatalf("resumed holder: %q, want LOST", l)
	} else {
		fmt.Sscanf(l, "LOST %s %d", &state, &ms)
	}
	if state != "Lost" {
		t.Fatalf("resumed holder's state %q", state)
	}
	if l := next(); l != "FENCE rejected" {
		t.Fatalf("stale holder's fenced write: %q, want FENCE rejected", l)
	}
	if l := next(); l != "RELEASE notheld=true" {
		t.Fatalf("stale holder's Release: %q, want ErrNotHeld", l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker: %v: %s", err, stderr.String())
	}
	if g.State() != lock.Acquired {
		t.Fatalf("current holder's state %v after the stale Release", g.State())
	}
	if _, err := testkit.NewMutex(t, testkit.Open(t, h), "res", lock.Options{Prefix: spec.Prefix}).TryLock(ctx); !errors.Is(err, distkit.ErrNotAcquired) {
		t.Fatalf("the stale Release freed the current holder's lock: %v", err)
	}
	t.Logf("stale holder noticed the loss %d ms after resuming", ms)
	testkit.Release(t, g)
}

// workerInstance contributes a known slice (Iterations) and then idles
// until its stdin closes; only its heartbeat keeps it alive.
func workerInstance(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	c, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: spec.Prefix,
		InstanceID: "w" + strconv.Itoa(spec.Goroutines), DeadAfter: icDeadAfter})
	if err != nil {
		return err
	}
	if _, _, err := c.SetOnInstance(ctx, "k", int64(spec.Iterations)); err != nil {
		return err
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	return c.Close(ctx)
}

func testInstanceKilled(t *testing.T, h ProcessHarness) {
	ctx := context.Background()
	p := testkit.Prefix(t)
	watcher := testkit.NewInstanceCounter(t, testkit.Open(t, h), instancecounter.Options{Prefix: p, InstanceID: "watcher", DeadAfter: icDeadAfter})
	var cmds []*exec.Cmd
	for i, slice := range []int{10, 20, 30} {
		spec := workerSpec{Mode: "instance", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: p, Goroutines: i, Iterations: slice}
		w := startWorker(t, spec)
		line, err := bufio.NewReader(w.stdout).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "READY" {
			t.Fatalf("worker %d: %q %v: %s", i, line, err, w.stderr.String())
		}
		cmds = append(cmds, w.cmd)
	}
	total := func() int64 {
		c, _, err := watcher.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := total(); got != 60 {
		t.Fatalf("cumulative of three workers: %d, want 60", got)
	}
	cmds[1].Process.Kill() // kill -9 the worker holding 20
	killed := time.Now()
	var gone time.Duration
	for time.Since(killed) < 4*icDeadAfter { // live, idle workers' slices never drop
		switch got := total(); got {
		case 60:
		case 40:
			if gone == 0 {
				gone = time.Since(killed)
			}
		default:
			t.Fatalf("cumulative %d at %v after the kill: want 60 then 40", got, time.Since(killed))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if gone == 0 || gone > icDeadAfter+icDeadAfter/3+200*time.Millisecond {
		t.Fatalf("the killed worker's slice vanished after %v; want within DeadAfter (%v) + one heartbeat", gone, icDeadAfter)
	}
	t.Logf("killed worker's slice removed %v after kill -9 (DeadAfter %v)", gone, icDeadAfter)
}

// workerRateLimit hammers one key from Goroutines goroutines for
// Iterations ms with the Redis provider (mode "ratelimit": it prints the
// server time, in ms, of every admitted decision) or a Hybrid one
// ("ratelimit-hybrid": local time).
func workerRateLimit(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	opts := ratelimit.Options{Prefix: spec.Prefix, Buckets: rlBuckets, SyncInterval: rlSync}
	var abs *ratelimit.Absolute
	if spec.Mode == "ratelimit" {
		r, err := ratelimit.NewRedis(b, opts)
		if err != nil {
			return err
		}
		defer r.Close(ctx)
		abs = r.Absolute()
	} else {
		h, err := ratelimit.NewHybrid(b, opts)
		if err != nil {
			return err
		}
		defer h.Close(ctx)
		abs = h.Absolute()
	}
	var mu sync.Mutex
	var out []int64
	var wg sync.WaitGroup
	var failed error
	end := time.Now().Add(time.Duration(spec.Iterations) * time.Millisecond)
	for range spec.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				d, err := abs.Inc(ctx, "k", ratelimit.Per(rlCapacity, rlWindow), 1)
				if err == nil && d.Degraded != nil {
					err = d.Degraded
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
					return
				}
				if d.Allowed {
					mu.Lock()
					out = append(out, d.At.UnixMilli())
					mu.Unlock()
				} else {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		return failed
	}
	for _, ms := range out {
		fmt.Println(ms)
	}
	return nil
}

// The multi-process rate-limit tests: capacity 100 per 500 ms.
const (
	rlWindow   = 500 * time.Millisecond
	rlBuckets  = 10 // of 50 ms
	rlSync     = 10 * time.Millisecond
	rlCapacity = 100
)

// runRLWorkers runs 3 worker processes × 4 goroutines for 1.5 s and returns
// each one's admission times.
func runRLWorkers(t *testing.T, h ProcessHarness, mode string) [][]time.Time {
	spec := workerSpec{Mode: mode, Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t), Goroutines: 4, Iterations: 1500}
	type proc struct {
		*worker
		out  []byte
		done chan struct{}
	}
	var procs []*proc
	for range 3 {
		p := &proc{worker: startWorker(t, spec), done: make(chan struct{})}
		go func() { p.out, _ = io.ReadAll(p.stdout); close(p.done) }()
		procs = append(procs, p)
	}
	at := make([][]time.Time, len(procs))
	for i, p := range procs {
		<-p.done
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v: %s", i, err, p.stderr.String())
		}
		for _, f := range strings.Fields(string(p.out)) {
			ms, _ := strconv.ParseInt(f, 10, 64)
			at[i] = append(at[i], time.UnixMilli(ms))
		}
	}
	return at
}

// testRLProcesses: 3 processes × 4 goroutines on one key with the Redis
// provider; every window of 500 ms, wherever it starts (server time of the
// admitting script, in ms), holds at most the capacity.
func testRLProcesses(t *testing.T, h ProcessHarness) {
	var at []time.Time
	for _, ts := range runRLWorkers(t, h, "ratelimit") {
		at = append(at, ts...)
	}
	worst := testkit.MaxInWindow(at, rlWindow)
	t.Logf("3 processes × 4 goroutines: %d admitted in 1.5 s, worst %v window (any start) %d, capacity %d", len(at), rlWindow, worst, rlCapacity)
	if worst > rlCapacity {
		t.Fatalf("a %v window admitted %d > capacity %d", rlWindow, worst, rlCapacity)
	}
	if len(at) < rlCapacity {
		t.Fatalf("only %d admitted", len(at))
	}
}

// testHybridProcesses: the same with Hybrid instances, checking the
// documented bound at every admission: the window ending there holds at
// most the capacity plus what the other processes admitted within
// 2 × (SyncInterval + a round trip) before it (a round trip taken as 40 ms:
// 2 cores, race detector).
func testHybridProcesses(t *testing.T, h ProcessHarness) {
	per := runRLWorkers(t, h, "ratelimit-hybrid")
	const d = 2 * (rlSync + 40*time.Millisecond)
	var all []time.Time
	for _, ts := range per {
		all = append(all, ts...)
	}
	worst, worstSlack := 0, 0
	for i, ts := range per {
		for _, t0 := range ts {
			in, others := 0, 0
			for _, u := range all {
				if !u.After(t0) && u.After(t0.Add(-rlWindow)) {
					in++
				}
			}
			for j, os := range per {
				if j == i {
					continue
				}
				for _, u := range os {
					if !u.After(t0) && u.After(t0.Add(-d)) {
						others++
					}
				}
			}
			if in > rlCapacity+others {
				t.Fatalf("the %v window ending at %v holds %d admissions: above capacity %d + the %d the other processes admitted within %v", rlWindow, t0.Format("15:04:05.000"), in, rlCapacity, others, d)
			}
			if in > worst {
				worst, worstSlack = in, others
			}
		}
	}
	t.Logf("3 Hybrid processes × 4 goroutines: %d admitted in 1.5 s, worst %v window %d (capacity %d + %d admitted by the others within %v)", len(all), rlWindow, worst, rlCapacity, worstSlack, d)
	if len(all) < rlCapacity {
		t.Fatalf("only %d admitted", len(all))
	}
}
