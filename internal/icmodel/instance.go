package icmodel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Op is one step an instance takes.
type Op struct {
	Kind  string `json:"kind"` // inc get set del setmine delmine setmineif clear flush burst close rejoins
	Key   string `json:"key,omitempty"`
	N     int64  `json:"n,omitempty"`
	M     int64  `json:"m,omitempty"`     // burst: the second delta; setmineif: the slice compared with
	Fault string `json:"fault,omitempty"` // "lose-op": the op script's reply is lost; "lose-any": the next script call's
}

// MarshalJSON carries Key as bytes (JSON strings hold only UTF-8).
func (op Op) MarshalJSON() ([]byte, error) {
	type plain Op
	return json.Marshal(struct {
		plain
		Key []byte `json:"key,omitempty"`
	}{plain(op), []byte(op.Key)})
}

// UnmarshalJSON is MarshalJSON's inverse.
func (op *Op) UnmarshalJSON(b []byte) error {
	type plain Op
	var x struct {
		plain
		Key []byte `json:"key,omitempty"`
	}
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	*op = Op(x.plain)
	op.Key = string(x.Key)
	return nil
}

// Result is what an Op returned. Err is "" or an error class:
// indeterminate, notapplied, dup, closed, or "other: <message>".
type Result struct {
	Cum  int64  `json:"cum"`
	Mine int64  `json:"mine"`
	Err  string `json:"err,omitempty"`
	// burst: the second call's outcome.
	Cum2  int64  `json:"cum2,omitempty"`
	Mine2 int64  `json:"mine2,omitempty"`
	Err2  string `json:"err2,omitempty"`
	N     int64  `json:"n,omitempty"` // rejoins: how many rejoin scripts returned
}

// Instance is one instance counter under test, in this process or in a
// worker process.
type Instance interface {
	Do(op Op) Result
	// Pause cuts the instance off (calls and heartbeats fail, or the
	// process is stopped) until Resume.
	Pause()
	Resume()
	// Kill makes the instance vanish without Close (a crash).
	Kill()
	// Stop releases the instance at the end of a history.
	Stop()
}

// Spec describes an instance to start.
type Spec struct {
	Prefix, ID    string
	Lax, Remote   bool
	DeadAfter     time.Duration
	FlushInterval time.Duration
}

// Options builds the counter's options.
func (s Spec) Options() instancecounter.Options {
	return instancecounter.Options{Prefix: s.Prefix, InstanceID: s.ID, DeadAfter: s.DeadAfter, FlushInterval: s.FlushInterval}
}

// Faults are the fault hooks of a local instance beyond its wrapper; nil
// hooks fall back to the wrapper (testkit.Wrapped).
type Faults struct {
	LoseNextOp  func() // the next op script's reply is lost after it ran
	LoseNextAny func() // the next script call's, whatever it is
	Disarm      func()
}

// Local is an Instance in this process: a counter over a fault-injecting
// wrapper of its own backend.
type Local struct {
	W      *testkit.Wrapped
	c      instancecounter.Counter
	lax    *instancecounter.Lax
	faults Faults
	mu     sync.Mutex
	closed bool
}

// NewLocal starts an instance over b.
func NewLocal(b backend.Backend, spec Spec, f Faults) (*Local, error) {
	l := &Local{W: testkit.Wrap(b), faults: f}
	var err error
	if spec.Lax {
		l.lax, err = instancecounter.NewLax(l.W, spec.Options())
		l.c = l.lax
	} else {
		l.c, err = instancecounter.NewStrict(l.W, spec.Options())
	}
	if err != nil {
		return nil, err
	}
	if l.faults.LoseNextOp == nil {
		l.faults.LoseNextOp = func() { l.W.LoseNextReply(icscript.Op.Name()) }
	}
	if l.faults.LoseNextAny == nil {
		l.faults.LoseNextAny = func() { l.W.LoseNextReply("") }
	}
	disarm := l.faults.Disarm
	l.faults.Disarm = func() {
		l.W.Disarm()
		if disarm != nil {
			disarm()
		}
	}
	return l, nil
}

