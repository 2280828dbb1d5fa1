package testkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
)

// Wrapped is a backend.Backend in front of another that injects faults into
// the script calls of chosen scripts (by name), on any backend alike: a
// delay before the call is forwarded (the request is slow), a reply lost
// after the call ran (ErrIndeterminate), calls that hang without honouring
// their context (a server that stopped answering and a client that does
// not give up), and a partition (every call fails, not applied). It also
// logs when each call started. Faults apply only to EvalScript calls, which
// is all the instance counters make.
type Wrapped struct {
	backend.Backend

	mu        sync.Mutex
	rules     []*Rule
	hang      map[string]bool // script name ("" = every script) → hang
	release   chan struct{}   // closed by Release: hung calls return
	partition bool
	starts    []Start
	finished  map[string]int
}

// Start records one call: which script, and when it started.
type Start struct {
	Script string
	At     time.Time
}

// Rule is a one-shot fault on the next call of a script.
type Rule struct {
	script  string
	delay   time.Duration // before forwarding, ignoring the call's context
	lose    bool          // forward, then report ErrIndeterminate
	refuse  error         // do not forward; fail with this error
	late    bool          // return at ctx's end; forward on Deliver
	deliver chan struct{} // closed by Deliver
	once    sync.Once
	Entered chan struct{} // closed when the call reaches the wrapper
	Done    chan struct{} // closed when the call returns (a late call: when it ran)
}

// Wrap puts a fault-injecting wrapper in front of b.
func Wrap(b backend.Backend) *Wrapped {
	return &Wrapped{Backend: b, hang: map[string]bool{}, release: make(chan struct{}), finished: map[string]int{}}
}

func (w *Wrapped) add(r *Rule) *Rule {
	r.Entered, r.Done = make(chan struct{}), make(chan struct{})
	w.mu.Lock()
	w.rules = append(w.rules, r)
	w.mu.Unlock()
	return r
}

// DelayNext delays the next call of script by d before forwarding it; the
// delay ignores the call's context, as a request stuck in the network would.
func (w *Wrapped) DelayNext(script string, d time.Duration) *Rule {
	return w.add(&Rule{script: script, delay: d})
}

// LoseNextReply forwards the next call of script ("" = of any script) and
// then reports ErrIndeterminate instead of its result.
func (w *Wrapped) LoseNextReply(script string) *Rule {
	return w.add(&Rule{script: script, lose: true})
}

// SendLateNext makes the next call of script a request that a driver
// wrote and stopped waiting for: the call returns ErrIndeterminate as soon
// as its context ends (as go-redis does on cancellation), but reaches the
// backend only when Deliver is called, after whatever other calls ran
// meanwhile (on a server, from other connections). Done is closed once the
// late call ran; a test that arms it must Deliver and wait for Done.
func (w *Wrapped) SendLateNext(script string) *Rule {
	return w.add(&Rule{script: script, late: true, deliver: make(chan struct{})})
}

// Deliver lets a call held by SendLateNext reach the backend.
func (r *Rule) Deliver() { r.once.Do(func() { close(r.deliver) }) }

// Disarm removes the one-shot faults not yet used.
func (w *Wrapped) Disarm() {
	w.mu.Lock()
	w.rules = nil
	w.mu.Unlock()
}

// RefuseNext fails the next call of script with err without forwarding it
// (a server that refuses a command before running it, e.g. LOADING).
func (w *Wrapped) RefuseNext(script string, err error) *Rule {
	return w.add(&Rule{script: script, refuse: err})
}

// Hang makes every later call of script ("" = every script) block, without
// honouring its context, until Release.
func (w *Wrapped) Hang(script string) {
	w.mu.Lock()
	w.hang[script] = true
	w.mu.Unlock()
}

// Release ends Hang: hung calls fail with ErrNotApplied, later calls pass.
func (w *Wrapped) Release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hang = map[string]bool{}
	close(w.release)
	w.release = make(chan struct{})
}

// Partition makes every call fail at once with ErrNotApplied (on) or pass
// again (off).
func (w *Wrapped) Partition(on bool) {
	w.mu.Lock()
	w.partition = on
	w.mu.Unlock()
}

// Starts returns the calls of script started at or after since.
func (w *Wrapped) Starts(script string, since time.Time) []Start {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Start
	for _, s := range w.starts {
		if s.Script == script && !s.At.Before(since) {
			out = append(out, s)
		}
	}
	return out
}

// Finished returns how many calls of script have returned.
func (w *Wrapped) Finished(script string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.finished[script]
}

var errPartitioned = errors.New("testkit: partitioned")

// EvalScript forwards s, applying the faults armed for it.
func (w *Wrapped) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	name := s.Name()
	defer func() {
		w.mu.Lock()
		w.finished[name]++
		w.mu.Unlock()
	}()
	w.mu.Lock()
	w.starts = append(w.starts, Start{Script: name, At: time.Now()})
	if w.partition {
		w.mu.Unlock()
		return backend.Value{}, driver.NotApplied(errPartitioned)
	}
	var r *Rule
	for i, x := range w.rules {
		if x.script == name || x.script == "" {
			r = x
			w.rules = append(w.rules[:i], w.rules[i+1:]...)
			break
		}
	}
	hang, release := w.hang[name] || w.hang[""], w.release
	w.mu.Unlock()
	if hang {
		<-release
		return backend.Value{}, driver.NotApplied(errPartitioned)
	}
	if r == nil {
		return w.Backend.EvalScript(ctx, s, keys, args...)
	}
	close(r.Entered)
	if r.late {
		go func() {
			defer close(r.Done)
			<-r.deliver
			w.Backend.EvalScript(context.WithoutCancel(ctx), s, keys, args...)
		}()
		<-ctx.Done()
		return backend.Value{}, driver.Indeterminate(fmt.Errorf("testkit: sent, reply not awaited: %w", ctx.Err()))
	}
	defer close(r.Done)
	if r.refuse != nil {
		return backend.Value{}, r.refuse
	}
	if r.delay > 0 {
		time.Sleep(r.delay)
	}
	v, err := w.Backend.EvalScript(context.WithoutCancel(ctx), s, keys, args...)
	if r.lose && err == nil {
		return backend.Value{}, driver.Indeterminate(errors.New("testkit: reply lost"))
	}
	return v, err
}

// WrapHarness returns h with every backend it hands out passed through
// wrap (a decorator under test), keeping h's optional capabilities the
// backend suite uses: FakeTime (with its answer) and FlushScripts.
func WrapHarness(h Harness, wrap func(backend.Backend) backend.Backend) Harness {
	w := wrappedHarness{h: h, wrap: wrap}
	if f, ok := h.(interface{ FlushScripts(t *testing.T) }); ok {
		return flushingHarness{w, f}
	}
	return w
}

type wrappedHarness struct {
	h    Harness
	wrap func(backend.Backend) backend.Backend
}

func (w wrappedHarness) NewBackend(t *testing.T) backend.Backend { return w.wrap(w.h.NewBackend(t)) }
func (w wrappedHarness) Wait(t *testing.T, d time.Duration)      { w.h.Wait(t, d) }
func (w wrappedHarness) FakeTime() bool                          { return IsFakeTime(w.h) }

type flushingHarness struct {
	wrappedHarness
	f interface{ FlushScripts(t *testing.T) }
}

func (f flushingHarness) FlushScripts(t *testing.T) { f.f.FlushScripts(t) }
