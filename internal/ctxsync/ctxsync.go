// Package ctxsync has a mutex whose Lock can give up when a context ends,
// for locks that are held across backend calls: a caller waiting for such
// a lock (a Close, a call with a deadline) must not wait longer than its
// context because another call holds the lock while the backend hangs.
package ctxsync

import "context"

// Mutex is a mutual exclusion lock; its zero value is not usable, make one
// with NewMutex. Unlock of an unlocked Mutex blocks.
type Mutex struct{ ch chan struct{} }

// NewMutex returns an unlocked Mutex.
func NewMutex() *Mutex { return &Mutex{ch: make(chan struct{}, 1)} }

// Lock locks m, waiting as long as it takes.
func (m *Mutex) Lock() { m.ch <- struct{}{} }

// LockCtx locks m, or returns ctx's error if ctx ends first.
func (m *Mutex) LockCtx(ctx context.Context) error {
	select {
	case m.ch <- struct{}{}:
		return nil
	default:
	}
	select {
	case m.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryLock locks m if it is free and reports whether it did.
func (m *Mutex) TryLock() bool {
	select {
	case m.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// Unlock unlocks m.
func (m *Mutex) Unlock() { <-m.ch }
