package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/electscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/election"
)

func runElection(t *testing.T, newHarness NewHarness) {
	t.Run("Basics", func(t *testing.T) { testElectBasics(t, newHarness(t)) })
	t.Run("OneLeaderWitness", func(t *testing.T) { testElectWitness(t, newHarness(t)) })
	t.Run("HandOffOnResign", func(t *testing.T) { testElectHandOff(t, newHarness(t)) })
	t.Run("FailoverWhenLeaderDies", func(t *testing.T) { testElectFailover(t, newHarness(t)) })
	t.Run("PartitionedLeaderFenced", func(t *testing.T) { testElectPartition(t, newHarness(t)) })
	t.Run("Observe", func(t *testing.T) { testElectObserve(t, newHarness(t)) })
	t.Run("InvalidOptions", func(t *testing.T) { testElectInvalid(t, newHarness(t)) })
	t.Run("LostReply", func(t *testing.T) { testElectLostReply(t, newHarness(t)) })
	t.Run("Review20_ObserveOneLeaderPerToken", func(t *testing.T) { testReview20ObserveOneLeaderPerToken(t, newHarness(t)) })
	t.Run("Review20_AnyBytes", func(t *testing.T) { testReview20ElectAnyBytes(t, newHarness(t)) })
}

func newElection(t *testing.T, b backend.Backend, name string, opts election.Options) *election.Election {
	t.Helper()
	e, err := election.New(b, name, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testElectBasics(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := election.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	a := newElection(t, open(t, h), "sched", opts)
	b := newElection(t, open(t, h), "sched", opts)
	if _, err := a.Leader(ctx); !errors.Is(err, distkit.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v, want ErrNoLeader", err)
	}
	la, err := a.Campaign(ctx, "host-a")
	if err != nil || la.Token() <= 0 || la.State() != election.Leading || la.Value() != "host-a" {
		t.Fatalf("Campaign on a free election: %v, %v", la, err)
	}
	if term, err := b.Leader(ctx); err != nil || term.Token != la.Token() || term.Value != "host-a" {
		t.Fatalf("Leader: %+v, %v; want token %d, host-a", term, err, la.Token())
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.Campaign(cctx, "host-b"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Campaign while someone leads: %v, want DeadlineExceeded", err)
	}
	if err := la.Proclaim(ctx, "host-a:v2"); err != nil {
		t.Fatal(err)
	}
	if term, err := b.Leader(ctx); err != nil || term.Token != la.Token() || term.Value != "host-a:v2" || la.Value() != "host-a:v2" {
		t.Fatalf("Leader after Proclaim: %+v, %v", term, err)
	}
	work := la.Context(ctx)
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Resign(ctx); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	select {
	case <-la.Done():
	default:
		t.Fatal("Done not closed after Resign")
	}
	if !errors.Is(context.Cause(work), context.Canceled) || la.State() != election.Resigned {
		t.Fatalf("after Resign: cause %v, state %v", context.Cause(work), la.State())
	}
	if _, err := a.Leader(ctx); !errors.Is(err, distkit.ErrNoLeader) {
		t.Fatalf("Leader after Resign: %v, want ErrNoLeader", err)
	}
	if err := la.Proclaim(ctx, "x"); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("Proclaim after Resign: %v, want ErrNotHeld", err)
	}
	lb, err := b.Campaign(ctx, "")
	if err != nil || lb.Token() <= la.Token() {
		t.Fatalf("second term: %v, token %d after %d", err, lb.Token(), la.Token())
	}
	if term, err := a.Leader(ctx); err != nil || term.Value != "" || term.Token != lb.Token() {
		t.Fatalf("Leader with an empty value: %+v, %v", term, err)
	}
	if err := lb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	var nilL *election.Leadership
	if err := nilL.Resign(ctx); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("nil Leadership Resign: %v", err)
	}
}

// testElectWitness: candidates on separate clients take turns leading; a
// non-atomic witness (read, pause, write) loses updates if two lead at
// once, and terms' tokens rise in the order they were won.
func testElectWitness(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const candidates, terms = 5, 6
	var witness int64
	var mu sync.Mutex
	var tokens []int64
	var wg sync.WaitGroup
	for c := range candidates {
		e := newElection(t, open(t, h), "sched", election.Options{Prefix: p, RetryInterval: 5 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range terms {
				l, err := e.Campaign(ctx, fmt.Sprint("c", c))
				if err != nil {
					t.Error(err)
					return
				}
				w := witness
				time.Sleep(300 * time.Microsecond)
				witness = w + 1
				mu.Lock()
				tokens = append(tokens, l.Token())
				mu.Unlock()
				if err := l.Resign(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if witness != candidates*terms {
		t.Fatalf("two leaders at once: witness %d of %d terms", witness, candidates*terms)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("term %d: token %d after %d", i, tokens[i], tokens[i-1])
		}
	}
}

func testElectHandOff(t *testing.T, h Harness) {
	b := open(t, h)
	if _, ok := b.(backend.Notifier); !ok {
		t.Skip("backend is not a Notifier")
	}
	ctx := context.Background()
	p := prefix(t)
	// Polling alone would take 2 s; a notified candidate takes a round trip.
	opts := election.Options{Prefix: p, RetryInterval: 2 * time.Second}
	la, err := newElection(t, b, "sched", opts).Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	cand := newElection(t, open(t, h), "sched", opts)
	got := make(chan time.Time, 1)
	go func() {
		lb, err := cand.Campaign(ctx, "b")
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		lb.Resign(ctx)
	}()
	time.Sleep(150 * time.Millisecond) // the candidate has tried once and waits
	resigned := time.Now()
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-got:
		if d := at.Sub(resigned); d > time.Second {
			t.Fatalf("hand-off took %v: the candidate was not woken", d)
		} else {
			t.Logf("hand-off in %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("candidate never elected")
	}
}

// fenced is a resource that rejects writes with a token below the highest
// it has seen.
type fenced struct {
	mu      sync.Mutex
	highest int64
}

func (f *fenced) write(token int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token < f.highest {
		return fmt.Errorf("stale token %d < %d", token, f.highest)
	}
	f.highest = token
	return nil
}

// testElectFailover: the leader's process dies (its backend closed: no
// more renewals); a candidate is elected once the lease expires, with a
// higher token, and the dead leader's Leadership reports the loss.
func testElectFailover(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 300 * time.Millisecond
	dying := h.NewBackend(t)
	la, err := newElection(t, dying, "sched", election.Options{Prefix: p, TTL: ttl}).Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	dying.Close()
	cand := newElection(t, open(t, h), "sched", election.Options{Prefix: p, TTL: ttl, RetryInterval: 10 * time.Millisecond})
	got := make(chan *election.Leadership, 1)
	var elected time.Time
	go func() {
		lb, err := cand.Campaign(ctx, "b")
		elected = time.Now()
		if err != nil {
			t.Error(err)
		}
		got <- lb
	}()
	var lb *election.Leadership
	deadline := time.Now().Add(10 * time.Second)
	for lb == nil && time.Now().Before(deadline) {
		select {
		case lb = <-got:
		default:
			pass(t, h, 10*time.Millisecond)
		}
	}
	if lb == nil {
		t.Fatal("no new leader after the leader's lease expired")
	}
	t.Logf("new leader %v after the old one died (TTL %v)", elected.Sub(died), ttl)
	if lb.Token() <= la.Token() {
		t.Fatalf("new term's token %d not above the old %d", lb.Token(), la.Token())
	}
	select {
	case <-la.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the dead leader was never told")
	}
	if la.State() != election.Lost || !errors.Is(context.Cause(la.Context(ctx)), distkit.ErrLeaseLost) {
		t.Fatalf("dead leader: %v, cause %v", la.State(), context.Cause(la.Context(ctx)))
	}
	if err := lb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Resign(ctx); !errors.Is(err, distkit.ErrNotHeld) {
		t.Fatalf("Resign of a lost term: %v, want ErrNotHeld", err)
	}
}

// testElectPartition: the leader's renewals stop getting through (they
// hang, as behind a partition); past its deadline it is told (Done), a
// candidate is elected, and the old leader's fenced writes are refused.
func testElectPartition(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	const ttl = 300 * time.Millisecond
	cut := testkit.NewHang(open(t, h))
	la, err := newElection(t, cut, "sched", election.Options{Prefix: p, TTL: ttl}).Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	store := &fenced{}
	if err := store.write(la.Token()); err != nil {
		t.Fatal(err)
	}
	cut.HangOn(func(name string) bool { return strings.HasPrefix(name, "election-") })
	cand := newElection(t, open(t, h), "sched", election.Options{Prefix: p, TTL: ttl, RetryInterval: 10 * time.Millisecond})
	got := make(chan *election.Leadership, 1)
	campaignErr := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); <-campaignErr }() // the campaign ends with the test
	go func() {
		lb, err := cand.Campaign(cctx, "b")
		campaignErr <- err
		got <- lb
	}()
	deadline := time.Now().Add(10 * time.Second)
	for la.State() == election.Leading && time.Now().Before(deadline) {
		pass(t, h, 20*time.Millisecond)
	}
	if la.State() != election.Lost {
		t.Fatalf("partitioned leader: %v, want Lost", la.State())
	}
	// The server's lease ends by the client's deadline: on a fake clock,
	// keep it moving until the candidate is elected.
	var lb *election.Leadership
	for wait := time.Now().Add(5 * time.Second); lb == nil; {
		select {
		case lb = <-got:
			if lb == nil {
				err := <-campaignErr
				campaignErr <- err
				t.Fatalf("candidate: %v", err)
			}
		default:
			if time.Now().After(wait) {
				t.Fatal("no new leader while the old one was cut off")
			}
			pass(t, h, 20*time.Millisecond)
		}
	}
	if err := store.write(lb.Token()); err != nil {
		t.Fatalf("new leader's write: %v", err)
	}
	if err := store.write(la.Token()); err == nil {
		t.Fatal("the old leader's fenced write was accepted after a new term began")
	}
	if err := lb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	cut.HangOn(nil)
}

// testElectObserve: an observer sees each term and each proclaimed value,
// never two leaders for one token, tokens never going down; its channel
// closes when its ctx ends.
func testElectObserve(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := election.Options{Prefix: p, RetryInterval: 10 * time.Millisecond}
	obs := newElection(t, open(t, h), "sched", opts)
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := obs.Observe(octx)
	var seen []election.Term
	next := func(want string) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case term, ok := <-ch:
				if !ok {
					t.Fatal("Observe's channel closed early")
				}
				seen = append(seen, term)
				if term.Value == want {
					return
				}
			case <-timeout:
				t.Fatalf("observer never saw %q; saw %+v", want, seen)
			}
		}
	}
	for c := range 3 {
		e := newElection(t, open(t, h), "sched", opts)
		l, err := e.Campaign(ctx, fmt.Sprint("c", c))
		if err != nil {
			t.Fatal(err)
		}
		next(fmt.Sprint("c", c))
		if err := l.Proclaim(ctx, fmt.Sprint("c", c, "/v2")); err != nil {
			t.Fatal(err)
		}
		next(fmt.Sprint("c", c, "/v2"))
		if err := l.Resign(ctx); err != nil {
			t.Fatal(err)
		}
	}
	leaderOf := map[int64]string{}
	for i, term := range seen {
		who, _, _ := strings.Cut(term.Value, "/")
		if prev, ok := leaderOf[term.Token]; ok && prev != who {
			t.Fatalf("token %d reported for %s and %s", term.Token, prev, who)
		}
		leaderOf[term.Token] = who
		if i > 0 && term.Token < seen[i-1].Token {
			t.Fatalf("token went down: %+v after %+v", term, seen[i-1])
		}
		if i > 0 && term == seen[i-1] {
			t.Fatalf("%+v reported twice in a row", term)
		}
	}
	if len(leaderOf) != 3 {
		t.Fatalf("saw %d terms, want 3: %+v", len(leaderOf), seen)
	}
	cancel()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("Observe's channel not closed after its ctx ended")
		}
	}
}

