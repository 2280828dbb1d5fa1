package processtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/faultproxy"
	"github.com/distkit-go/distkit/internal/icmodel"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/redistest"
)

// RunInstanceModel runs the model-based test of the instance counters
// (internal/icmodel) on real Redis: a dedicated redis-server without
// persistence, restarted for data loss, each in-process instance behind
// its own fault proxy whose reply drops make calls indeterminate; and the
// Cluster, where data loss deletes the prefix's keys. Both have instances
// in worker processes (paused with SIGSTOP, killed with SIGKILL) next to
// goroutines.
func RunInstanceModel(t *testing.T, env *redistest.Env, connect redistest.Connect, server, cluster icmodel.Config) {
	t.Run("Server", func(t *testing.T) {
		redistest.Require(t)
		s, err := redistest.Start(redistest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		icmodel.Run(t, &modelEnv{name: "redis-server", srv: s, addrs: []string{s.Addr}, connect: connect}, server)
	})
	t.Run("Cluster", func(t *testing.T) {
		c := env.Cluster(t)
		icmodel.Run(t, &modelEnv{name: "cluster", cluster: true, addrs: c.Addrs(), connect: connect}, cluster)
	})
	t.Run("CloseServerStopped", func(t *testing.T) { closePausedServer(t, connect) })
}

type modelEnv struct {
	name    string
	srv     *redistest.Server // standalone: restarted to lose data
	cluster bool
	addrs   []string
	connect redistest.Connect
}

func (e *modelEnv) Name() string    { return e.name }
func (e *modelEnv) CanRemote() bool { return true }

func (e *modelEnv) Backend(t *testing.T) backend.Backend {
	return open(t, e.connect, redistest.Target{Addrs: e.addrs, Cluster: e.cluster})
}

// open connects a backend that t's cleanup closes (the driver's own
// client, besides the user's client connect closes).
func open(t *testing.T, connect redistest.Connect, target redistest.Target) backend.Backend {
	b := connect(t, target)
	t.Cleanup(func() { b.Close() })
	return b
}

func (e *modelEnv) Start(t *testing.T, spec icmodel.Spec) icmodel.Instance {
	if spec.Remote {
		return startRemote(t, workerSpec{Mode: "icmodel", Addrs: e.addrs, Cluster: e.cluster, Prefix: spec.Prefix,
			ID: spec.ID, Lax: spec.Lax, DeadAfter: spec.DeadAfter, FlushInterval: spec.FlushInterval})
	}
	var f icmodel.Faults
	var b backend.Backend
	if e.srv != nil {
		p, err := faultproxy.Start(e.srv.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		b = open(t, e.connect, redistest.Target{Addrs: []string{p.Addr}})
		f = icmodel.Faults{
			LoseNextOp:  func() { p.DropReplyTo(icscript.Op.SHA()) }, // the op script's EVALSHA
			LoseNextAny: func() { p.DropReplyTo("EVAL") },            // any script call
			Disarm:      p.Restore,
		}
	} else {
		b = e.Backend(t)
	}
	l, err := icmodel.NewLocal(b, spec, f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// wipeScript deletes every key it is given (all in one slot).
var wipeScript = driver.NewScript("processtest-wipe", `return redis.call('DEL', unpack(KEYS))`,
	func(st driver.Store, keys, _ []string) (backend.Value, error) {
		return backend.Int(int64(st.Del(keys...))), nil
	})

func (e *modelEnv) LoseData(t *testing.T, prefix string, ids []string) {
	if e.srv != nil {
		if err := e.srv.Restart(); err != nil { // no persistence: it comes back empty
			t.Fatal(err)
		}
		return
	}
	keys := keyspace.InstanceCounter(prefix).List()
	for _, id := range ids {
		keys = append(keys, keyspace.InstanceCounterMarker(prefix, id))
	}
	b := e.Backend(t)
	for try := 0; ; try++ {
		ctx, cancel := ctxTimeout(5 * time.Second)
		_, err := b.EvalScript(ctx, wipeScript, keys)
		cancel()
		if err == nil {
			return
		}
		if try == 20 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remote is an instance in a worker process: one JSON Op per line in, one
// JSON Result per line out.
type remote struct {
	t     *testing.T
	w     *worker
	enc   *json.Encoder
	lines chan string
	mu    sync.Mutex
	dead  bool
}

func startRemote(t *testing.T, spec workerSpec) *remote {
	w := startWorker(t, spec)
	r := &remote{t: t, w: w, enc: json.NewEncoder(w.stdin), lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(w.stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	if l := r.next(); l != "READY" {
		t.Fatalf("worker %s: %q: %s", spec.ID, l, w.stderr.String())
	}
	return r
}

func (r *remote) next() string {
	select {
	case l, ok := <-r.lines:
		if !ok {
			r.t.Fatalf("worker ended: %s", r.w.stderr.String())
		}
		return l
	case <-time.After(30 * time.Second):
		r.t.Fatalf("worker silent for 30s: %s", r.w.stderr.String())
	}
	return ""
}

func (r *remote) Do(op icmodel.Op) icmodel.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return icmodel.Result{Err: "notapplied"}
	}
	if err := r.enc.Encode(op); err != nil {
		r.t.Fatalf("worker: %v: %s", err, r.w.stderr.String())
	}
	var res icmodel.Result
	if err := json.Unmarshal([]byte(r.next()), &res); err != nil {
		r.t.Fatalf("worker reply: %v", err)
	}
	return res
}

func (r *remote) signal(s syscall.Signal) {
	if err := r.w.cmd.Process.Signal(s); err != nil {
		r.t.Fatalf("signal %v: %v", s, err)
	}
}

// Pause stops the process (SIGSTOP): no heartbeat, no call.
func (r *remote) Pause()  { r.signal(syscall.SIGSTOP) }
func (r *remote) Resume() { r.signal(syscall.SIGCONT) }

// Kill is kill -9.
func (r *remote) Kill() {
	r.mu.Lock()
	r.dead = true
	r.mu.Unlock()
	r.w.cmd.Process.Kill()
}

// Stop ends the worker: closing its input makes it close its counter and
// exit.
func (r *remote) Stop() {
	r.w.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- r.w.cmd.Wait() }()
	select {
	case err := <-done:
		r.mu.Lock()
		dead := r.dead
		r.mu.Unlock()
		if err != nil && !dead && !strings.Contains(err.Error(), "signal") {
			r.t.Errorf("worker: %v: %s", err, r.w.stderr.String())
		}
	case <-time.After(15 * time.Second):
		r.w.cmd.Process.Kill()
		r.t.Errorf("worker did not exit: %s", r.w.stderr.String())
	}
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// closePausedServer: with the server stopped (SIGSTOP: connections open,
// nothing answers), an instance counter's Close returns within its
// context, Strict and Lax alike.
func closePausedServer(t *testing.T, connect redistest.Connect) {
	redistest.Require(t)
	s, err := redistest.Start(redistest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	for _, lax := range []bool{false, true} {
		b := open(t, connect, redistest.Target{Addrs: []string{s.Addr}})
		l, err := icmodel.NewLocal(b, icmodel.Spec{Prefix: "close-paused", ID: fmt.Sprint("lax=", lax), Lax: lax,
			DeadAfter: 300 * time.Millisecond, FlushInterval: time.Millisecond}, icmodel.Faults{})
		if err != nil {
			t.Fatal(err)
		}
		if res := l.Do(icmodel.Op{Kind: "inc", Key: "k", N: 1}); res.Err != "" {
			t.Fatal(res.Err)
		}
		if err := s.Pause(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // a heartbeat and flushes are waiting on the server now
		ctx, cancel := ctxTimeout(100 * time.Millisecond)
		start := time.Now()
		err = l.Close(ctx)
		d := time.Since(start)
		cancel()
		s.Resume()
		if d > 250*time.Millisecond {
			t.Errorf("lax=%v: Close took %v with a 100ms context and the server stopped", lax, d)
		}
		if err == nil {
			t.Errorf("lax=%v: Close reported success with the server stopped", lax)
		}
		t.Logf("lax=%v: Close returned after %v: %v", lax, d.Round(time.Millisecond), err)
	}
}
