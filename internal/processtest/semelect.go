package processtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// semCapacity is the semaphore's capacity in the process test: the number
// of slot files the holders share.
const semCapacity = 4

// workerSemHammer: goroutines acquiring 1–3 units of a capacity-4
// semaphore and, while holding n units, claiming n of 4 slot files
// (O_EXCL) shared by every process: a holder that finds fewer than n free
// slots proves more than 4 units were held at once. Tokens are logged.
func workerSemHammer(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	s, err := semaphore.New(b, "res", semCapacity, semaphore.Options{Prefix: spec.Prefix, TTL: 5 * time.Second, RetryInterval: 5 * time.Millisecond})
	if err != nil {
		return err
	}
	tokens := filepath.Join(spec.Dir, "tokens")
	errs := make(chan error, spec.Goroutines)
	var wg sync.WaitGroup
	var logMu sync.Mutex
	for gi := range spec.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range spec.Iterations {
				n := int64(1 + (gi+it)%3)
				p, err := s.Acquire(ctx, n)
				if err != nil {
					errs <- err
					return
				}
				var mine []string
				for slot := range semCapacity {
					if int64(len(mine)) == n {
						break
					}
					path := filepath.Join(spec.Dir, "slot"+strconv.Itoa(slot))
					if f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err == nil {
						f.Close()
						mine = append(mine, path)
					}
				}
				if int64(len(mine)) < n {
					errs <- fmt.Errorf("over capacity: holding %d units, found only %d of %d slots free", n, len(mine), semCapacity)
					return
				}
				time.Sleep(300 * time.Microsecond)
				logMu.Lock()
				if lf, err := os.OpenFile(tokens, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
					fmt.Fprintln(lf, p.Token())
					lf.Close()
				}
				logMu.Unlock()
				for _, path := range mine {
					os.Remove(path)
				}
				if _, err := p.Release(ctx); err != nil {
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

func testSemProcesses(t *testing.T, h ProcessHarness) {
	dir := t.TempDir()
	spec := workerSpec{Mode: "semaphore", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t), Dir: dir, Goroutines: 4, Iterations: 8}
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
	raw, _ := os.ReadFile(filepath.Join(dir, "tokens"))
	lines := strings.Fields(string(raw))
	total := 3 * spec.Goroutines * spec.Iterations
	if len(lines) != total {
		t.Fatalf("%d tokens logged for %d acquisitions", len(lines), total)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Fatalf("token %s given to two acquisitions", l)
		}
		seen[l] = true
	}
}

// workerCampaign campaigns with its id as value and reports "LEADER
// <token>" once elected; it then holds the term until its stdin closes
// (or it is killed), reporting "LOST" if the term ends first.
func workerCampaign(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	e, err := election.New(b, "sched", election.Options{Prefix: spec.Prefix, TTL: spec.DeadAfter, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	stdinClosed := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stdinClosed) }()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-stdinClosed; cancel() }()
	l, err := e.Campaign(cctx, spec.ID)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("LEADER %d\n", l.Token())
	select {
	case <-l.Done():
		fmt.Println("LOST")
	case <-stdinClosed:
	}
	l.Resign(ctx)
	return nil
}

