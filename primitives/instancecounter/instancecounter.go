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
// values in the same atomic script. An instance that was declared dead (a
// long pause) or whose data the server lost (FLUSHALL, a restart without
// persistence) notices on its next heartbeat or operation, re-registers and
// contributes its current slices again, exactly once.
//
// # Epochs
//
// Set and Del act globally (Set makes the total v and this instance's
// slice v; Del deletes the key) and bump the key's epoch; Clear bumps every
// epoch. An instance that comes back with a slice from an older epoch
// starts from 0 instead of adding it again.
//
// # Strict and Lax
//
// Strict runs every call as one script. Lax buffers Inc and Dec in process
// and flushes them every FlushInterval (20 ms) in one script per prefix,
// with numbered batches applied exactly once (as counter.Lax does); every
// other call flushes first. Close removes this instance's slices unless
// Options.KeepSlicesOnClose is set (then they leave with its heartbeat).
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
//	{<prefix>}:ic:epochs         hash    <key> → epoch
//	{<prefix>}:ic:seq:<id>       string  last Lax batch applied (TTL DedupTTL)
package instancecounter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
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
)

// Options configure an instance counter. The zero value is valid.
type Options struct {
	// Prefix namespaces the keys (any byte string of up to
	// distkit.MaxKeyLen bytes); default distkit.DefaultPrefix.
	Prefix string
	// InstanceID names this instance (any byte string of up to
	// distkit.MaxKeyLen bytes, e.g. "10.0.0.7:8080"); random by default.
	// Two live counters must not share one.
	InstanceID string
	// DeadAfter: an instance without a heartbeat for this long is dead and
	// its slices are removed; default 30 s, at least 100 ms.
	DeadAfter time.Duration
	// FlushInterval (Lax): how often buffered deltas are flushed; default 20 ms.
	FlushInterval time.Duration
	// DedupTTL (Lax): how long a flushed batch number is remembered; default 24 h.
	DedupTTL time.Duration
	// KeepSlicesOnClose leaves this instance's slices in place on Close
	// (they then expire with its heartbeat); by default Close removes them.
	KeepSlicesOnClose bool
}

var (
	errClosed       = fmt.Errorf("instancecounter: %w", distkit.ErrClosed)
	errClosedRacing = fmt.Errorf("instancecounter: inc raced with Close: %w (%w)", distkit.ErrClosed, distkit.ErrIndeterminate)
)

// slot is what this instance remembers of one key: its slice and the
// key's epoch as last confirmed by the server.
type slot struct {
	field   string     // the key as the scripts see it (keyspace.InstanceKeyField)
	mu      sync.Mutex // guards seq, applied and epoch (never held during I/O)
	seq     uint64     // calls issued on the key
	applied uint64     // the latest call whose reply was recorded
	epoch   string
	// Confirmed by the server; atomic so that Lax's Inc reads them lock-free.
	total atomic.Int64 // cumulative
	mine  atomic.Int64 // this instance's slice
	// Lax
	added atomic.Int64 // local deltas ever accepted
	sent  atomic.Int64 // part of added the server confirmed (written under laxState.flushMu)
}

// confirmed records values the server returned (with s.mu held).
func (s *slot) confirmed(total, mine int64) {
	s.total.Store(total)
	s.mine.Store(mine)
}

// slice is this instance's confirmed slice as a script argument.
func (s *slot) slice() string { return strconv.FormatInt(s.mine.Load(), 10) }

type core struct {
	b         backend.Backend
	keys      []string // the six KEYS (keyspace.InstanceCounter)
	marker    string   // Lax batch marker
	id        string   // as the user gave it
	me        string   // as the scripts see it (keyspace.InstanceMember)
	deadAfter time.Duration
	daArg     string
	keep      bool
	closed    atomic.Bool

	slotMu sync.Mutex
	slots  atomic.Pointer[map[string]*slot] // copy on write

	base     context.Context // the loop's I/O runs under it; Close cancels it
	cancel   context.CancelFunc
	stop     chan struct{} // closed by Close
	orphaned chan struct{} // closed when the owner was garbage-collected
	done     chan struct{}
	stopOnce sync.Once
	orphOnce sync.Once
	final    func(ctx context.Context) // Lax: the last flush of a collected owner
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
	c := &core{
		b: b, id: opts.InstanceID, me: keyspace.InstanceMember(opts.InstanceID),
		deadAfter: opts.DeadAfter, daArg: driver.Millis(opts.DeadAfter), keep: opts.KeepSlicesOnClose,
		keys:   keyspace.InstanceCounter(p).List(),
		marker: keyspace.InstanceCounterMarker(p, opts.InstanceID),
		stop:   make(chan struct{}), orphaned: make(chan struct{}), done: make(chan struct{}),
	}
	c.base, c.cancel = context.WithCancel(context.Background())
	m := map[string]*slot{}
	c.slots.Store(&m)
	return c, nil
}

