package icmodel

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/testkit"
)

// Env is where a history runs: a server and a way to start instances on it.
type Env interface {
	Name() string
	// Start starts an instance; Spec.Remote asks for a worker process,
	// which only Envs with CanRemote honour.
	Start(t *testing.T, spec Spec) Instance
	CanRemote() bool
	// Backend returns a client of this process for snapshots.
	Backend(t *testing.T) backend.Backend
	// LoseData makes the server forget every key (a restart without
	// persistence, FLUSHALL); ids are the instance ids used so far.
	LoseData(t *testing.T, prefix string, ids []string)
}

// Config sizes the histories.
type Config struct {
	Seeds     []uint64
	Steps     int // per history
	Local     int // instances in this process
	Remote    int // instances in worker processes (when the Env can)
	CheckEach int // quiescent check every so many steps (and at the end)
	DeadAfter time.Duration
}

// Stats are the figures of a run.
type Stats struct {
	Histories, Steps, Ops, OpChecks, Snapshots     int
	Indeterminate, Pauses, Comebacks, Rejoins      int
	DataLosses, Kills, Closes, Bursts, DupsRefused int
}

func (s Stats) String() string {
	return fmt.Sprintf("%d histories, %d steps, %d operations (%d replies checked against the model, %d quiescent snapshots checked); "+
		"%d indeterminate, %d pauses past DeadAfter (%d comebacks), %d rejoin scripts, %d data losses, %d kills, %d closes, %d bursts, %d duplicate ids refused",
		s.Histories, s.Steps, s.Ops, s.OpChecks, s.Snapshots, s.Indeterminate, s.Pauses, s.Comebacks, s.Rejoins,
		s.DataLosses, s.Kills, s.Closes, s.Bursts, s.DupsRefused)
}

// Add sums figures.
func (s *Stats) Add(o Stats) {
	s.Histories += o.Histories
	s.Steps += o.Steps
	s.Ops += o.Ops
	s.OpChecks += o.OpChecks
	s.Snapshots += o.Snapshots
	s.Indeterminate += o.Indeterminate
	s.Pauses += o.Pauses
	s.Comebacks += o.Comebacks
	s.Rejoins += o.Rejoins
	s.DataLosses += o.DataLosses
	s.Kills += o.Kills
	s.Closes += o.Closes
	s.Bursts += o.Bursts
	s.DupsRefused += o.DupsRefused
}

// Keys are the counters of every history: plain, with a separator, and
// with bytes 0xFF/0x01 right after it in composed members.
var Keys = []string{"k", "user:42", "\xff\x01"}

type status int

const (
	live status = iota
	paused
	dead
)

type inst struct {
	idx      int
	id       string
	lax      bool
	remote   bool
	h        Instance
	st       status
	since    time.Time // paused or dead since
	resumeAt int       // step at which a paused instance resumes
	lastOp   time.Time // last successful script (its registration was refreshed)
	// flushFirst: the comeback's first action is a flush (laxComeback).
	flushFirst bool
}

type runner struct {
	t         *testing.T
	env       Env
	cfg       Config
	seed      uint64
	rng       *rand.Rand
	prefix    string
	m         *model
	insts     []*inst
	unsettled bool      // the server lost data since the last quiescent check
	lostAt    time.Time // when it last did
	step      int
	log       []string
	stats     Stats
	admin     backend.Backend
}

// Run runs one history per seed on env and returns the figures. A failure
// names the seed (rerun it with the same Config) and the last steps.
func Run(t *testing.T, env Env, cfg Config) Stats {
	var total Stats
	for _, seed := range cfg.Seeds {
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := &runner{t: t, env: env, cfg: cfg, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x1c)),
				prefix: testkit.Prefix(t), m: newModel(Keys)}
			r.admin = env.Backend(t)
			defer r.stop()
			r.run()
			r.stop()
			total.Add(r.stats)
		})
		if !ok {
			break
		}
	}
	t.Logf("%s: %s", env.Name(), total)
	return total
}

func (r *runner) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf("step %d: ", r.step)+fmt.Sprintf(format, args...))
	if len(r.log) > 60 {
		r.log = r.log[1:]
	}
}

