package flush

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"unsafe"
)

// index maps keys to entries. Lookups are lock-free: an open-addressing
// table of (hash, entry) slots read with atomic loads, so a warm key costs
// one hash, one or two slot loads and one key comparison, with no
// interface boxing and no allocation. Inserts, deletes and rebuilds take
// mu; a rebuild (growth, shrinking, dropping tombstones) builds a new
// table and publishes it with one atomic store, while readers finish on
// the old one, which stays valid.
//
// In front of the table sits a small cache indexed by the address of the
// caller's key bytes: a call site that passes the same string again (a
// constant, a long-lived key) finds its entry without hashing. An entry
// keeps the string it was created with, so those bytes cannot change (Go
// strings are immutable while referenced): a string with the same address
// and length has the same content. A slot therefore holds an entry whose
// own key is the caller's string, a hit costs one pointer comparison, and
// so does a slot holding another key. Slots are filled only when free
// (tidyLocked frees those of unlinked entries), so a stream of distinct
// keys does not keep rewriting them.
type index[T any] struct {
	cache addrCache
	table atomic.Pointer[table[T]]
	seed  uint64

	mu   sync.Mutex // serialises writers
	live int        // linked entries
	used int        // live + tombstones in the current table
}

const (
	cacheSlots = 256
	minTable   = 16
	hEmpty     = 0
	hTomb      = 1
)

type slot[T any] struct {
	h atomic.Uint64 // hEmpty, hTomb, or the entry's hash (bit 1 set)
	e atomic.Pointer[Entry[T]]
}

type table[T any] struct {
	mask  uint64
	slots []slot[T]
}

func newTable[T any](size int) *table[T] {
	return &table[T]{mask: uint64(size - 1), slots: make([]slot[T], size)}
}

func (ix *index[T]) init() {
	ix.seed = rand.Uint64()
	ix.table.Store(newTable[T](minTable))
}

func (ix *index[T]) hash(key string) uint64 { return strhash(key, ix.seed) | 2 }

// addrCache is the address-indexed cache; not generic (it holds the heads
// of entries), so that its lookup is cheap enough to be inlined.
type addrCache struct {
	slots [cacheSlots]atomic.Pointer[head]
}

func (c *addrCache) slot(key string) *atomic.Pointer[head] {
	p := uintptr(unsafe.Pointer(unsafe.StringData(key)))
	return &c.slots[(p>>4^p>>12)%cacheSlots]
}

// get returns the linked entry created with this very string, or nil.
func (c *addrCache) get(key string) *head {
	if h := c.slot(key).Load(); h != nil && unsafe.StringData(h.key) == unsafe.StringData(key) &&
		len(h.key) == len(key) && h.state.Load() == stateLinked {
		return h // the entry's own string: the same bytes
	}
	return nil
}

// lookupMiss is a lookup past the cache: the table, then a free cache
// slot is filled (tidyLocked frees those of unlinked entries).
func (ix *index[T]) lookupMiss(key string) *Entry[T] {
	e := ix.lookupTable(key)
	if e != nil && unsafe.StringData(e.key) == unsafe.StringData(key) {
		ix.remember(key, e)
	}
	return e
}

func (ix *index[T]) lookupTable(key string) *Entry[T] {
	h := ix.hash(key)
	t := ix.table.Load()
	for i := h; ; i++ {
		s := &t.slots[i&t.mask]
		switch sh := s.h.Load(); sh {
		case hEmpty:
			return nil
		case h:
			if e := s.e.Load(); e != nil && sameString(e.key, key) {
				return e
			}
		}
	}
}

// sameString is a == b, without a call when both share their bytes (the
// common case: the entry keeps the string its creator passed).
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// remember puts e, created with key, in key's cache slot when the slot is
// free.
func (ix *index[T]) remember(key string, e *Entry[T]) {
	if c := ix.cache.slot(key); c.Load() == nil {
		c.CompareAndSwap(nil, &e.head)
	}
}

