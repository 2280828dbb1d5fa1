// Package instancecounter provides instance-aware counters: each process
// (instance) owns a slice of every counter, and the cumulative value is the
// sum of the slices of live instances. Typical uses: open connections per
// service, live sessions, per-node metrics — anything that must shrink by
// itself when a process dies.
//
//	ctx := context.Background()
//	b := memory.New(memory.Options{}) // or a Redis driver
//	c, err := instancecounter.NewStrict(b, instancecounter.Options{Prefix: "ws"})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close(ctx) // this instance's slices leave the totals
//	total, mine, err := c.Inc(ctx, "connections", 1)
//	fmt.Println(total, mine, err)
//
// Every call returns (cumulative, mine): the total over live instances and
// this instance's slice. Strict and Lax both implement Counter.
//
// # Liveness
//
// An instance registers and then heartbeats every DeadAfter/3 (DeadAfter
// default 30 s) from a background goroutine, so an idle but running
// instance keeps its slices. Every operation of any instance, heartbeats
// included, first removes the slices of instances whose last heartbeat is
// older than DeadAfter (server time), subtracting them from the cumulative
// values in the same atomic script. A dead slice whose removal would take
// the cumulative value beyond the int64 range (the other slices sum beyond
// it) stays counted until a Set, Del or Clear of its key.
//
// # Comebacks
//
// An instance that was declared dead (a long pause, a partition) or whose
// data the server lost (FLUSHALL, a restart without persistence) is told
// so by whatever script it runs next — a heartbeat, an operation or a Lax
// flush — and nothing of that script is applied. It then rejoins in one
// script that registers it again and contributes every slice it remembers,
// exactly once, before the call runs again. The slice it remembers for a
// key is the one of its call that executed last on the server (calls of
// one instance are numbered in execution order), not the one it sent last,
// and a rejoin waits for the instance's calls in flight, so an acknowledged
// call is never left out nor counted twice. A call that failed with
// distkit.ErrIndeterminate may or may not be counted; if the instance is
// declared dead before its next successful call on that key, it rejoins
// without it.
//
// # Epochs
//
// Set and Del act globally (Set makes the total v and this instance's
// slice v; Del deletes the key); Clear deletes every key. Each stamps the
// key (Clear: every key) with an epoch: the server time of the change in
// µs, strictly increasing per prefix. An
// instance that comes back with a slice from an older epoch contributes 0
// for it (or only what it added after a rejoin the change preceded)
// instead of adding it again. Epochs survive the server's data loss in
// the instances' memory: a rejoining instance reports the epoch it knows,
// the server keeps the latest and withdraws what other instances
// re-contributed under an older one, so a slice wiped before the loss
// never comes back, whichever instance rejoins first — and only that: what
// an instance added after the loss stays, also when it rejoined again
// (declared dead) before the instance that knew of the change did. This
// holds for one loss at a time: the instances that knew of a change must
// rejoin (within a heartbeat, DeadAfter/3, when they run) before the
// server loses its data again; and it relies on the server clock, after
// the loss, being past the stamps it handed out before (a restart or
// failover keeps it, NTP-synchronised servers do).
//
// # Instance ids
//
// An instance id names one live counter at a time. A counter whose id is
// held by another live one (registered and heartbeating, in any process)
// is refused: its calls fail with distkit.ErrDuplicateInstance, nothing
// applied, until the other one closes or is declared dead. A process
// restarted with the same id before its predecessor's last heartbeat
// expired therefore waits up to DeadAfter, unless the predecessor closed
// (with KeepSlicesOnClose too: Close frees the id).
//
// # Strict and Lax
//
// Strict runs every call as one script; concurrent calls of one Strict
// share script calls (group commit, see Strict), each answered as its own
// script would have been. Lax buffers Inc and Dec in process
// and flushes them every FlushInterval (20 ms), on the flush engine of
// counter.Lax: numbered batches applied exactly once (a batch whose outcome
// is unknown stays in flight until a resend is answered), each flush
// touching only the keys with pending deltas; every other call flushes
// first. A key whose delta the server refuses (distkit.ErrOverflow, a value
// that is not an integer) is set aside and reported (Lax.Failed,
// UnflushedError) while the others flush, also when the refusal comes from
// the rejoin of a comeback that settles the batch in flight: that delta
// stays pending, never counted as applied. Lax drops its local state of a
// key whose slice is 0 and that has nothing pending after
// Options.IdleAfter without use (it keeps keys with a slice, or with a Set
// or Del newer than the last Clear, which a comeback must report); a
// comeback reports only those keys. Close waits for the calls in flight
// (within its context; later calls fail with distkit.ErrClosed), then
// removes this instance's slices unless Options.KeepSlicesOnClose is set
// (then they leave with its heartbeat, or when a new counter takes its
// id: that one remembers none of them).
//
// # Key layout
//
// All keys share the hash tag {<prefix>}; every script declares all of
// them. <prefix>, <key> and <id> (the instance id) stand for the strings as
// given, with '%', ':', '{', '}' and control bytes written as %XX (see
// package distkit, "Keys"), so a composed member splits at its first ':':
//
//	{<prefix>}:ic:instances      zset    <id> → heartbeat expiry (Unix ms)
//	{<prefix>}:ic:total          hash    <key> → cumulative value
//	{<prefix>}:ic:slices         hash    <id>:<key> → that instance's slice
//	{<prefix>}:ic:owned          zset    <id>:<key>, score 0 (lexical index per instance)
//	{<prefix>}:ic:holders        zset    <key>:<id>, score 0 (lexical index per key)
//	{<prefix>}:ic:epochs         hash    <key> → epoch: stamp of its last Set or Del
//	{<prefix>}:ic:cleared        string  stamp of the last Clear (every key's epoch is at least this)
//	{<prefix>}:ic:clock          string  "<last>:<born>": the last stamp, server time (Unix µs), strictly
//	                                     increasing, and the first stamp of the data set
//	{<prefix>}:ic:registry       hash    <id> → "<nonce>:<version>" of the live counter holding the id, "-:<nonce>" once it closed
//	{<prefix>}:ic:rejoined       hash    <id>:<key> → the part of that slice a rejoin re-contributed that may
//	                                     date from before the data set (see Epochs)
//	{<prefix>}:ic:seq:<id>       string  "<nonce>:<batch>:<stamp>", the last Lax batch applied (TTL DedupTTL),
//	                                     then ":o<key>" / ":x<key>" per key a rejoin refused in it
package instancecounter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/internal/ctxsync"
	"github.com/distkit-go/distkit/internal/flush"
	"github.com/distkit-go/distkit/internal/gcommit"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/scriptlib"
)