func (r *runner) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("seed %d (%s), step %d: %s\nlast steps:\n%s", r.seed, r.env.Name(), r.step,
		fmt.Sprintf(format, args...), strings.Join(r.log, "\n"))
}

func (r *runner) stop() {
	insts := r.insts
	r.insts = nil
	for _, in := range insts {
		if in.st != dead {
			r.stats.Rejoins += int(in.h.Do(Op{Kind: "rejoins"}).N)
		}
		in.h.Stop()
	}
}

func (r *runner) start(id string, lax, remote bool) *inst {
	in := &inst{idx: len(r.insts), id: id, lax: lax, remote: remote}
	in.h = r.env.Start(r.t, Spec{Prefix: r.prefix, ID: id, Lax: lax, Remote: remote, DeadAfter: r.cfg.DeadAfter,
		FlushInterval: 5 * time.Millisecond})
	r.insts = append(r.insts, in)
	r.logf("start %d id=%q lax=%v remote=%v", in.idx, id, lax, remote)
	return in
}

func (r *runner) run() {
	n := 0
	for i := range r.cfg.Local {
		r.start(fmt.Sprintf("\xff%d:i", n), i%2 == 1, false)
		n++
	}
	if r.env.CanRemote() {
		for i := range r.cfg.Remote {
			r.start(fmt.Sprintf("w%d", n), i%2 == 1, true)
			n++
		}
	}
	for r.step = 0; r.step < r.cfg.Steps; r.step++ {
		r.stats.Steps++
		r.resumeDue(false)
		if k := r.forced(); k >= 0 {
			r.forcedStep(k)
		} else {
			r.randomStep()
		}
		if r.cfg.CheckEach > 0 && r.step%r.cfg.CheckEach == r.cfg.CheckEach-1 {
			r.quiesce()
		}
	}
	r.quiesce()
	r.stats.Histories++
}

func (r *runner) key() string { return Keys[r.rng.IntN(len(Keys))] }

func (r *runner) delta() int64 {
	d := r.rng.Int64N(19) - 9
	if d == 0 {
		d = 1
	}
	return d
}