// loadOrStore returns key's linked entry, creating it with mk when absent.
// The entry keeps the caller's string, as a Go map would (a lookup with
// the same string then compares one pointer, not the bytes).
func (ix *index[T]) loadOrStore(key string, mk func(e *Entry[T])) *Entry[T] {
	if e := ix.lookupTable(key); e != nil {
		return e
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	h := ix.hash(key)
	t := ix.table.Load()
	for i := h; ; i++ {
		s := &t.slots[i&t.mask]
		sh := s.h.Load()
		if sh == hEmpty {
			break
		}
		if sh == h {
			if e := s.e.Load(); e != nil && sameString(e.key, key) {
				return e
			}
		}
	}
	e := &Entry[T]{head: head{key: key}, hash: h}
	mk(e)
	if (ix.used+1)*4 > 3*len(t.slots) { // load factor at most 3/4
		t = ix.rebuildLocked(ix.live + 1)
	}
	ix.insertLocked(t, e)
	ix.live++
	ix.remember(key, e)
	return e
}

// insertLocked places e (not present) in t.
func (ix *index[T]) insertLocked(t *table[T], e *Entry[T]) {
	for i := e.hash; ; i++ {
		s := &t.slots[i&t.mask]
		switch s.h.Load() {
		case hEmpty:
			ix.used++
			fallthrough
		case hTomb:
			s.e.Store(e) // the entry before the hash: a reader that sees the hash sees the entry
			s.h.Store(e.hash)
			return
		}
	}
}

// rebuildLocked publishes a fresh table sized for n live entries (load
// factor 1/4 to 1/2), without tombstones, and returns it.
func (ix *index[T]) rebuildLocked(n int) *table[T] {
	size := minTable
	for size < 2*n {
		size <<= 1
	}
	old := ix.table.Load()
	t := newTable[T](size)
	ix.used = 0
	for i := range old.slots {
		s := &old.slots[i]
		if h := s.h.Load(); h != hEmpty && h != hTomb {
			ix.insertLocked(t, s.e.Load())
		}
	}
	ix.table.Store(t)
	return t
}

// unlinkLocked removes e (found at slot s) and marks it unlinked.
func (ix *index[T]) unlinkLocked(s *slot[T], e *Entry[T]) {
	e.state.Store(stateUnlinked)
	s.h.Store(hTomb)
	s.e.Store(nil)
	ix.live--
}

// remove unlinks e if it is still key's entry and keep(e) is false.
func (ix *index[T]) remove(e *Entry[T], drop func(*Entry[T]) bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	t := ix.table.Load()
	for i := e.hash; ; i++ {
		s := &t.slots[i&t.mask]
		sh := s.h.Load()
		if sh == hEmpty {
			return
		}
		if sh == e.hash && s.e.Load() == e {
			if drop(e) {
				ix.unlinkLocked(s, e)
				ix.tidyLocked()
			}
			return
		}
	}
}

// sweep unlinks the entries of slots [from, to) for which drop is true
// and returns the table's size, so that the caller can walk it in steps.
func (ix *index[T]) sweep(from, to int, drop func(*Entry[T]) bool) (size int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	t := ix.table.Load()
	for i := from; i < to && i < len(t.slots); i++ {
		s := &t.slots[i]
		if h := s.h.Load(); h != hEmpty && h != hTomb {
			if e := s.e.Load(); drop(e) {
				ix.unlinkLocked(s, e)
			}
		}
	}
	size = len(t.slots)
	if ix.tidyLocked() {
		size = len(ix.table.Load().slots)
	}
	return size
}

// tidyLocked rebuilds the table when tombstones or emptiness waste it, and
// clears cache slots that hold unlinked entries. It reports whether it
// rebuilt.
func (ix *index[T]) tidyLocked() bool {
	for i := range ix.cache.slots {
		if h := ix.cache.slots[i].Load(); h != nil && h.state.Load() != stateLinked {
			ix.cache.slots[i].CompareAndSwap(h, nil)
		}
	}
	n := len(ix.table.Load().slots)
	if (ix.used-ix.live)*4 > n || (n > minTable && ix.live*8 < n) {
		ix.rebuildLocked(ix.live)
		return true
	}
	return false
}

// each calls f for every linked entry of the current table (lock-free; a
// concurrent insert may or may not be seen).
func (ix *index[T]) each(f func(*Entry[T])) {
	t := ix.table.Load()
	for i := range t.slots {
		s := &t.slots[i]
		if h := s.h.Load(); h != hEmpty && h != hTomb {
			if e := s.e.Load(); e != nil {
				f(e)
			}
		}
	}
}

func (ix *index[T]) len() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.live
}

// strhash is wyhash's final mixing over a string: fast for short keys and
// seeded per index, so that no two indexes collide on the same keys.
func strhash(s string, seed uint64) uint64 {
	const (
		p0 = 0xa0761d6478bd642f
		p1 = 0xe7037ed1a0b428db
	)
	n := len(s)
	p := unsafe.Slice(unsafe.StringData(s), n)
	seed ^= p0
	var a, b uint64
	switch {
	case n == 0:
	case n < 4:
		a = uint64(p[0])<<16 | uint64(p[n>>1])<<8 | uint64(p[n-1])
	case n <= 8:
		a = uint64(binary.LittleEndian.Uint32(p))
		b = uint64(binary.LittleEndian.Uint32(p[n-4:]))
	case n <= 16:
		a = binary.LittleEndian.Uint64(p)
		b = binary.LittleEndian.Uint64(p[n-8:])
	default:
		i := 0
		for ; n-i > 16; i += 16 {
			seed = mix(binary.LittleEndian.Uint64(p[i:])^p1, binary.LittleEndian.Uint64(p[i+8:])^seed)
		}
		a = binary.LittleEndian.Uint64(p[n-16:])
		b = binary.LittleEndian.Uint64(p[n-8:])
	}
	return mix(p1^uint64(n), mix(a^p1, b^seed))
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