// Defaults of Options.
const (
	DefaultDeadAfter     = 30 * time.Second
	MinDeadAfter         = 100 * time.Millisecond
	DefaultFlushInterval = 20 * time.Millisecond
	DefaultDedupTTL      = 24 * time.Hour
	// DefaultIdleAfter is Options.IdleAfter's default.
	DefaultIdleAfter = time.Minute
)

// Options configure an instance counter. The zero value is valid.
type Options struct {
	// Prefix namespaces the keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// InstanceID names this instance (any byte string of up to
	// distkit.MaxKeyLen bytes, e.g. "10.0.0.7:8080"); random by default.
	// While a counter with this id is live (registered and heartbeating),
	// another one with the same id is refused with
	// distkit.ErrDuplicateInstance.
	InstanceID string
	// DeadAfter: an instance without a heartbeat for this long is dead and
	// its slices are removed; default 30 s, at least 100 ms.
	DeadAfter time.Duration
	// FlushInterval (Lax): how often buffered deltas are flushed; default 20 ms.
	FlushInterval time.Duration
	// DedupTTL (Lax): how long a flushed batch number is remembered; default 24 h.
	DedupTTL time.Duration
	// KeepSlicesOnClose leaves this instance's slices in place on Close
	// (they then expire with its heartbeat, or leave as soon as a new
	// counter registers with this InstanceID, which is not refused); by
	// default Close removes them.
	KeepSlicesOnClose bool
	// IdleAfter (Lax): how long Lax keeps the local state of a key whose
	// slice is 0 and that has nothing pending after its last use; default
	// DefaultIdleAfter (1 min), at least 1 ms. Keys with a non-zero slice
	// (or a Set or Del this instance must report on a comeback) are kept
	// whatever their age.
	IdleAfter time.Duration
	// Logger receives one line per state change of the background work:
	// heartbeat_failing / heartbeat_recovered, instance_dead /
	// instance_rejoined, and for Lax flush_failing / flush_recovered
	// (README "Observability"); nil: silent.
	Logger *slog.Logger
	// Observer is told the same state changes; nil: none.
	Observer distkit.Observer
	// MeterProvider records the metrics distkit.instancecounter.* (README
	// "Observability"); nil: none, at no cost.
	MeterProvider metric.MeterProvider
	// DisableGroupCommit (Strict only) sends every call as its own Op
	// script instead of coalescing the concurrent calls of this instance
	// into shared script calls (see Strict). Results and errors are the
	// same either way; group commit only changes how many round trips
	// concurrent calls take.
	DisableGroupCommit bool
}