// pick returns a random instance with state st (and, with lax, only Lax
// ones; with strict, only Strict), or nil.
func (r *runner) pick(st status, filter func(*inst) bool) *inst {
	var c []*inst
	for _, in := range r.insts {
		if in.st == st && (filter == nil || filter(in)) {
			c = append(c, in)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[r.rng.IntN(len(c))]
}

func (r *runner) randomStep() {
	x := r.rng.IntN(100)
	switch {
	case x < 30:
		if in := r.pick(paused, func(in *inst) bool { return in.lax && !in.remote }); in != nil && x < 4 {
			r.op(in, Op{Kind: "inc", Key: r.key(), N: r.delta()}) // counted locally while cut off
			return
		}
		r.randomOp("inc", "")
	case x < 40:
		r.randomOp("get", "")
	case x < 44:
		r.randomOp("set", "")
	case x < 48:
		r.randomOp("del", "")
	case x < 54:
		r.randomOp("setmine", "")
	case x < 57:
		r.randomOp("delmine", "")
	case x < 60:
		r.randomOp("setmineif", "")
	case x < 64:
		if in := r.pick(live, func(in *inst) bool { return in.lax }); in != nil {
			r.op(in, Op{Kind: "flush"})
		}
	case x < 72:
		kinds := []string{"inc", "set", "del", "setmine", "get"}
		r.randomOp(kinds[r.rng.IntN(len(kinds))], "lose-op")
	case x < 76:
		kinds := []string{"inc", "get", "setmine"}
		r.randomOp(kinds[r.rng.IntN(len(kinds))], "lose-any")
	case x < 82:
		r.burst(false)
	case x < 88:
		if in := r.pick(live, nil); in != nil {
			r.pause(in)
		}
	case x < 91:
		// One data loss at a time: the instances that know of a wipe
		// rejoin before the server loses its data again (see the package
		// doc of instancecounter); a quiescent check settles that.
		switch {
		case r.unsettled:
			r.randomOp("inc", "")
		case r.rng.IntN(2) == 0:
			r.loseData()
		default:
			kind := wipeSet
			if r.rng.IntN(3) == 0 {
				kind = wipeClear + r.rng.IntN(2)
			}
			r.wipeThenLose(kind)
		}
	case x < 94:
		r.kill(false)
	case x < 96:
		r.closeReopen()
	default:
		r.randomOp("inc", "")
	}
}

// randomOp runs kind on a random live instance.
func (r *runner) randomOp(kind, fault string) {
	in := r.pick(live, nil)
	if in == nil {
		return
	}
	op := Op{Kind: kind, Key: r.key(), N: r.delta(), Fault: fault}
	switch kind {
	case "set", "setmine":
		op.N = r.rng.Int64N(41) - 10
	case "setmineif":
		w := r.m.worlds[op.Key]
		op.M = w[r.rng.IntN(len(w))][in.idx] // usually matches
		if r.rng.IntN(3) == 0 {
			op.M++
		}
	}
	r.op(in, op)
}

// flushAll lands every reachable Lax instance's pending deltas, so that a
// global operation comes after them.
func (r *runner) flushAll() {
	for _, in := range r.insts {
		if in.st == live && in.lax {
			r.mustFlush(in)
		}
	}
}

func (r *runner) mustFlush(in *inst) {
	for try := 0; ; try++ {
		res := in.h.Do(Op{Kind: "flush"})
		r.stats.Ops++
		if res.Err == "" {
			in.lastOp = time.Now()
			if err := r.m.land(in.idx, ""); err != nil {
				r.fail("%v", err)
			}
			return
		}
		if try == 40 {
			r.fail("instance %d: flush keeps failing: %s", in.idx, res.Err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// op runs op on in and folds its outcome into the model, checking the
// reply against it unless the server lost data since the last check.
func (r *runner) op(in *inst, op Op) {
	global := op.Kind == "set" || op.Kind == "del" || op.Kind == "clear"
	if global {
		r.flushAll()
	}
	r.fold(in, op, in.h.Do(op))
}

// fold folds op's outcome res into the model.
func (r *runner) fold(in *inst, op Op, res Result) {
	r.stats.Ops++
	r.logf("%d %s %q n=%d m=%d fault=%q → (%d, %d) %s", in.idx, op.Kind, op.Key, op.N, op.M, op.Fault, res.Cum, res.Mine, res.Err)
	i, key := in.idx, op.Key
	if in.lax && op.Kind == "inc" {
		if res.Err == "" && in.st != dead {
			r.m.addPending(i, key, op.N)
		} else if res.Err != "" && res.Err != "closed" {
			r.fail("Lax inc: %s", res.Err)
		}
		return
	}
	if op.Kind == "flush" {
		if res.Err == "" {
			in.lastOp = time.Now()
			if err := r.m.land(i, ""); err != nil {
				r.fail("%v", err)
			}
		}
		return
	}
	if in.lax && in.st != dead {
		// A Lax call flushes first, then runs: the pending deltas land
		// before it (Get: those of its key). Whether that flush got
		// through or not, they land exactly once and nothing global comes
		// between (flushAll runs before every Set and Del), so landing
		// them now is what the server ends up with.
		land := ""
		if op.Kind == "get" {
			land = key
		}
		if err := r.m.land(i, land); err != nil {
			r.fail("%v", err)
		}
	}
	maybe := false
	switch {
	case res.Err == "":
		in.lastOp = time.Now()
	case res.Err == "indeterminate":
		// Lax: the flush before the operation may be what failed; its
		// deltas stay pending (they land once, later), and the operation
		// may or may not have run.
		r.stats.Indeterminate++
		maybe = true
	case res.Err == "notapplied" || res.Err == "dup":
		return
	default:
		r.fail("instance %d %s %q: %s", i, op.Kind, key, res.Err)
	}
	if op.Kind == "get" {
		if !maybe {
			r.check(in, key, res.Mine)
		}
		return
	}
	if op.Kind == "clear" {
		for _, k := range Keys {
			if err := r.m.apply(k, maybe, func(w world) {
				for j := range w {
					w[j] = 0
				}
			}); err != nil {
				r.fail("%v", err)
			}
			if maybe {
				r.resolve(in, k)
			}
		}
		return
	}
	if op.Kind == "del" && !maybe {
		r.check(in, key, res.Mine) // the values before
	}
	if op.Kind == "setmineif" && !maybe {
		// Whether it matched depends on the slice, which the model may not
		// pin down yet: fold both outcomes and let the reply decide (after
		// a data loss, not before the next quiescent check: until the
		// instances that knew of a wipe rejoined, the slice compared with
		// may be one the wipe had taken, back for now).
		if err := r.m.apply(key, true, func(w world) {
			if w[i] == op.M {
				w[i] = op.N
			}
		}); err != nil {
			r.fail("%v", err)
		}
		r.check(in, key, res.Mine)
		return
	}
	err := r.m.apply(key, maybe, func(w world) {
		switch op.Kind {
		case "inc":
			w[i] += op.N
		case "set":
			for j := range w {
				w[j] = 0
			}
			w[i] = op.N
		case "del":
			for j := range w {
				w[j] = 0
			}
		case "setmine":
			w[i] = op.N
		case "delmine":
			w[i] = 0
		case "setmineif":
			if w[i] == op.M {
				w[i] = op.N
			}
		}
	})
	if err != nil {
		r.fail("%v", err)
	}
	if maybe {
		r.resolve(in, key)
		return
	}
	if op.Kind != "del" {
		r.check(in, key, res.Mine)
	}
	if op.Kind == "set" && res.Cum != op.N {
		r.fail("instance %d set %q %d: cumulative %d", i, key, op.N, res.Cum)
	}
}

// check compares a reply's slice with the model (not while the server's
// data loss may still be settling).
func (r *runner) check(in *inst, key string, mine int64) {
	if r.unsettled {
		return
	}
	r.stats.OpChecks++
	if err := r.m.observe(key, in.idx, mine); err != nil {
		r.fail("%v", err)
	}
}

// resolve reads in's slice of key after a call with an unknown outcome,
// which tells the model whether it ran.
func (r *runner) resolve(in *inst, key string) {
	for try := 0; ; try++ {
		res := in.h.Do(Op{Kind: "get", Key: key})
		r.stats.Ops++
		r.logf("%d resolve %q → (%d, %d) %s", in.idx, key, res.Cum, res.Mine, res.Err)
		if res.Err == "" {
			in.lastOp = time.Now()
			if in.lax {
				if err := r.m.land(in.idx, key); err != nil {
					r.fail("%v", err)
				}
			}
			if r.unsettled {
				// The model cannot tell yet; it keeps every possibility.
				return
			}
			r.check(in, key, res.Mine)
			return
		}
		if try == 40 {
			r.fail("instance %d: cannot read %q after an unknown outcome: %s", in.idx, key, res.Err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// burst: two concurrent increments of one key by one Strict instance, the
// first held back so that the second executes first; often (with pause,
// always) followed by a pause past DeadAfter, so that the instance comes
// back with what it remembers of that key.
func (r *runner) burst(pause bool) {
	in := r.pick(live, func(in *inst) bool { return !in.lax })
	if in == nil {
		return
	}
	key, d1, d2 := r.key(), r.delta(), r.delta()
	res := in.h.Do(Op{Kind: "burst", Key: key, N: d1, M: d2})
	r.stats.Ops += 2
	r.stats.Bursts++
	r.logf("%d burst %q %d %d → (%d, %d) %s / (%d, %d) %s", in.idx, key, d1, d2, res.Cum, res.Mine, res.Err, res.Cum2, res.Mine2, res.Err2)
	unknown := false
	for _, x := range []struct {
		d   int64
		err string
	}{{d1, res.Err}, {d2, res.Err2}} {
		switch x.err {
		case "":
			if err := r.m.apply(key, false, func(w world) { w[in.idx] += x.d }); err != nil {
				r.fail("%v", err)
			}
		case "indeterminate":
			unknown = true
			if err := r.m.apply(key, true, func(w world) { w[in.idx] += x.d }); err != nil {
				r.fail("%v", err)
			}
		case "notapplied":
		default:
			r.fail("burst: %s", x.err)
		}
	}
	if unknown {
		r.resolve(in, key)
	}
	in.lastOp = time.Now()
	if pause || r.rng.IntN(2) == 0 {
		r.pause(in)
	}
}

func (r *runner) pause(in *inst) {
	if in.lax {
		r.mustFlush(in) // what it counts while cut off lands after the comeback
	}
	in.h.Pause()
	in.st, in.since = paused, time.Now()
	in.resumeAt = r.step + 1 + r.rng.IntN(6)
	r.stats.Pauses++
	r.logf("%d paused", in.idx)
}

// resumeDue resumes the paused instances whose time has come (all with
// all), once DeadAfter and a margin have passed, so that they were
// declared dead. The comeback's first action is an operation, a flush or
// a heartbeat.
func (r *runner) resumeDue(all bool) {
	for _, in := range r.insts {
		if in.st != paused || (!all && r.step < in.resumeAt) {
			continue
		}
		if d := r.cfg.DeadAfter + 150*time.Millisecond - time.Since(in.since); d > 0 {
			time.Sleep(d)
		}
		in.h.Resume()
		in.st = live
		r.stats.Comebacks++
		first := r.rng.IntN(3)
		if in.flushFirst {
			first, in.flushFirst = 1, false
		}
		r.logf("%d resumed, first action %s", in.idx, []string{"op", "flush", "heartbeat"}[first])
		if all {
			continue
		}
		switch {
		case first == 1 && in.lax:
			r.op(in, Op{Kind: "flush"})
		case first == 2:
			time.Sleep(r.cfg.DeadAfter/3 + 50*time.Millisecond)
		default:
			kinds := []string{"inc", "get", "setmine"}
			r.op(in, Op{Kind: kinds[r.rng.IntN(len(kinds))], Key: r.key(), N: r.delta()})
		}
	}
}

func (r *runner) ids() []string {
	var ids []string
	for _, in := range r.insts {
		ids = append(ids, in.id)
	}
	return ids
}

func (r *runner) loseData() {
	r.env.LoseData(r.t, r.prefix, r.ids())
	r.unsettled, r.lostAt = true, time.Now()
	r.stats.DataLosses++
	r.logf("the server lost its data")
}

// The kinds of wipeThenLose.
const (
	wipeSet      = iota // a Set of the key
	wipeClear           // a Clear by an instance that knows the keys
	wipeClearNew        // a Clear by a new instance, which remembers no key
)

// forcedSteps are the kinds of forcedStep: the three of wipeThenLose,
// then a burst followed by a pause past DeadAfter, a Lax comeback through
// a flush (laxComeback), a crash and a restart with the same id.
const forcedSteps = 6

// forced returns the kind of step forced at this step, or -1. Random
// steps meet the rare scenarios too seldom for short seeds; so every
// history of at least 5*forcedSteps steps has each of them once, at
// fifths of the history, in an order that depends on the seed.
func (r *runner) forced() int {
	n := r.cfg.Steps / (forcedSteps + 1)
	if n < 5 || r.step == 0 || r.step%n != 0 || r.step/n > forcedSteps {
		return -1
	}
	return int((r.seed + uint64(r.step/n)) % forcedSteps)
}

// forcedStep runs a scenario that catches a bug the random steps rarely
// reach: a wipe forgotten through data loss (kinds wipeSet, wipeClear,
// wipeClearNew); a comeback that re-contributes a slice recorded from the
// call that replied last instead of the one that executed last (a burst);
// a comeback through a flush that brings back only the flushed keys
// (laxComeback); a second live instance with the same id (a crash and an
// immediate restart).
func (r *runner) forcedStep(kind int) {
	switch kind {
	case wipeSet, wipeClear, wipeClearNew:
		if r.unsettled { // one data loss at a time
			r.quiesce()
		}
		r.wipeThenLose(kind)
		r.quiesce() // settled at once, so the replies after it are checked again
	case 3:
		r.burst(true)
	case 4:
		r.laxComeback()
	default:
		r.kill(true)
	}
}

// laxComeback: a Lax instance with slices of two keys is cut off past
// DeadAfter, counts a third key meanwhile, and comes back through the
// flush of that key: its rejoin must bring back every slice, not only
// the flushed one.
func (r *runner) laxComeback() {
	in := r.pick(live, func(in *inst) bool { return in.lax && !in.remote })
	if in == nil {
		return
	}
	for _, k := range Keys[:2] {
		r.op(in, Op{Kind: "inc", Key: k, N: r.delta()})
	}
	r.pause(in) // flushes first
	r.op(in, Op{Kind: "inc", Key: Keys[2], N: r.delta()})
	in.flushFirst = true
}

// wipeThenLose: a Set or a Clear wipes slices the other instances still
// remember, then the server loses its data, and one of those instances
// rejoins first, before the one that knows of the wipe.
func (r *runner) wipeThenLose(kind int) {
	in := r.pick(live, nil)
	if in == nil {
		return
	}
	key := r.key()
	// Another instance holds a slice of key for the wipe to take: the one
	// that comes back first after the loss and would bring it back.
	other := r.pick(live, func(o *inst) bool { return o != in })
	if other != nil {
		r.op(other, Op{Kind: "inc", Key: key, N: r.delta()})
	}
	if kind != wipeSet {
		if kind == wipeClearNew {
			// Only the Clear's stamp it reports on its rejoin carries the
			// wipe through the loss (the per-key epochs carry none).
			in = r.start(fmt.Sprintf("c%d", len(r.insts)), in.lax, false)
		}
		r.op(in, Op{Kind: "clear"})
	} else {
		r.op(in, Op{Kind: "set", Key: key, N: r.rng.Int64N(41) - 10})
	}
	r.loseData()
	if other != nil {
		r.op(other, Op{Kind: "get", Key: Keys[(slices.Index(Keys, key)+1)%len(Keys)]})
	}
}

// kill crashes an instance right after a call (its registration is
// fresh) and starts another: with the same id (always with sameID), which
// must be refused while the dead one's registration lasts, or with a new
// one.
func (r *runner) kill(sameID bool) {
	in := r.pick(live, nil)
	if in == nil {
		return
	}
	r.op(in, Op{Kind: "get", Key: r.key()})
	if in.lax {
		r.mustFlush(in)
	}
	fresh := in.lastOp
	in.h.Kill()
	in.st, in.since = dead, time.Now()
	r.stats.Kills++
	r.logf("%d killed", in.idx)
	id := fmt.Sprintf("n%d", len(r.insts))
	same := sameID || r.rng.IntN(2) == 0
	if same {
		id = in.id
	}
	next := r.start(id, in.lax, in.remote)
	if !same {
		return
	}
	res := next.h.Do(Op{Kind: "get", Key: Keys[0]})
	r.stats.Ops++
	r.logf("%d get as the dead one's namesake → %s", next.idx, res.Err)
	switch {
	case res.Err == "dup":
		r.stats.DupsRefused++
	case time.Since(fresh) < r.cfg.DeadAfter/2 && fresh.After(r.lostAt):
		is, err := inspect.ReadInstances(context.Background(), r.admin, r.prefix)
		r.fail("instance %d with the id of instance %d, dead %v after its last call: %+v; want dup (registered: %+v %v)",
			next.idx, in.idx, time.Since(fresh), res, is, err)
	}
	// Wait until the dead one's registration lapsed and someone removed it.
	if d := r.cfg.DeadAfter + 150*time.Millisecond - time.Since(fresh); d > 0 {
		time.Sleep(d)
	}
}

// closeReopen closes an instance (its slices leave at once) and opens a
// new one with the same id, which may register at once.
func (r *runner) closeReopen() {
	in := r.pick(live, nil)
	if in == nil {
		return
	}
	var res Result
	for try := 0; ; try++ { // Close may be called again when its I/O failed
		res = in.h.Do(Op{Kind: "close"})
		r.stats.Ops++
		r.logf("%d close → %s", in.idx, res.Err)
		if res.Err == "" {
			break
		}
		if try == 10 {
			r.fail("instance %d: close: %s", in.idx, res.Err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	r.stats.Rejoins += int(in.h.Do(Op{Kind: "rejoins"}).N)
	in.st, in.since = dead, time.Time{}
	r.stats.Closes++
	next := r.start(in.id, in.lax, in.remote)
	op := Op{Kind: "setmine", Key: r.key(), N: r.delta()}
	res = next.h.Do(op)
	if res.Err == "dup" {
		r.fail("instance %d, reopened with the id of closed instance %d: refused as a duplicate", next.idx, in.idx)
	}
	r.fold(next, op, res)
}

// quiesce ends every fault, waits for the dead to be removed and the
// living to be registered, lands every Lax delta and checks a snapshot of
// every key against the model.
func (r *runner) quiesce() {
	r.resumeDue(true)
	for _, in := range r.insts {
		if in.st == dead && !in.since.IsZero() {
			if d := r.cfg.DeadAfter + 150*time.Millisecond - time.Since(in.since); d > 0 {
				time.Sleep(d)
			}
		}
	}
	r.flushAll()
	var alive []int
	byID := map[string]*inst{}
	for _, in := range r.insts {
		if in.st == live {
			alive = append(alive, in.idx)
			byID[in.id] = in
			for try := 0; ; try++ { // an operation brings an instance back if it is not registered
				res := in.h.Do(Op{Kind: "get", Key: Keys[0]})
				r.stats.Ops++
				if res.Err == "" {
					break
				}
				if try == 40 {
					r.fail("instance %d does not answer: %s", in.idx, res.Err)
				}
				time.Sleep(25 * time.Millisecond)
			}
		}
	}
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ics, _, err := inspect.ReadInstanceCounters(ctx, r.admin, r.prefix, Keys)
		if err != nil {
			if time.Now().After(deadline) {
				r.fail("snapshot: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		settled, msg := true, ""
		for _, ic := range ics {
			var sum int64
			for _, s := range ic.Slices {
				sum += s.Value
				in := byID[s.Instance]
				switch {
				case in != nil && !s.Alive:
					settled, msg = false, fmt.Sprintf("%q: live instance %d not registered", ic.Key, in.idx)
				case in == nil && s.Alive:
					r.fail("%q: a slice of %q, which is no live instance, counts: %+v", ic.Key, s.Instance, ic)
				case in == nil:
					// A dead instance's slice must leave with the next
					// script of anyone (heartbeats run every DeadAfter/3).
					settled, msg = false, fmt.Sprintf("%q: the slice of dead instance %q was not removed: %+v", ic.Key, s.Instance, ic)
				}
			}
			if sum != ic.Stored {
				r.fail("%q: stored cumulative %d, but the stored slices sum to %d: %+v", ic.Key, ic.Stored, sum, ic)
			}
		}
		if !settled {
			if time.Now().After(deadline) {
				r.fail("not settled within 10s: %s", msg)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, ic := range ics {
			slice := map[int]int64{}
			for _, s := range ic.Slices {
				if in := byID[s.Instance]; in != nil {
					slice[in.idx] = s.Value
				}
			}
			if err := r.m.check(ic.Key, alive, slice, ic.Stored); err != nil {
				r.fail("quiescent check: %v", err)
			}
			// Every instance's own view agrees with the server's.
			for _, i := range alive {
				in := r.insts[i]
				res := in.h.Do(Op{Kind: "get", Key: ic.Key})
				r.stats.Ops++
				// A connection the server's restart broke may fail a read
				// or two: retry it (a Get changes nothing).
				for try := 0; (res.Err == "indeterminate" || res.Err == "notapplied") && try < 40; try++ {
					time.Sleep(25 * time.Millisecond)
					res = in.h.Do(Op{Kind: "get", Key: ic.Key})
					r.stats.Ops++
				}
				if res.Err != "" || res.Mine != slice[i] || res.Cum != ic.Stored {
					r.fail("instance %d's Get of %q: (%d, %d) %s; the snapshot has (%d, %d)", i, ic.Key, res.Cum, res.Mine, res.Err, ic.Stored, slice[i])
				}
			}
		}
		break
	}
	r.stats.Snapshots++
	r.unsettled = false
	r.logf("quiescent check passed (live %v)", slices.Clone(alive))
}