// Class renders an error as an error class.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, distkit.ErrDuplicateInstance):
		return "dup"
	case errors.Is(err, distkit.ErrIndeterminate):
		return "indeterminate"
	case errors.Is(err, distkit.ErrClosed) && !errors.Is(err, distkit.ErrNotApplied):
		return "closed"
	case errors.Is(err, distkit.ErrNotApplied):
		return "notapplied"
	}
	return "other: " + err.Error()
}

// Do runs op.
func (l *Local) Do(op Op) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch op.Fault {
	case "lose-op":
		l.faults.LoseNextOp()
		defer l.faults.Disarm()
	case "lose-any":
		l.faults.LoseNextAny()
		defer l.faults.Disarm()
	}
	res := func(c, m int64, err error) Result { return Result{Cum: c, Mine: m, Err: Class(err)} }
	switch op.Kind {
	case "inc":
		return res(l.c.Inc(ctx, op.Key, op.N))
	case "get":
		return res(l.c.Get(ctx, op.Key))
	case "set":
		return res(l.c.Set(ctx, op.Key, op.N))
	case "del":
		return res(l.c.Del(ctx, op.Key))
	case "setmine":
		return res(l.c.SetOnInstance(ctx, op.Key, op.N))
	case "delmine":
		return res(l.c.DelOnInstance(ctx, op.Key))
	case "setmineif":
		return res(l.c.SetOnInstanceIf(ctx, op.Key, distkit.Eq(op.M), op.N))
	case "clear":
		return Result{Err: Class(l.c.Clear(ctx))}
	case "flush":
		if l.lax == nil {
			return Result{}
		}
		return Result{Err: Class(l.lax.Flush(ctx))}
	case "burst":
		// The first call is held back before it reaches the server, the
		// second overtakes it: the replies come in another order than the
		// calls executed.
		slow := l.W.DelayNext(icscript.Op.Name(), 30*time.Millisecond)
		var r1 Result
		done := make(chan struct{})
		go func() { r1 = res(l.c.Inc(ctx, op.Key, op.N)); close(done) }()
		select {
		case <-slow.Entered:
		case <-done: // it failed before reaching the backend
		}
		r2 := res(l.c.Inc(ctx, op.Key, op.M))
		<-done
		l.W.Disarm()
		return Result{Cum: r1.Cum, Mine: r1.Mine, Err: r1.Err, Cum2: r2.Cum, Mine2: r2.Mine, Err2: r2.Err}
	case "close":
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		return Result{Err: Class(l.c.Close(ctx))}
	case "rejoins":
		return Result{N: int64(l.W.Finished(icscript.Rejoin.Name()))}
	}
	return Result{Err: "other: unknown op " + op.Kind}
}

// Pause partitions the instance: every call fails, not applied.
func (l *Local) Pause() { l.W.Partition(true) }

// Resume ends Pause.
func (l *Local) Resume() { l.W.Partition(false) }

// Kill partitions the instance for good: to the server it is gone.
func (l *Local) Kill() { l.W.Partition(true) }

// Close closes the counter within ctx.
func (l *Local) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.c.Close(ctx)
}

// Stop closes the counter (its goroutine ends) unless it was closed.
func (l *Local) Stop() {
	l.mu.Lock()
	closed := l.closed
	l.closed = true
	l.mu.Unlock()
	if !closed {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.c.Close(ctx)
		cancel()
	}
}

// Serve runs a worker process's instance: it prints READY, then answers
// one JSON Op per input line with one JSON Result line, until its input
// ends; then it closes the counter.
func Serve(b backend.Backend, spec Spec, in io.Reader, out io.Writer) error {
	l, err := NewLocal(b, spec, Faults{})
	if err != nil {
		return err
	}
	defer l.Stop()
	fmt.Fprintln(out, "READY")
	sc := bufio.NewScanner(in)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var op Op
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			return err
		}
		if err := enc.Encode(l.Do(op)); err != nil {
			return err
		}
	}
	return sc.Err()
}