var (
	errClosed       = fmt.Errorf("instancecounter: %w", distkit.ErrClosed)
	errClosedRacing = fmt.Errorf("instancecounter: inc raced with Close: %w (%w)", distkit.ErrClosed, distkit.ErrIndeterminate)
)

// maxAbsent bounds how often one call rejoins after finding this instance
// unregistered before it gives up (the instance keeps expiring between
// its rejoin and its call: DeadAfter is too short for the backend).
const maxAbsent = 3

// slot is what this instance remembers of one key, from the reply of the
// script that executed last among those it recorded.
type slot struct {
	// Lax: total and mine minus the part of the entry's accepted deltas
	// they include (Entry.Sent), wrapping, so that the view is base +
	// Entry.Added(); set with the engine's lock held (rebase). First: on
	// the cache line of the entry's counter, which Inc reads with them.
	tb, mb atomic.Int64
	field  string     // the key as the scripts see it (keyspace.InstanceKeyField)
	mu     sync.Mutex // guards version, epoch, at and rejoined (never held during I/O)
	// version of the recorded reply: scripts of one registration are
	// numbered in execution order, so a reply with a lower one (a call
	// that executed earlier, whatever order the replies came in) is not
	// recorded.
	version  int64
	epoch    int64 // the key's epoch (stamp of its last Set, Del or Clear)
	at       int64 // stamp of the recorded reply
	rejoined int64 // part of the slice a rejoin contributed
	// Confirmed by the server; atomic so that Lax's Inc reads them lock-free.
	total atomic.Int64 // cumulative
	mine  atomic.Int64 // this instance's slice
	ent   *laxEntry    // Lax: the entry holding this slot
}

// rebase sets the Lax bases from total and mine, which include sent of
// the entry's deltas. Called with the engine's lock held.
func (s *slot) rebase(sent int64) {
	s.tb.Store(s.total.Load() - sent)
	s.mb.Store(s.mine.Load() - sent)
}

// keyState is one key's state in a reply.
type keyState struct {
	total, mine, epoch, rejoined int64
	// unknown: a resent flush's reply (a batch applied before) whose
	// current state of the key is not made of integers (the key was
	// overwritten with something else since): applied, nothing to record.
	unknown bool
}

// record records a reply's state of s's key (see slot.record).
func (c *core) record(s *slot, version, at int64, st keyState) {
	if c.lx != nil {
		c.lx.g.WithLock(func() { c.lx.recordLocked(s.ent, version, at, st, 0) })
		return
	}
	s.record(version, at, st)
}

// record keeps st when the reply (version, server time at) executed after
// the one recorded; it reports whether it did.
func (s *slot) record(version, at int64, st keyState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version <= s.version {
		return false
	}
	s.version, s.epoch, s.at, s.rejoined = version, st.epoch, at, st.rejoined
	s.total.Store(st.total)
	s.mine.Store(st.mine)
	return true
}

type core struct {
	b          backend.Backend
	keys       []string // the KEYS (keyspace.InstanceCounter)
	markerKeys []string // Lax: keys plus the batch marker
	id         string   // as the user gave it
	me         string   // as the scripts see it (keyspace.InstanceMember)
	nonce      string   // this counter object's registration
	deadAfter  time.Duration
	daArg      string
	keep       bool
	closed     atomic.Bool

	// slots (Strict): key → *slot, never removed. A new key costs O(1);
	// a rejoin ranges over them inside the gate (no call in flight), so
	// it sees every reply recorded; a slot created meanwhile has none yet.
	slots sync.Map

	gate *gate // operations vs rejoin and Close
	// flushMu serializes Strict's rejoins; Lax's hold the flush engine's
	// token instead (a rejoin settles the batch in flight). Either is
	// taken before the gate.
	flushMu    *ctxsync.Mutex
	closing    atomic.Bool   // Close's own flush (or an orphan's) may rejoin
	gen        atomic.Uint64 // rejoins done
	maxVersion atomic.Int64  // the highest version seen in a reply
	cleared    atomic.Int64  // the latest Clear time seen in a reply
	lx         *laxState     // Lax only
	// grp (Strict, unless Options.DisableGroupCommit) coalesces the
	// concurrent Op calls of this object into OpBatch calls.
	grp *gcommit.Group[icop]

	base     context.Context // the loop's I/O runs under it; Close cancels it
	cancel   context.CancelFunc
	stop     chan struct{} // closed by Close
	orphaned chan struct{} // closed when the owner was garbage-collected
	done     chan struct{}
	stopOnce sync.Once
	orphOnce sync.Once
	obs      *icObs // nil: no Logger, Observer or MeterProvider
}

