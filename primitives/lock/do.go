package lock

import (
	"context"
	"errors"
)

// Locker is what Do locks: *Mutex and *RWMutex (its write lock) are
// Lockers; LockerFunc(rw.RLock) adapts an RWMutex's read lock.
type Locker interface {
	Lock(ctx context.Context) (*Guard, error)
}

// LockerFunc adapts a function such as rw.RLock to a Locker.
type LockerFunc func(ctx context.Context) (*Guard, error)

// Lock calls f(ctx).
func (f LockerFunc) Lock(ctx context.Context) (*Guard, error) { return f(ctx) }

// Do acquires l (waiting until ctx is done), runs fn with a context that is
// cancelled when the lease is lost (its context.Cause matches
// distkit.ErrLeaseLost) and the acquisition's fencing token, then releases,
// also when fn panics. The release runs on a context of its own, detached
// from ctx (which may have ended meanwhile) and bounded by min(TTL, 5 s).
//
// Do returns the acquisition's error, or fn's error joined with the
// release's: an error matching distkit.ErrNotHeld and distkit.ErrLeaseLost
// means the lease was lost at some point while fn ran, so fn may have run
// without exclusion for part of it (protect what fn writes with the token);
// any other release error means the lease may survive until its TTL.
func Do(ctx context.Context, l Locker, fn func(ctx context.Context, token int64) error) (err error) {
	g, err := l.Lock(ctx)
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.releaseWait())
		defer cancel()
		if _, rerr := g.Release(rctx); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	return fn(g.Context(ctx), g.Token())
}
