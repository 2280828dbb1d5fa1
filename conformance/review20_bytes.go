package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// review20Names are names, owners and values with bytes that keys,
// members and the scripts' patterns treat specially.
var review20Names = []string{"a:b", "a", "{x}", "x}", "%d", "1:2:3", "\x00", "\xff\xfe", "a\x00:1", "-.*+?[]^$()"}

// testReview20SemAnyBytes: semaphores whose names and owners are any
// bytes are independent of each other and count their units right.
func testReview20SemAnyBytes(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	var held []*semaphore.Permit
	for i, name := range review20Names {
		s := newSem(t, b, name, 2, semaphore.Options{Prefix: p, Owner: review20Names[(i+1)%len(review20Names)]})
		pm, err := s.TryAcquire(ctx, 2)
		if err != nil {
			t.Fatalf("semaphore %q: TryAcquire(2): %v (another name's units counted?)", name, err)
		}
		held = append(held, pm)
		if u, err := s.Used(ctx); err != nil || u != 2 {
			t.Errorf("semaphore %q: Used = %d, %v; want 2", name, u, err)
		}
		if _, err := s.TryAcquire(ctx, 1); !errors.Is(err, distkit.ErrNotAcquired) {
			t.Errorf("semaphore %q full: TryAcquire(1) = %v, want ErrNotAcquired", name, err)
		}
	}
	for i, pm := range held {
		releasePermit(t, pm)
		s := newSem(t, b, review20Names[i], 2, semaphore.Options{Prefix: p})
		if u, err := s.Used(ctx); err != nil || u != 0 {
			t.Errorf("semaphore %q released: Used = %d, %v; want 0", review20Names[i], u, err)
		}
	}
}

// testReview20ElectAnyBytes: elections whose names, owners and values are
// any bytes are independent, report the value as given, and a candidate
// that resigns and campaigns again gets a higher token.
func testReview20ElectAnyBytes(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	b := open(t, h)
	var leads []*election.Leadership
	for i, name := range review20Names {
		e := newElection(t, b, name, election.Options{Prefix: p, Owner: review20Names[(i+2)%len(review20Names)]})
		value := review20Names[(i+1)%len(review20Names)]
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err := e.Campaign(cctx, value)
		cancel()
		if err != nil {
			t.Fatalf("election %q: Campaign: %v (another name's term seen?)", name, err)
		}
		if term, err := e.Leader(ctx); err != nil || term.Value != value || term.Token != l.Token() {
			t.Errorf("election %q: Leader = %d %q, %v; want token %d value %q", name, term.Token, term.Value, err, l.Token(), value)
		}
		if err := l.Proclaim(ctx, name); err != nil {
			t.Fatalf("election %q: Proclaim: %v", name, err)
		}
		if term, err := e.Leader(ctx); err != nil || term.Value != name {
			t.Errorf("election %q: Leader after Proclaim = %q, %v; want value %q", name, term.Value, err, name)
		}
		leads = append(leads, l)
	}
	for i, l := range leads {
		if err := l.Resign(ctx); err != nil {
			t.Fatalf("election %q: Resign: %v", review20Names[i], err)
		}
		e := newElection(t, b, review20Names[i], election.Options{Prefix: p})
		if _, err := e.Leader(ctx); !errors.Is(err, distkit.ErrNoLeader) {
			t.Errorf("election %q resigned: Leader: %v, want ErrNoLeader", review20Names[i], err)
		}
		l2, err := e.Campaign(ctx, "again")
		if err != nil {
			t.Fatal(err)
		}
		if l2.Token() <= l.Token() {
			t.Errorf("election %q: token %d after Resign and Campaign again, want above %d", review20Names[i], l2.Token(), l.Token())
		}
		if err := l2.Resign(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
