package parity

import (
	"context"
	"fmt"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/lockscript"
	"github.com/distkit-go/distkit/internal/semscript"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// semaphoreScenario drives the semaphore's scripts directly (queue order,
// the retry path, giving up and its tombstone) and through the public
// API. Tokens depend on server time, so they are rendered by their order.
var semaphoreScenario = Scenario{Name: "Semaphore", Run: func(ctx context.Context, b backend.Backend, p string) []string {
	var out []string
	k := keyspace.Semaphore(p, "s")
	keys := []string{k.Holders, k.Queue, k.QueueExpiry, k.Fence, k.Gone}
	giveUp := []string{k.Holders, k.Queue, k.QueueExpiry, k.Gone}
	var last int64
	acq := func(id, n, mark, retry string) int64 {
		v, err := b.EvalScript(ctx, semscript.Acquire, keys, id, n, "4", "1000", mark, retry, k.Channel)
		if err != nil {
			out = append(out, Outcome(nil, err))
			return 0
		}
		tok, _ := v.Int64()
		out = append(out, fmt.Sprintf("granted %v, rises %v", tok > 0, tok > last))
		if tok > last {
			last = tok
		}
		return tok
	}
	call := func(s backend.Script, keys []string, args ...string) {
		v, err := b.EvalScript(ctx, s, keys, args...)
		out = append(out, Outcome(v, err))
	}
	ta := acq("a:1", "3", "0", "0")
	acq("b:1", "2", "150", "0") // queues
	acq("c:1", "1", "0", "0")   // 1 unit free, but b is ahead
	acq("c:1", "1", "150", "0") // queues behind b
	call(semscript.Used, []string{k.Holders})
	again := acq("a:1", "3", "0", "1") // the retry path finds a:1's permit
	out = append(out, fmt.Sprint("same token on retry: ", again == ta))
	call(lockscript.ReleaseShared, []string{k.Holders}, "a:1:", k.Channel)
	acq("c:1", "1", "150", "0") // b still ahead
	acq("b:1", "2", "150", "0")
	acq("c:1", "1", "150", "0")
	call(semscript.GiveUp, giveUp, "x:1", "1000", k.Channel) // nothing to remove; a tombstone
	acq("x:1", "1", "150", "0")                              // tombstoned: refused though a unit is free
	acq("d:1", "2", "150", "0")                              // full: queues
	call(semscript.GiveUp, giveUp, "d:1", "1000", k.Channel)
	acq("d:1", "2", "150", "1")                              // a late attempt of d: refused, does not queue
	call(semscript.GiveUp, giveUp, "c:1", "1000", k.Channel) // releases c's permit
	call(semscript.Used, []string{k.Holders})
	acq("e:1", "2", "150", "0") // nobody in line: granted
	call(semscript.Used, []string{k.Holders})

	s, err := semaphore.New(b, "api", 2, semaphore.Options{Prefix: p})
	if err != nil {
		return append(out, Outcome(nil, err))
	}
	p1, err := s.TryAcquire(ctx, 2)
	out = append(out, Outcome(p1.N(), err))
	_, err = s.TryAcquire(ctx, 1)
	out = append(out, Outcome(nil, err))
	_, err = s.TryAcquire(ctx, 3)
	out = append(out, Outcome(nil, err))
	st, err := p1.Release(ctx)
	out = append(out, Outcome(st, err))
	n, err := s.Used(ctx)
	out = append(out, Outcome(n, err))
	return out
}}