// orphan is the runtime cleanup of an owner dropped without Close.
func (c *core) orphan() { c.orphOnce.Do(func() { close(c.orphaned) }) }

func newCore(b backend.Backend, opts Options) (*core, error) {
	if b == nil {
		return nil, fmt.Errorf("instancecounter: %w: backend is nil", distkit.ErrInvalidOption)
	}
	p, err := keyspace.Prefix(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("instancecounter: %w", err)
	}
	switch {
	case opts.DeadAfter == 0:
		opts.DeadAfter = DefaultDeadAfter
	case opts.DeadAfter < MinDeadAfter:
		return nil, fmt.Errorf("instancecounter: %w: DeadAfter %v is below %v", distkit.ErrInvalidOption, opts.DeadAfter, MinDeadAfter)
	}
	if opts.InstanceID == "" {
		var r [8]byte
		rand.Read(r[:])
		opts.InstanceID = hex.EncodeToString(r[:])
	} else if err := distkit.ValidateKey("instance id", opts.InstanceID); err != nil {
		return nil, fmt.Errorf("instancecounter: %w: InstanceID: %w", distkit.ErrInvalidOption, err)
	}
	var n [8]byte
	rand.Read(n[:])
	c := &core{
		b: b, id: opts.InstanceID, me: keyspace.InstanceMember(opts.InstanceID), nonce: hex.EncodeToString(n[:]),
		deadAfter: opts.DeadAfter, daArg: driver.Millis(opts.DeadAfter), keep: opts.KeepSlicesOnClose,
		keys: keyspace.InstanceCounter(p).List(),
		gate: newGate(), flushMu: ctxsync.NewMutex(),
		stop: make(chan struct{}), orphaned: make(chan struct{}), done: make(chan struct{}),
	}
	c.obs = newICObs(opts, p, opts.InstanceID)
	c.markerKeys = append(append([]string{}, c.keys...), keyspace.InstanceCounterMarker(p, opts.InstanceID))
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// slot returns key's slot, creating it when absent.
func (c *core) slot(key string) *slot {
	if c.lx != nil {
		e := c.lx.entry(key)
		c.lx.g.Touch(e)
		return &e.X
	}
	if s, ok := c.slots.Load(key); ok {
		return s.(*slot)
	}
	s, _ := c.slots.LoadOrStore(key, &slot{field: keyspace.InstanceKeyField(key)})
	return s.(*slot)
}

// seen notes a reply's version and cleared time.
func (c *core) seen(version, cleared int64) {
	for v := c.maxVersion.Load(); version > v && !c.maxVersion.CompareAndSwap(v, version); v = c.maxVersion.Load() {
	}
	for v := c.cleared.Load(); cleared > v && !c.cleared.CompareAndSwap(v, cleared); v = c.cleared.Load() {
	}
}

// keysFor are the KEYS of a script call: with the batch marker for Lax.
func (c *core) keysFor() []string {
	if c.lx != nil {
		return c.markerKeys
	}
	return c.keys
}

// errDup is the error of a call refused because another live counter
// holds this instance id.
func (c *core) errDup() error {
	return fmt.Errorf("instancecounter: InstanceID %q: %w", c.id, distkit.ErrDuplicateInstance)
}

func (c *core) errAbsent(what string) error {
	return fmt.Errorf("instancecounter: %s: this instance expired again right after rejoining %d times (DeadAfter %v too short for the backend?): %w",
		what, maxAbsent, c.deadAfter, backend.ErrNotApplied)
}

// reply is a parsed script reply: its status, then for "ok" and "joined"
// the version, server time and cleared time, then rest.
type reply struct {
	status                string
	version, now, cleared int64
	applied               bool // Flush
	flushDup              bool // Flush: a batch applied before (its reply's applied is 0)
	rest                  []backend.Value
}

func parseReply(v backend.Value, flush bool) (reply, error) {
	arr, err := v.Array()
	if err != nil || len(arr) == 0 {
		return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
	}
	var r reply
	if r.status, err = arr[0].Text(); err != nil {
		return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
	}
	if r.status != icscript.StatusOK && r.status != icscript.StatusJoined {
		return r, nil
	}
	arr = arr[1:]
	if flush {
		if len(arr) == 0 {
			return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
		}
		n, err := arr[0].Int64()
		if err != nil {
			return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
		}
		r.applied, r.flushDup, arr = n == 1, n == 0, arr[1:]
	}
	if len(arr) < 3 {
		return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
	}
	var e1, e2, e3 error
	r.version, e1 = arr[0].Int64()
	r.now, e2 = arr[1].Int64()
	r.cleared, e3 = arr[2].Int64()
	if err := errors.Join(e1, e2, e3); err != nil {
		return reply{}, fmt.Errorf("instancecounter: malformed reply %v", v)
	}
	r.rest = arr[3:]
	return r, nil
}

// states parses n key states (cumulative, mine, epoch, rejoined) from r.rest.
func (r reply) states(n int) ([]keyState, error) {
	if len(r.rest) != 4*n {
		return nil, fmt.Errorf("instancecounter: malformed reply: %d values for %d keys", len(r.rest), n)
	}
	return r.statesOf(n)
}

// refusals parses n key states, then the (index, reason) pairs of the keys
// whose delta in flight the server refused (Rejoin, and a Flush resent
// after a Rejoin settled its batch): index → reason.
func (r reply) refusals(n int) ([]keyState, map[int]string, error) {
	extra := len(r.rest) - 4*n
	if extra < 0 || extra%2 != 0 {
		return nil, nil, fmt.Errorf("instancecounter: malformed reply: %d values for %d keys", len(r.rest), n)
	}
	sts, err := r.statesOf(n)
	if err != nil {
		return nil, nil, err
	}
	var refused map[int]string
	for i := 4 * n; i < len(r.rest); i += 2 {
		idx, err1 := r.rest[i].Int64()
		why, err2 := r.rest[i+1].Text()
		if err := errors.Join(err1, err2); err != nil || idx < 0 || idx >= int64(n) {
			return nil, nil, fmt.Errorf("instancecounter: malformed reply: refusal %v %v", r.rest[i], r.rest[i+1])
		}
		if refused == nil {
			refused = map[int]string{}
		}
		refused[int(idx)] = why
	}
	return sts, refused, nil
}

// statesOf parses the first n key states of r.rest.
func (r reply) statesOf(n int) ([]keyState, error) {
	out := make([]keyState, n)
	for i := range out {
		var errs [4]error
		out[i].total, errs[0] = r.rest[4*i].Int64()
		out[i].mine, errs[1] = r.rest[4*i+1].Int64()
		out[i].epoch, errs[2] = r.rest[4*i+2].Int64()
		out[i].rejoined, errs[3] = r.rest[4*i+3].Int64()
		if err := errors.Join(errs[:]...); err != nil {
			if r.status == icscript.StatusOK && r.flushDup {
				out[i] = keyState{unknown: true}
				continue
			}
			return nil, fmt.Errorf("instancecounter: malformed reply: %w", err)
		}
	}
	return out, nil
}

// heartbeat refreshes this instance's registration and, when the server
// had lost it (declared dead, data lost) or never saw it, rejoins with
// every slice. With a MeterProvider it also asks for the number of live
// instances (the live-instances gauge) and records it when registered.
func (c *core) heartbeat(ctx context.Context) error {
	gen := c.gen.Load()
	args := []string{c.nonce, c.me, c.daArg}
	if c.obs.wantsLive() {
		args = append(args, "live")
	}
	v, err := c.b.EvalScript(ctx, icscript.Heartbeat, c.keys, args...)
	if err != nil {
		return err
	}
	st, live, err := heartbeatReply(v)
	if err != nil {
		return err
	}
	if st == icscript.StatusOK && live >= 0 {
		c.obs.setLive(live)
	}
	switch st {
	case icscript.StatusAbsent:
		return c.rejoin(ctx, gen)
	case icscript.StatusDup:
		return c.errDup()
	}
	return nil
}

// heartbeatReply parses Heartbeat's reply: a status, or {status, live}
// when the count was asked for (live -1 when not).
func heartbeatReply(v backend.Value) (st string, live int64, err error) {
	arr, aerr := v.Array()
	if aerr != nil {
		st, _ = v.Text()
		return st, -1, nil
	}
	if len(arr) != 2 {
		return "", -1, fmt.Errorf("instancecounter: malformed heartbeat reply %v", v)
	}
	st, err1 := arr[0].Text()
	live, err2 := arr[1].Int64()
	if err := errors.Join(err1, err2); err != nil || live < 0 {
		return "", -1, fmt.Errorf("instancecounter: malformed heartbeat reply %v", v)
	}
	return st, live, nil
}

// rejoin registers this instance and contributes every slice it
// remembers, unless a rejoin happened since the caller saw generation gen.
func (c *core) rejoin(ctx context.Context, gen uint64) error {
	if c.lx != nil {
		// With the engine's token, after resolving the batch in flight (a
		// resend finding this instance absent rejoins, settling it).
		return c.lx.g.Do(ctx, flush.Resolve, func(ctx context.Context) error {
			_, _, err := c.rejoinLocked(ctx, gen, nil)
			return err
		})
	}
	if err := c.flushMu.LockCtx(ctx); err != nil {
		return driver.NotApplied(err)
	}
	defer c.flushMu.Unlock()
	_, _, err := c.rejoinLocked(ctx, gen, nil)
	return err
}

// rejoinSlot is one key a rejoin reports: the slot it records into and
// the delta of the batch in flight for the key.
type rejoinSlot struct {
	s *slot
	d int64 // the part of the batch in flight of s's own entry (Lax)
	k int64 // the batch in flight's delta for the key, all entries
}

// rejoinLocked is rejoin with flushMu (Lax: the engine's token) held; b
// is Lax's batch in flight, if any, which a rejoin that registers the
// instance settles (settled reports it). It waits for the operations in
// flight (their replies are in the slots it sends) and keeps new ones out
// until it is done. It reports only the slots with something to say: a
// slice, a rejoined part, an epoch newer than the last Clear (which it
// reports for every key at once), a delta in flight.
//
// A key whose delta in flight the server refused (an overflow, a value
// that is not an integer) is in refused, with the reason: its delta was
// not applied, and stays pending.
func (c *core) rejoinLocked(ctx context.Context, gen uint64, b *flush.Batch[slot]) (settled bool, refused map[string]error, err error) {
	if err := c.gate.lock(ctx); err != nil {
		return false, nil, driver.NotApplied(err)
	}
	defer c.gate.unlock()
	if c.gen.Load() != gen {
		return false, nil, nil
	}
	if c.closed.Load() && !c.closing.Load() {
		return false, nil, errClosed
	}
	seq, ttl := "0", "0"
	if b != nil {
		seq, ttl = strconv.FormatInt(b.Seq, 10), c.lx.dedupTTL
	}
	cleared := c.cleared.Load()
	args := []string{c.nonce, c.me, c.daArg, strconv.FormatInt(cleared, 10),
		strconv.FormatInt(c.maxVersion.Load(), 10), seq, ttl}
	var list []rejoinSlot
	add := func(rs rejoinSlot) {
		s := rs.s
		s.mu.Lock()
		epoch, at, rejoined := s.epoch, s.at, s.rejoined
		s.mu.Unlock()
		mine := s.mine.Load()
		if epoch <= cleared && mine == 0 && rejoined == 0 && rs.k == 0 {
			return // nothing to contribute, no epoch the cleared time does not cover
		}
		list = append(list, rs)
		args = append(args, s.field, strconv.FormatInt(epoch, 10), strconv.FormatInt(mine, 10),
			strconv.FormatInt(rejoined, 10), strconv.FormatInt(at, 10), strconv.FormatInt(rs.k, 10))
	}
	if c.lx != nil {
		c.lx.g.WithLock(func() { c.lx.rejoinSlotsLocked(b, add) })
	} else {
		c.slots.Range(func(_, s any) bool {
			add(rejoinSlot{s: s.(*slot)})
			return true
		})
	}
	v, err := c.b.EvalScript(ctx, icscript.Rejoin, c.keysFor(), args...)
	if err != nil {
		return false, nil, fmt.Errorf("instancecounter: rejoin: %w", err)
	}
	// {status} alone (dup, closed, or ok: registered already) carries no
	// version: parseReply, which reads one after "ok", must not see it.
	var r reply
	if arr, aerr := v.Array(); aerr == nil && len(arr) == 1 {
		if r.status, err = arr[0].Text(); err != nil || r.status == icscript.StatusJoined {
			return false, nil, fmt.Errorf("instancecounter: rejoin: malformed reply %v", v)
		}
	} else if r, err = parseReply(v, false); err != nil {
		return false, nil, err
	}
	switch r.status {
	case icscript.StatusDup:
		return false, nil, c.errDup()
	case icscript.StatusClosed: // Close's Remove ran before this late rejoin: nothing applied
		return false, nil, errClosed
	case icscript.StatusOK: // registered already (a rejoin whose reply was lost): nothing contributed
		c.gen.Add(1)
		return false, nil, nil
	case icscript.StatusJoined:
		if c.gen.Load() > 0 { // not the first registration
			c.obs.noteRejoin()
		}
	default:
		return false, nil, fmt.Errorf("instancecounter: rejoin: unexpected status %q", r.status)
	}
	sts, ref, err := r.refusals(len(list))
	if err != nil {
		return false, nil, err
	}
	c.seen(r.version, r.cleared)
	// b, if any, is settled: its deltas are in the slices now, or were
	// wiped after it applied, except those of the refused keys; the engine
	// counts the others as applied when the flush returns.
	for i, why := range ref {
		if list[i].s.ent == nil { // Strict sends no delta in flight
			return false, nil, fmt.Errorf("instancecounter: rejoin: malformed reply: a refusal without a delta in flight")
		}
		if refused == nil {
			refused = map[string]error{}
		}
		key := list[i].s.ent.Key()
		refused[key] = refusal("flush", key, icscript.Rejoin.Name(), why)
	}
	if c.lx != nil {
		c.lx.g.WithLock(func() {
			for i, rs := range list {
				d := rs.d
				if _, no := ref[i]; no {
					d = 0 // not in the state: still pending
				}
				c.lx.recordLocked(rs.s.ent, r.version, r.now, sts[i], d)
			}
		})
	} else {
		for i, rs := range list {
			rs.s.record(r.version, r.now, sts[i])
		}
	}
	c.gen.Add(1)
	return true, refused, nil
}

// refusal is the error of key's delta refused by the server with reason
// why (a script's error message, e.g. "DKOVERFLOW <field>").
func refusal(op, key, script, why string) error {
	if code, _, _ := strings.Cut(why, " "); code == scriptlib.CodeOverflow {
		return fmt.Errorf("instancecounter: %s %q: %w", op, key, distkit.ErrOverflow)
	}
	return fmt.Errorf("instancecounter: %s %q: %w", op, key, &backend.ScriptError{Script: script, Msg: why})
}

// run is the background goroutine: it registers the instance at once,
// then heartbeats every DeadAfter/3 and, for Lax, flushes every tick. Its
// I/O runs under c.base, which Close cancels; once Close began no
// heartbeat or flush starts.
func (c *core) run(every time.Duration, tick func(ctx context.Context)) {
	defer close(c.done)
	defer c.obs.close()
	stopped := func() bool {
		select {
		case <-c.stop:
			return true
		default:
			return false
		}
	}
	beat := func() {
		if stopped() {
			return
		}
		ctx, cancel := context.WithTimeout(c.base, c.deadAfter/3)
		if ctx.Err() != nil { // Close began meanwhile (it cancels c.base)
			cancel()
			return
		}
		err := c.heartbeat(ctx) // a failure is retried on the next tick
		cancel()
		c.obs.beat(ctx, err)
	}
	beat()
	hb := time.NewTicker(c.deadAfter / 3)
	defer hb.Stop()
	var ft <-chan time.Time
	if tick != nil {
		t := time.NewTicker(every)
		defer t.Stop()
		ft = t.C
	}
	for {
		select {
		case <-c.stop:
			return
		case <-c.orphaned:
			c.closed.Store(true)
			return
		case <-hb.C:
			beat()
		case <-ft:
			if !stopped() {
				tick(c.base)
			}
		}
	}
}

// stopLoop stops the background goroutine, cancelling its I/O, and waits
// for it at most until ctx is done.
func (c *core) stopLoop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.cancel()
	})
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("instancecounter: close: the background heartbeat did not stop: %w", ctx.Err())
	}
}

