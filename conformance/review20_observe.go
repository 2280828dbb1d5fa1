package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/election"
)

// testReview20ObserveOneLeaderPerToken: three candidates on their own
// clients take turns (campaign with "c<i>/0", proclaim "c<i>/1" and
// "c<i>/2", resign) while two observers follow: each observer's tokens
// never go down, and every value reported with one token comes from one
// candidate ("never reports two leaders for one token").
func testReview20ObserveOneLeaderPerToken(t *testing.T, h Harness) {
	ctx := context.Background()
	p := prefix(t)
	opts := election.Options{Prefix: p, TTL: 5 * time.Second, RetryInterval: 5 * time.Millisecond}
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	var chans []<-chan election.Term
	for range 2 {
		chans = append(chans, newElection(t, open(t, h), "sched", opts).Observe(octx))
	}
	var owg sync.WaitGroup
	reports := make([][]election.Term, len(chans))
	for i, ch := range chans {
		owg.Add(1)
		go func() {
			defer owg.Done()
			for term := range ch {
				reports[i] = append(reports[i], term)
			}
		}()
	}
	var wg sync.WaitGroup
	for c := range 3 {
		e := newElection(t, open(t, h), "sched", opts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				l, err := e.Campaign(cctx, fmt.Sprintf("c%d/0", c))
				ccancel()
				if err != nil {
					t.Error(err)
					return
				}
				for k := 1; k <= 2; k++ {
					time.Sleep(3 * time.Millisecond)
					if err := l.Proclaim(ctx, fmt.Sprintf("c%d/%d", c, k)); err != nil {
						t.Error(err)
					}
				}
				time.Sleep(3 * time.Millisecond)
				if err := l.Resign(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	testkit.Pass(t, h, 100*time.Millisecond)
	cancel()
	owg.Wait()
	for i, rs := range reports {
		if len(rs) == 0 {
			t.Errorf("observer %d reported nothing", i)
		}
		who := map[int64]string{}
		var last int64
		for _, r := range rs {
			if r.Token < last {
				t.Errorf("observer %d: token %d after %d", i, r.Token, last)
			}
			last = r.Token
			cand, _, _ := strings.Cut(r.Value, "/")
			if prev, ok := who[r.Token]; ok && prev != cand {
				t.Errorf("observer %d: token %d reported with leaders %s and %s", i, r.Token, prev, cand)
			}
			who[r.Token] = cand
		}
	}
}
