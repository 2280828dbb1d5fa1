package lock

import (
	"context"
	"time"

	"github.com/distkit-go/distkit/backend"
)

// Mutex is a distributed mutual-exclusion lock on one name. Its zero value
// is not usable; build it with NewMutex. A Mutex holds no resources and
// is safe for concurrent use: every successful Lock returns its own Guard,
// and two goroutines of one process exclude each other like two processes.
type Mutex struct{ c *core }

// NewMutex returns a Mutex for name over b. Invalid options fail with
// distkit.ErrInvalidOption naming the field; an invalid name or prefix with
// distkit.ErrInvalidKey.
func NewMutex(b backend.Backend, name string, opts Options) (*Mutex, error) {
	c, err := newCore(b, name, opts)
	if err != nil {
		return nil, err
	}
	return &Mutex{c: c}, nil
}

// Name returns the lock's name.
func (m *Mutex) Name() string { return m.c.name }

// Lock waits until the lock is acquired or ctx is done (then it returns
// ctx.Err()). Backend errors while waiting are retried, except a closed
// backend (an error matching distkit.ErrClosed and ErrNotApplied), which
// is returned at once.
func (m *Mutex) Lock(ctx context.Context) (*Guard, error) {
	return m.c.acquire(ctx, exclusive, policy{})
}

// TryLock makes one attempt: distkit.ErrNotAcquired when the lock is held.
func (m *Mutex) TryLock(ctx context.Context) (*Guard, error) {
	return m.c.acquire(ctx, exclusive, policy{attempts: 1})
}

// TryLockWithTimeout waits at most d: distkit.ErrTimeout when it expires.
func (m *Mutex) TryLockWithTimeout(ctx context.Context, d time.Duration) (*Guard, error) {
	p, err := timeoutPolicy(d)
	if err != nil {
		return nil, err
	}
	return m.c.acquire(ctx, exclusive, p)
}

// TryLockWithRetries makes one attempt and up to retries more, waiting for
// a release (or RetryInterval) between them. It fails with a
// *distkit.RetriesError (matching distkit.ErrRetriesExhausted).
func (m *Mutex) TryLockWithRetries(ctx context.Context, retries int) (*Guard, error) {
	p, err := retriesPolicy(retries)
	if err != nil {
		return nil, err
	}
	return m.c.acquire(ctx, exclusive, p)
}

// RWMutex is a distributed writer-preferring reader/writer lock: many
// readers or one writer. See the package documentation.
type RWMutex struct{ c *core }

// NewRWMutex returns an RWMutex for name over b; see NewMutex.
func NewRWMutex(b backend.Backend, name string, opts Options) (*RWMutex, error) {
	c, err := newCore(b, name, opts)
	if err != nil {
		return nil, err
	}
	return &RWMutex{c: c}, nil
}

// Name returns the lock's name.
func (rw *RWMutex) Name() string { return rw.c.name }

// Lock acquires the write lock, waiting until ctx is done. While it waits,
// new readers are held back.
func (rw *RWMutex) Lock(ctx context.Context) (*Guard, error) {
	return rw.c.acquire(ctx, writer, policy{})
}

// TryLock makes one attempt at the write lock.
func (rw *RWMutex) TryLock(ctx context.Context) (*Guard, error) {
	return rw.c.acquire(ctx, writer, policy{attempts: 1})
}

// TryLockWithTimeout waits at most d for the write lock.
func (rw *RWMutex) TryLockWithTimeout(ctx context.Context, d time.Duration) (*Guard, error) {
	p, err := timeoutPolicy(d)
	if err != nil {
		return nil, err
	}
	return rw.c.acquire(ctx, writer, p)
}

// TryLockWithRetries makes up to 1+retries attempts at the write lock.
func (rw *RWMutex) TryLockWithRetries(ctx context.Context, retries int) (*Guard, error) {
	p, err := retriesPolicy(retries)
	if err != nil {
		return nil, err
	}
	return rw.c.acquire(ctx, writer, p)
}

// RLock acquires a read lease, waiting until ctx is done.
func (rw *RWMutex) RLock(ctx context.Context) (*Guard, error) {
	return rw.c.acquire(ctx, shared, policy{})
}

// TryRLock makes one attempt at a read lease.
func (rw *RWMutex) TryRLock(ctx context.Context) (*Guard, error) {
	return rw.c.acquire(ctx, shared, policy{attempts: 1})
}

// TryRLockWithTimeout waits at most d for a read lease.
func (rw *RWMutex) TryRLockWithTimeout(ctx context.Context, d time.Duration) (*Guard, error) {
	p, err := timeoutPolicy(d)
	if err != nil {
		return nil, err
	}
	return rw.c.acquire(ctx, shared, p)
}

// TryRLockWithRetries makes up to 1+retries attempts at a read lease.
func (rw *RWMutex) TryRLockWithRetries(ctx context.Context, retries int) (*Guard, error) {
	p, err := retriesPolicy(retries)
	if err != nil {
		return nil, err
	}
	return rw.c.acquire(ctx, shared, p)
}