// op runs one operation on key and records the result. When this
// instance is not registered, it rejoins (every slice) and runs the
// operation again.
func (c *core) op(ctx context.Context, mode, key string, cmp distkit.Comparator, n int64) (int64, int64, error) {
	if c.closed.Load() {
		return 0, 0, errClosed
	}
	if err := distkit.ValidateKey("key", key); err != nil {
		return 0, 0, fmt.Errorf("instancecounter: %w", err)
	}
	if err := cmp.Validate(); err != nil {
		return 0, 0, fmt.Errorf("instancecounter: %w", err)
	}
	s := c.slot(key)
	for attempt := 1; ; attempt++ {
		r, gen, err := c.opOnce(ctx, mode, s, cmp, n)
		if err != nil {
			return 0, 0, wrapErr(mode, key, err)
		}
		switch r.status {
		case icscript.StatusOK:
			sts, _ := r.states(1)
			return sts[0].total, sts[0].mine, nil
		case icscript.StatusDup:
			return 0, 0, c.errDup()
		}
		if attempt == maxAbsent {
			return 0, 0, c.errAbsent(mode)
		}
		if err := c.rejoin(ctx, gen); err != nil {
			return 0, 0, wrapErr(mode, key, err)
		}
	}
}

// opOnce runs the op script once, inside the gate, and records its reply.
func (c *core) opOnce(ctx context.Context, mode string, s *slot, cmp distkit.Comparator, n int64) (reply, uint64, error) {
	if err := c.gate.rlock(ctx); err != nil {
		return reply{}, 0, driver.NotApplied(err)
	}
	defer c.gate.runlock()
	if c.closed.Load() {
		return reply{}, 0, errClosed
	}
	gen := c.gen.Load()
	o := icop{mode: mode, field: s.field, op: cmp.Op.String(), x: strconv.FormatInt(cmp.Operand, 10), n: strconv.FormatInt(n, 10)}
	var v backend.Value
	var err error
	if c.grp != nil {
		v, err = c.grp.Do(ctx, o)
	} else {
		v, err = c.sendOp(ctx, o)
	}
	if err != nil {
		return reply{}, gen, err
	}
	r, err := parseReply(v, false)
	if err != nil || r.status != icscript.StatusOK {
		return r, gen, err
	}
	sts, err := r.states(1)
	if err != nil {
		return reply{}, gen, err
	}
	c.seen(r.version, r.cleared)
	st := sts[0]
	if mode == "del" { // the reply holds the values before; now there is nothing
		st = keyState{epoch: st.epoch}
	}
	c.record(s, r.version, r.now, st)
	return r, gen, nil
}

