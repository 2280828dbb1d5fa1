package instancecounter

import (
	"context"
	"runtime"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/backend"
)

// Strict is an instance-aware counter whose every call is one atomic script.
type Strict struct{ c *core }

// NewStrict registers this instance (one heartbeat) and starts its
// heartbeat goroutine; Close stops it.
func NewStrict(ctx context.Context, b backend.Backend, opts Options) (*Strict, error) {
	c, err := newCore(b, opts)
	if err != nil {
		return nil, err
	}
	if err := c.heartbeat(ctx); err != nil {
		return nil, err
	}
	go c.run(0, nil)
	s := &Strict{c: c}
	runtime.AddCleanup(s, func(c *core) { c.orphan() }, c)
	return s, nil
}

// InstanceID returns this instance's id.
func (s *Strict) InstanceID() string { return s.c.id }

// Inc adds delta to this instance's slice of key.
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

// SetOnInstance sets this instance's slice of key to v, adjusting the cumulative.
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

// Close stops the heartbeat and, unless KeepSlicesOnClose, removes this
// instance's slices from the cumulative values (bounded by ctx). Later
// calls fail with distkit.ErrClosed. It does not close the backend.
func (s *Strict) Close(ctx context.Context) error { return s.c.leave(ctx) }
