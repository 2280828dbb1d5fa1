//go:build chaos

package chaos

import (
	"context"
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/primitives/counter"
)

type ciInput struct {
	kind string // inc, get, set
	n    int64
}

type ciOutput struct {
	v       int64
	unknown bool // indeterminate: may or may not have applied
}

// counterModel is a single int64 register with increments; an operation
// whose outcome is unknown may or may not have taken effect.
var counterModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{int64(0)} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(int64), input.(ciInput), output.(ciOutput)
		switch in.kind {
		case "inc":
			if out.unknown {
				return []any{s, s + in.n}
			}
			if out.v == s+in.n {
				return []any{s + in.n}
			}
		case "set":
			if out.unknown {
				return []any{s, in.n}
			}
			if out.v == in.n {
				return []any{in.n}
			}
		case "get":
			if out.v == s {
				return []any{s}
			}
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(int64) == b.(int64) },
}

// batchCounter counts the group-commit batches a Strict counter sends.
type batchCounter struct {
	backend.Backend
	batches, ops atomic.Int64
}

func (b *batchCounter) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() == "counter-batch" {
		b.batches.Add(1)
		b.ops.Add(int64(len(args) / 3))
	}
	return b.Backend.EvalScript(ctx, s, keys, args...)
}

// TestStrictLinearizable records a history of Strict counter operations
// from two clients (each a counter used by four goroutines, so that
// group commit sends their calls in shared batches) while their
// connections suffer latency, blackholes and cuts, and checks it for
// linearizability; operations that failed with an unknown outcome stay
// open-ended. The check must reject the same history with one read made
// stale.
func TestStrictLinearizable(t *testing.T) {
	r := rng(t)
	srv := env.Server(t)
	const clients, perClient = 2, 4
	var cs []*client
	var ctrs []*counter.Strict
	var bcs []*batchCounter
	for range clients {
		c := newClient(t, srv.Addr)
		cs = append(cs, c)
		bc := &batchCounter{Backend: c.b}
		bcs = append(bcs, bc)
		s, _ := counter.NewStrict(bc, counter.Options{Prefix: "chaos-lin"})
		t.Cleanup(func() { s.Close(context.Background()) })
		for range perClient {
			ctrs = append(ctrs, s)
		}
	}
	var mu sync.Mutex
	var history []porcupine.Operation
	var acked, indeterminate, notApplied atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	seeds := make([]uint64, len(ctrs))
	for i := range seeds {
		seeds[i] = r.Uint64()
	}
	start := time.Now()
	for i := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lr := rngFrom(seeds[i])
			for !stop.Load() {
				var in ciInput
				switch x := lr.IntN(100); {
				case x < 55:
					in = ciInput{"inc", 1 + lr.Int64N(3)}
				case x < 95:
					in = ciInput{"get", 0}
				default:
					in = ciInput{"set", lr.Int64N(50)}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
				call := time.Since(start).Nanoseconds()
				var v int64
				var err error
				switch in.kind {
				case "inc":
					v, err = ctrs[i].Inc(ctx, "k", in.n)
				case "get":
					v, err = ctrs[i].Get(ctx, "k")
				case "set":
					v, err = ctrs[i].Set(ctx, "k", in.n)
				}
				ret := time.Since(start).Nanoseconds()
				cancel()
				op := porcupine.Operation{ClientId: i, Input: in, Call: call, Output: ciOutput{v: v}, Return: ret}
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, distkit.ErrNotApplied):
					notApplied.Add(1)
					continue // certainly did not happen
				case errors.Is(err, distkit.ErrIndeterminate):
					indeterminate.Add(1)
					if in.kind == "get" {
						continue // a read with no answer has no effect
					}
					op.Output, op.Return = ciOutput{unknown: true}, math.MaxInt64
				default:
					t.Errorf("unexpected error class: %v", err)
					return
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
				time.Sleep(time.Millisecond) // keep the history small enough to check exhaustively
			}
		}()
	}
	faults := injectFaults(r, cs, 1500*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	var batches, batched int64
	for _, bc := range bcs {
		batches += bc.batches.Load()
		batched += bc.ops.Load()
	}
	t.Logf("ops: %d acked, %d indeterminate, %d not applied; %d group-commit batches carried %d ops; faults injected: %v",
		acked.Load(), indeterminate.Load(), notApplied.Load(), batches, batched, faults)
	if acked.Load() < 100 || indeterminate.Load() == 0 || batches == 0 {
		t.Fatalf("the run exercised too little: %d acked, %d indeterminate, %d batches", acked.Load(), indeterminate.Load(), batches)
	}
	model := counterModel.ToModel()
	res := porcupine.CheckOperationsTimeout(model, history, 60*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable (%v)", len(history), res)
	}
	t.Logf("history of %d operations is linearizable", len(history))

	// The checker must catch a stale read: pick a read and give it the
	// value of an earlier read that completed before it started and saw a
	// different value.
	stale := append([]porcupine.Operation(nil), history...)
	injected := false
	cutoff := int64(0)
	sortByCall(stale)
	for j := 20; j < len(stale) && !injected; j++ { // early, so the history to search stays short
		b := stale[j]
		if b.Input.(ciInput).kind != "get" {
			continue
		}
		for k := range stale {
			a := stale[k]
			if a.Input.(ciInput).kind == "get" && a.Return < b.Call && a.Output.(ciOutput).v != b.Output.(ciOutput).v && concurrentWrites(stale, a.Return, b.Call) {
				stale[j].Output = a.Output
				injected = true
				cutoff = b.Return
				break
			}
		}
	}
	if !injected {
		t.Fatal("found no read to make stale")
	}
	// Every operation called before the stale read returned: a prefix by
	// call time of a linearizable history is linearizable, so only the
	// injected read can make it illegal.
	var prefix []porcupine.Operation
	for _, op := range stale {
		if op.Call <= cutoff {
			prefix = append(prefix, op)
		}
	}
	if res := porcupine.CheckOperationsTimeout(model, prefix, 60*time.Second); res != porcupine.Illegal {
		t.Fatalf("the checker did not reject a history with a stale read (%v)", res)
	}
	t.Logf("a stale read injected into %d operations was rejected", len(prefix))
}

// concurrentWrites reports whether an acknowledged write completed between
// from and to (so a read at to cannot see the value read at from).
func concurrentWrites(h []porcupine.Operation, from, to int64) bool {
	for _, op := range h {
		in := op.Input.(ciInput)
		if in.kind != "get" && !op.Output.(ciOutput).unknown && op.Call > from && op.Return < to && in.n != 0 {
			return true
		}
	}
	return false
}

func sortByCall(h []porcupine.Operation) {
	sort.Slice(h, func(i, j int) bool { return h[i].Call < h[j].Call })
}