func (c *core) slot(key string) *slot {
	if s := (*c.slots.Load())[key]; s != nil {
		return s
	}
	c.slotMu.Lock()
	defer c.slotMu.Unlock()
	old := *c.slots.Load()
	if s := old[key]; s != nil {
		return s
	}
	m := make(map[string]*slot, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	s := &slot{field: keyspace.InstanceKeyField(key), epoch: "0"}
	m[key] = s
	c.slots.Store(&m)
	return s
}

// heartbeat refreshes this instance and, when the server had lost it (or
// never saw it), contributes every slice again.
func (c *core) heartbeat(ctx context.Context) error {
	v, err := c.b.EvalScript(ctx, icscript.Heartbeat, c.keys, c.me, c.daArg)
	if err != nil {
		return err
	}
	if n, _ := v.Int64(); n == 1 {
		return c.rejoin(ctx)
	}
	return nil
}

func (c *core) rejoin(ctx context.Context) error {
	slots := *c.slots.Load()
	if len(slots) == 0 {
		return nil
	}
	args := []string{c.me, c.daArg}
	for _, s := range slots {
		s.mu.Lock()
		args = append(args, s.field, s.epoch, s.slice())
		s.mu.Unlock()
	}
	_, err := c.b.EvalScript(ctx, icscript.Rejoin, c.keys, args...)
	return err
}

// run is the background goroutine: it registers the instance at once,
// then heartbeats every DeadAfter/3 and, for Lax, flushes every tick. Its
// I/O runs under c.base, which Close cancels.
func (c *core) run(every time.Duration, tick func(ctx context.Context)) {
	defer close(c.done)
	beat := func() {
		ctx, cancel := context.WithTimeout(c.base, c.deadAfter/3)
		c.heartbeat(ctx) // a failure is retried on the next tick
		cancel()
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
			if c.final != nil {
				c.final(c.base)
			}
			return
		case <-hb.C:
			beat()
		case <-ft:
			tick(c.base)
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
		return fmt.Errorf("instancecounter: close: %w", ctx.Err())
	}
}

// op runs one operation on key and records the result.
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
	s.mu.Lock()
	s.seq++
	seq, epoch, slice := s.seq, s.epoch, s.slice()
	s.mu.Unlock()
	v, err := c.b.EvalScript(ctx, icscript.Op, c.keys, c.me, c.daArg, mode, s.field, epoch, slice,
		cmp.Op.String(), strconv.FormatInt(cmp.Operand, 10), strconv.FormatInt(n, 10))
	if err != nil {
		return 0, 0, wrapErr(mode, key, err)
	}
	arr, err := v.Array()
	if err != nil || len(arr) != 3 {
		return 0, 0, fmt.Errorf("instancecounter: malformed reply %v", v)
	}
	total, err1 := arr[0].Int64()
	mine, err2 := arr[1].Int64()
	newEpoch, err3 := arr[2].Text()
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	if seq > s.applied { // concurrent calls on one key: the latest issued wins
		s.applied, s.epoch = seq, newEpoch
		if mode == "del" { // the reply holds the values before; now there is nothing
			s.confirmed(0, 0)
		} else {
			s.confirmed(total, mine)
		}
	}
	s.mu.Unlock()
	return total, mine, nil
}

func wrapErr(op, key string, err error) error {
	var se *backend.ScriptError
	if errors.As(err, &se) && se.Code() == scriptlib.CodeOverflow {
		return fmt.Errorf("instancecounter: %s %q: %w", op, key, distkit.ErrOverflow)
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
	if _, err := c.b.EvalScript(ctx, icscript.Clear, c.keys, c.me, c.daArg); err != nil {
		return fmt.Errorf("instancecounter: clear: %w", err)
	}
	for _, s := range *c.slots.Load() {
		s.mu.Lock()
		s.confirmed(0, 0) // the epoch we hold is now stale
		s.mu.Unlock()
	}
	return nil
}

// leave stops the background goroutine and, unless kept, removes this
// instance's slices, all within ctx.
func (c *core) leave(ctx context.Context) error {
	c.closed.Store(true)
	if err := c.stopLoop(ctx); err != nil {
		return err
	}
	return c.remove(ctx)
}

// remove takes this instance's slices out of the totals, unless kept.
func (c *core) remove(ctx context.Context) error {
	if c.keep {
		return nil
	}
	if _, err := c.b.EvalScript(ctx, icscript.Remove, c.keys, c.me, c.daArg); err != nil {
		return fmt.Errorf("instancecounter: close: removing this instance's slices: %w", err)
	}
	return nil
}