func testElectInvalid(t *testing.T, h Harness) {
	b := open(t, h)
	p := prefix(t)
	for _, c := range []struct {
		what string
		opts election.Options
	}{
		{"TTL below minimum", election.Options{Prefix: p, TTL: time.Millisecond}},
		{"RetryInterval below 1ms", election.Options{Prefix: p, RetryInterval: time.Microsecond}},
	} {
		if _, err := election.New(b, "sched", c.opts); !errors.Is(err, distkit.ErrInvalidOption) {
			t.Errorf("%s: %v", c.what, err)
		}
	}
	if _, err := election.New(b, "", election.Options{Prefix: p}); !errors.Is(err, distkit.ErrInvalidKey) {
		t.Errorf("empty name: %v", err)
	}
	if _, err := election.New(nil, "sched", election.Options{}); !errors.Is(err, distkit.ErrInvalidOption) {
		t.Errorf("nil backend: %v", err)
	}
}

// testElectLostReply: a campaign whose winning reply is lost finds its own
// term on the next attempt (same token, not a second term); a campaign
// that ends after a lost reply resigns the term it may have won.
func testElectLostReply(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	w := testkit.Wrap(open(t, h))
	e := newElection(t, w, "sched", election.Options{Prefix: p, RetryInterval: 10 * time.Millisecond})
	w.LoseNextReply(electscript.Campaign.Name())
	l, err := e.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if term, err := e.Leader(ctx); err != nil || term.Token != l.Token() {
		t.Fatalf("Leader %+v (%v), want the retried campaign's token %d", term, err, l.Token())
	}
	if err := l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	rule := w.LoseNextReply(electscript.Campaign.Name())
	cctx, cancel := context.WithCancel(ctx)
	go func() { <-rule.Done; cancel() }() // ctx ends right after the lost reply
	if _, err := e.Campaign(cctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("campaign cancelled after a lost reply: %v", err)
	}
	testkit.Eventually(t, 2*time.Second, "the term it may have won is resigned", func() bool {
		_, err := e.Leader(ctx)
		return errors.Is(err, distkit.ErrNoLeader)
	})
}