// testElectionKilled: three processes campaign; the leader is killed with
// SIGKILL, twice; each time another process is elected with a higher
// token, once the dead leader's lease expired. Reports the time to a new
// leader.
func testElectionKilled(t *testing.T, h ProcessHarness) {
	ctx := context.Background()
	const ttl = 500 * time.Millisecond
	prefix := testkit.Prefix(t)
	type proc struct {
		w     *worker
		lines chan string
	}
	procs := map[string]*proc{}
	for i := range 3 {
		id := "p" + strconv.Itoa(i)
		w := startWorker(t, workerSpec{Mode: "campaign", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: prefix, ID: id, DeadAfter: ttl})
		p := &proc{w: w, lines: make(chan string, 4)}
		go func() {
			sc := bufio.NewScanner(w.stdout)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
			close(p.lines)
		}()
		procs[id] = p
	}
	obs, err := election.New(testkit.Open(t, h), "sched", election.Options{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	leader := func(after int64) (election.Term, time.Time) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			term, err := obs.Leader(ctx)
			if err == nil && term.Token > after {
				return term, time.Now()
			}
			if err != nil && !errors.Is(err, distkit.ErrNoLeader) {
				t.Logf("Leader: %v", err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("no leader with a token above %d within 10 s", after)
		return election.Term{}, time.Time{}
	}
	term, _ := leader(0)
	for round := range 2 {
		p := procs[term.Value]
		if p == nil {
			t.Fatalf("leader value %q is no process", term.Value)
		}
		if l := <-p.lines; l != "LEADER "+strconv.FormatInt(term.Token, 10) {
			t.Fatalf("%s says %q, the backend says it leads with token %d", term.Value, l, term.Token)
		}
		if err := p.w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		p.w.cmd.Wait()
		delete(procs, term.Value)
		next, at := leader(term.Token)
		if next.Value == term.Value {
			t.Fatalf("the killed process %s leads again", term.Value)
		}
		t.Logf("round %d: %s killed, %s leads %v later (TTL %v), token %d > %d", round, term.Value, next.Value, at.Sub(killed).Round(time.Millisecond), ttl, next.Token, term.Token)
		term = next
	}
	for _, p := range procs {
		p.w.stdin.Close()
		if err := p.w.cmd.Wait(); err != nil {
			t.Fatalf("worker: %v: %s", err, p.w.stderr.String())
		}
	}
}

// workerSemPause holds every unit of a capacity-2 semaphore with a short
// TTL and reports; the parent freezes the process past the TTL, takes the
// units, and continues it. The worker then reports what its permit says,
// tries a fenced write with its stale token, and releases.
func workerSemPause(b backend.Backend, spec workerSpec) error {
	ctx := context.Background()
	s, err := semaphore.New(b, "res", 2, semaphore.Options{Prefix: spec.Prefix, TTL: 300 * time.Millisecond})
	if err != nil {
		return err
	}
	store, err := counter.NewStrict(b, counter.Options{Prefix: spec.Prefix + "-store"})
	if err != nil {
		return err
	}
	p, err := s.Acquire(ctx, 2)
	if err != nil {
		return err
	}
	fmt.Printf("ACQUIRED %d\n", p.Token())
	os.Stdin.Read(make([]byte, 1)) // the parent writes one byte after SIGCONT
	select {
	case <-p.Done():
		fmt.Printf("LOST %s\n", p.State())
	case <-time.After(3 * time.Second):
		fmt.Printf("NOTLOST %s\n", p.State())
	}
	if _, prev, err := store.SetIf(ctx, "fence", distkit.Lt(p.Token()), p.Token()); err != nil {
		return err
	} else if prev < p.Token() {
		fmt.Println("FENCE accepted")
	} else {
		fmt.Println("FENCE rejected")
	}
	_, err = p.Release(ctx)
	fmt.Printf("RELEASE notheld=%v\n", errors.Is(err, distkit.ErrNotHeld))
	return nil
}

// testSemPaused: a holder frozen (SIGSTOP) past its TTL loses its units
// to another process, which gets a higher token; once resumed, the frozen
// holder sees Lost, its fenced write is refused, and its Release returns
// ErrNotHeld without freeing the new holder's units.
func testSemPaused(t *testing.T, h ProcessHarness) {
	ctx := context.Background()
	spec := workerSpec{Mode: "sem-pause", Addrs: h.Addrs(), Cluster: h.IsCluster(), Prefix: testkit.Prefix(t)}
	w := startWorker(t, spec)
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(w.stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("worker ended early: %s", w.stderr.String())
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatalf("worker silent: %s", w.stderr.String())
		}
		return ""
	}
	var stale int64
	if _, err := fmt.Sscanf(next(), "ACQUIRED %d", &stale); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	b := testkit.Open(t, h)
	s, err := semaphore.New(b, "res", 2, semaphore.Options{Prefix: spec.Prefix, TTL: 5 * time.Second, RetryInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.TryAcquireWithTimeout(ctx, 2, 3*time.Second)
	if err != nil {
		w.cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("could not take the units of a frozen holder: %v", err)
	}
	if p.Token() <= stale {
		t.Fatalf("new token %d not above the frozen holder's %d", p.Token(), stale)
	}
	store := testkit.NewStrict(t, b, spec.Prefix+"-store")
	if _, prev, err := store.SetIf(ctx, "fence", distkit.Lt(p.Token()), p.Token()); err != nil || prev >= p.Token() {
		t.Fatalf("current holder's fenced write: prev %d, %v", prev, err)
	}
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	w.stdin.Write([]byte{1})
	for _, want := range []string{"LOST Lost", "FENCE rejected", "RELEASE notheld=true"} {
		if l := next(); l != want {
			t.Fatalf("resumed holder: %q, want %q", l, want)
		}
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("worker: %v: %s", err, w.stderr.String())
	}
	if used, err := s.Used(ctx); err != nil || used != 2 || p.State() != semaphore.Acquired {
		t.Fatalf("after the stale Release: %d units used (%v), current permit %v", used, err, p.State())
	}
	if _, err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
