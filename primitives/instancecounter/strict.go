package instancecounter

import (
	"context"
	"runtime"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
)

// Counter is what Strict and Lax both implement, so callers can swap
// guarantees without touching call sites. Every call returns the
// cumulative value over live instances and this instance's slice.
type Counter interface {
	// Inc adds delta to this instance's slice of key.
	Inc(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error)
	// Dec subtracts delta from this instance's slice of key.
	Dec(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error)
	// Get returns the cumulative value of key and this instance's slice.
	Get(ctx context.Context, key string) (cumulative, mine int64, err error)
	// SetOnInstance sets this instance's slice of key to v.
	SetOnInstance(ctx context.Context, key string, v int64) (cumulative, mine int64, err error)
	// Set sets the cumulative value of key to v, all of it this instance's.
	Set(ctx context.Context, key string, v int64) (cumulative, mine int64, err error)
	// DelOnInstance removes this instance's slice of key.
	DelOnInstance(ctx context.Context, key string) (cumulative, mine int64, err error)
	// Del deletes key on every instance and returns the values before.
	Del(ctx context.Context, key string) (cumulative, mine int64, err error)
	// Clear deletes every counter of the prefix.
	Clear(ctx context.Context) error
	// IncIf adds delta to this instance's slice when cmp matches the
	// cumulative value.
	IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cumulative, mine int64, err error)
	// SetIf acts like Set when cmp matches the cumulative value.
	SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error)
	// SetOnInstanceIf acts like SetOnInstance when cmp matches this
	// instance's slice.
	SetOnInstanceIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error)
	// InstanceID returns this instance's id.
	InstanceID() string
	// Close stops the background work and, unless KeepSlicesOnClose,
	// removes this instance's slices.
	Close(ctx context.Context) error
}

var (
	_ Counter = (*Strict)(nil)
	_ Counter = (*Lax)(nil)
)

// Strict is an instance-aware counter whose every call is one atomic
// script and one round trip. It is safe for concurrent use.
//
// Group commit (on unless Options.DisableGroupCommit): concurrent calls
// of one Strict (every call but Clear) share script calls. A call made
// while the counter is idle is sent at once as its own script, so a lone
// caller waits one round trip, as without group commit; calls that arrive
// while two calls of the counter are in flight are queued and sent
// together, in one script that applies them in arrival order, as soon as
// one of those returns. Every call still takes effect inside its own call
// and returns exactly what it would have returned had it run alone at
// that point, with the same error classes (an overflow fails only its own
// call; a batch whose outcome is unknown gives each of its calls
// distkit.ErrIndeterminate; a call whose context ends while queued is
// never sent: ErrNotApplied); only the number of round trips changes. A
// goroutine sends the batches while there is a queue and ends when there
// is none.
type Strict struct{ c *core }

// NewStrict returns an instance counter over b and starts its background
// goroutine, which registers the instance at once and then heartbeats
// every DeadAfter/3; Close stops it. It does no I/O itself: invalid
// options fail with distkit.ErrInvalidOption, an invalid prefix with
// distkit.ErrInvalidKey.
func NewStrict(b backend.Backend, opts Options) (*Strict, error) {
	c, err := newCore(b, opts)
	if err != nil {
		return nil, err
	}
	if !opts.DisableGroupCommit {
		c.grp = c.newGroup()
	}
	go c.run(0, nil)
	s := &Strict{c: c}
	runtime.AddCleanup(s, func(c *core) { c.orphan() }, c)
	return s, nil
}

// InstanceID returns this instance's id.
func (s *Strict) InstanceID() string { return s.c.id }

// Inc adds delta to this instance's slice of key. It fails with
// distkit.ErrOverflow, changing nothing, when the slice or the cumulative
// value would leave the int64 range.
func (s *Strict) Inc(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "inc", key, distkit.Always(), delta)
}

// Dec subtracts delta from this instance's slice of key.
func (s *Strict) Dec(ctx context.Context, key string, delta int64) (cumulative, mine int64, err error) {
	d, err := negate(key, delta)
	if err != nil {
		return 0, 0, err
	}
	return s.c.op(ctx, "inc", key, distkit.Always(), d)
}

// Get returns the cumulative value of key and this instance's slice.
func (s *Strict) Get(ctx context.Context, key string) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "get", key, distkit.Always(), 0)
}

// SetOnInstance sets this instance's slice of key to v, adjusting the
// cumulative value.
func (s *Strict) SetOnInstance(ctx context.Context, key string, v int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "setmine", key, distkit.Always(), v)
}

// Set sets the cumulative value of key to v: this instance's slice becomes
// v, every other slice 0; the key's epoch is bumped.
func (s *Strict) Set(ctx context.Context, key string, v int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "set", key, distkit.Always(), v)
}

// DelOnInstance removes this instance's slice of key.
func (s *Strict) DelOnInstance(ctx context.Context, key string) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "delmine", key, distkit.Always(), 0)
}

// Del deletes key globally (every slice) and bumps its epoch; it returns
// the values before.
func (s *Strict) Del(ctx context.Context, key string) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "del", key, distkit.Always(), 0)
}

// Clear deletes every counter of the prefix and bumps every epoch.
func (s *Strict) Clear(ctx context.Context) error { return s.c.clear(ctx) }

// IncIf adds delta to this instance's slice when cmp matches the
// cumulative value; otherwise it returns the current pair unchanged.
func (s *Strict) IncIf(ctx context.Context, key string, cmp distkit.Comparator, delta int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "incif", key, cmp, delta)
}

// SetIf acts like Set when cmp matches the cumulative value.
func (s *Strict) SetIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "setif", key, cmp, v)
}

// SetOnInstanceIf acts like SetOnInstance when cmp matches this
// instance's slice.
func (s *Strict) SetOnInstanceIf(ctx context.Context, key string, cmp distkit.Comparator, v int64) (cumulative, mine int64, err error) {
	return s.c.op(ctx, "setmineif", key, cmp, v)
}

// Close stops the heartbeat, waits for the calls in flight and, unless
// KeepSlicesOnClose, removes this instance's slices from the cumulative
// values, all within ctx (an error then says what was not done; Close may
// be called again). Calls made after Close began fail with
// distkit.ErrClosed. It does not close the backend.
func (s *Strict) Close(ctx context.Context) error {
	err := s.c.leave(ctx)
	if gerr := s.c.closeGroup(ctx); err == nil {
		err = gerr
	}
	return err
}