func wrapErr(op, key string, err error) error {
	var se *backend.ScriptError
	if errors.As(err, &se) && se.Code() == scriptlib.CodeOverflow {
		return fmt.Errorf("instancecounter: %s %q: %w", op, key, distkit.ErrOverflow)
	}
	if errors.Is(err, distkit.ErrClosed) && !errors.Is(err, backend.ErrNotApplied) || errors.Is(err, distkit.ErrDuplicateInstance) {
		return err // ours, already saying what happened
	}
	if key == "" {
		return fmt.Errorf("instancecounter: %s: %w", op, err)
	}
	return fmt.Errorf("instancecounter: %s %q: %w", op, key, err)
}

func (c *core) clear(ctx context.Context) error {
	if c.closed.Load() {
		return errClosed
	}
	for attempt := 1; ; attempt++ {
		r, gen, err := c.clearOnce(ctx)
		if err != nil {
			return wrapErr("clear", "", err)
		}
		switch r.status {
		case icscript.StatusOK:
			return nil
		case icscript.StatusDup:
			return c.errDup()
		}
		if attempt == maxAbsent {
			return c.errAbsent("clear")
		}
		if err := c.rejoin(ctx, gen); err != nil {
			return wrapErr("clear", "", err)
		}
	}
}

func (c *core) clearOnce(ctx context.Context) (reply, uint64, error) {
	if err := c.gate.rlock(ctx); err != nil {
		return reply{}, 0, driver.NotApplied(err)
	}
	defer c.gate.runlock()
	if c.closed.Load() {
		return reply{}, 0, errClosed
	}
	gen := c.gen.Load()
	v, err := c.b.EvalScript(ctx, icscript.Clear, c.keys, c.nonce, c.me, c.daArg)
	if err != nil {
		return reply{}, gen, err
	}
	r, err := parseReply(v, false)
	if err != nil || r.status != icscript.StatusOK {
		return r, gen, err
	}
	c.seen(r.version, r.cleared)
	if c.lx != nil {
		c.lx.cleared(r.version, r.now, r.cleared)
		return r, gen, nil
	}
	c.slots.Range(func(_, s any) bool {
		s.(*slot).record(r.version, r.now, keyState{epoch: r.cleared}) // every slice is gone
		return true
	})
	return r, gen, nil
}

