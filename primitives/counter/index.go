package counter

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// index maps keys to entries for Lax. Reads of a warm key are one atomic
// load and one map lookup: no lock, no allocation (sync.Map would box the
// string key into an interface on every Load). New keys go to a
// mutex-guarded dirty map that is promoted to the read map after enough
// misses, as sync.Map does.
//
// In front of the maps sits a small cache indexed by the address of the
// caller's key bytes, not their content: a call site that passes the same
// string again (a constant, a long-lived key) finds its entry without
// hashing the key. A hit is confirmed by comparing the key itself, which
// is a pointer comparison for the same string, so the cache is never wrong.
type index struct {
	cache [cacheSlots]atomic.Pointer[entry]
	read  atomic.Pointer[map[string]*entry]

	mu     sync.Mutex
	dirty  map[string]*entry // nil, or a superset of *read
	misses int
}

const cacheSlots = 256

// slot returns the cache slot for key's address.
func (ix *index) slot(key string) *atomic.Pointer[entry] {
	p := uintptr(unsafe.Pointer(unsafe.StringData(key)))
	return &ix.cache[(p>>4^p>>12)%cacheSlots]
}

func newIndex() *index {
	ix := &index{}
	m := map[string]*entry{}
	ix.read.Store(&m)
	return ix
}

// load returns the entry of key, or nil.
func (ix *index) load(key string) *entry {
	if e := (*ix.read.Load())[key]; e != nil {
		return e
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.loadLocked(key)
}

func (ix *index) loadLocked(key string) *entry {
	if e := (*ix.read.Load())[key]; e != nil {
		return e
	}
	if ix.dirty == nil {
		return nil
	}
	e := ix.dirty[key]
	ix.misses++
	if ix.misses >= len(ix.dirty) {
		d := ix.dirty
		ix.read.Store(&d)
		ix.dirty, ix.misses = nil, 0
	}
	return e
}

// loadOrStore returns the entry of key, creating it with mk when absent.
func (ix *index) loadOrStore(key string, mk func() *entry) *entry {
	if e := (*ix.read.Load())[key]; e != nil {
		return e
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.loadLocked(key); e != nil {
		return e
	}
	if ix.dirty == nil {
		r := *ix.read.Load()
		ix.dirty = make(map[string]*entry, len(r)+1)
		for k, v := range r {
			ix.dirty[k] = v
		}
	}
	e := mk()
	ix.dirty[key] = e
	return e
}

// each calls f for every entry.
func (ix *index) each(f func(*entry)) {
	ix.mu.Lock()
	m := ix.dirty
	if m == nil {
		m = *ix.read.Load()
	}
	entries := make([]*entry, 0, len(m))
	for _, e := range m {
		entries = append(entries, e)
	}
	ix.mu.Unlock()
	for _, e := range entries {
		f(e)
	}
}