// remove waits for the operations in flight and then takes this
// instance's slices out of the totals (when kept, only releases its id),
// all within ctx.
func (c *core) remove(ctx context.Context) error {
	if err := c.gate.lock(ctx); err != nil {
		return fmt.Errorf("instancecounter: close: waiting for the operations in flight: %w", err)
	}
	defer c.gate.unlock()
	args := []string{c.nonce, c.me, c.daArg}
	if c.keep {
		args = append(args, "keep") // the slices stay; the id is free for a restarted counter
	}
	err := within(ctx, func() error {
		_, err := c.b.EvalScript(ctx, icscript.Remove, c.keysFor(), args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("instancecounter: close: removing this instance's slices: %w", err)
	}
	return nil
}

// within runs f, I/O that Close waits for, and returns its error, or an
// error matching ErrIndeterminate when ctx ends first: Close returns
// within its context even over a backend that does not honour it (f then
// finishes in the background).
func within(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return driver.Indeterminate(fmt.Errorf("the backend did not answer: %w", ctx.Err()))
	}
}

// leave stops the background goroutine, waits for the operations in
// flight and, unless kept, removes this instance's slices, all within ctx.
func (c *core) leave(ctx context.Context) error {
	c.closed.Store(true)
	if err := c.stopLoop(ctx); err != nil {
		return err
	}
	return c.remove(ctx)
}
