// Package icmodel is the model-based randomized test of the instance
// counters (primitives/instancecounter): seeded histories of several
// instances — goroutines in this process and, where the server can be
// reached from other processes, worker processes — doing random
// operations on several keys, Strict and Lax, with heartbeats, pauses past
// DeadAfter, comebacks whose first action is an operation, a flush or a
// heartbeat, server data loss and replies lost after the server ran the
// call. A small reference model says what every read must return; after
// quiescence the cumulative value of every key must be the sum of the live
// instances' slices as the model has them, so nothing acknowledged is
// lost or counted twice.
//
// It is test machinery, compiled only into tests: the memory backend runs
// it in this package's tests, the Redis drivers through internal/processtest
// (a real redis-server restarted without persistence, the Cluster, worker
// processes), internal/chaos with long seeds.
package icmodel

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
)

// world is one possible assignment of slices for one key: instance index →
// slice (absent means 0).
type world map[int]int64

func (w world) clone() world { return maps.Clone(w) }

func (w world) sig() string {
	ks := slices.Sorted(maps.Keys(w))
	var b strings.Builder
	for _, k := range ks {
		if w[k] != 0 {
			fmt.Fprintf(&b, "%d=%d,", k, w[k])
		}
	}
	return b.String()
}

// maxWorlds bounds the possibilities a key may have; indeterminate calls
// are resolved right after they happen, so a handful is the most a history
// needs.
const maxWorlds = 64

// model is the reference: per key the set of possible worlds (more than
// one only while a call whose reply was lost is unresolved), and per Lax
// instance the deltas it acknowledged but the model has not applied yet (a
// Lax delta lands when its flush does).
type model struct {
	worlds  map[string][]world
	pending map[int]map[string]int64
}

func newModel(keys []string) *model {
	m := &model{worlds: map[string][]world{}, pending: map[int]map[string]int64{}}
	for _, k := range keys {
		m.worlds[k] = []world{{}}
	}
	return m
}

func (m *model) set(key string, ws []world) error {
	seen := map[string]bool{}
	var out []world
	for _, w := range ws {
		if s := w.sig(); !seen[s] {
			seen[s] = true
			out = append(out, w)
		}
	}
	if len(out) > maxWorlds {
		return fmt.Errorf("model: %d possible worlds for %q", len(out), key)
	}
	m.worlds[key] = out
	return nil
}

// apply applies f to every world of key; with maybe, the worlds without
// it stay possible too (a call with an unknown outcome).
func (m *model) apply(key string, maybe bool, f func(w world)) error {
	var out []world
	for _, w := range m.worlds[key] {
		if maybe {
			out = append(out, w)
		}
		c := w.clone()
		f(c)
		out = append(out, c)
	}
	return m.set(key, out)
}

// observe keeps the worlds where instance i's slice of key is mine; it
// fails when there is none.
func (m *model) observe(key string, i int, mine int64) error {
	var out []world
	for _, w := range m.worlds[key] {
		if w[i] == mine {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("instance %d's slice of %q is %d; the model allows %s", i, key, mine, m.slicesOf(key, i))
	}
	m.worlds[key] = out
	return nil
}

func (m *model) slicesOf(key string, i int) string {
	var vs []string
	for _, w := range m.worlds[key] {
		vs = append(vs, fmt.Sprint(w[i]))
	}
	sort.Strings(vs)
	return "{" + strings.Join(slices.Compact(vs), " ") + "}"
}

// addPending records an acknowledged Lax delta.
func (m *model) addPending(i int, key string, d int64) {
	if m.pending[i] == nil {
		m.pending[i] = map[string]int64{}
	}
	m.pending[i][key] += d
}

// land applies instance i's pending deltas of key (all keys when key is
// "") to the worlds: its flush went through.
func (m *model) land(i int, key string) error {
	for k, d := range m.pending[i] {
		if (key == "" || k == key) && d != 0 {
			if err := m.apply(k, false, func(w world) { w[i] += d }); err != nil {
				return err
			}
			delete(m.pending[i], k)
		}
	}
	return nil
}

// check verifies a quiescent snapshot of key: the slices of the live
// instances (by index) and the cumulative value. Some world must give
// every live instance exactly its slice; the model then keeps only that
// world.
func (m *model) check(key string, live []int, slice map[int]int64, cumulative int64) error {
	var sum int64
	for _, i := range live {
		sum += slice[i]
	}
	if sum != cumulative {
		return fmt.Errorf("%q: cumulative %d, but the live instances' slices %v sum to %d", key, cumulative, slice, sum)
	}
	for _, w := range m.worlds[key] {
		ok := true
		for _, i := range live {
			if w[i] != slice[i] {
				ok = false
				break
			}
		}
		if ok {
			c := world{}
			for _, i := range live {
				c[i] = slice[i]
			}
			for i, v := range w { // instances not live keep what the model says
				if !slices.Contains(live, i) {
					c[i] = v
				}
			}
			m.worlds[key] = []world{c}
			return nil
		}
	}
	var want []string
	for _, w := range m.worlds[key] {
		var parts []string
		var s int64
		for _, i := range live {
			parts = append(parts, fmt.Sprintf("%d:%d", i, w[i]))
			s += w[i]
		}
		want = append(want, fmt.Sprintf("[%s]=%d", strings.Join(parts, " "), s))
	}
	got := make([]string, 0, len(live))
	for _, i := range live {
		got = append(got, fmt.Sprintf("%d:%d", i, slice[i]))
	}
	return fmt.Errorf("%q: live slices [%s] (cumulative %d); the model allows %s", key, strings.Join(got, " "), cumulative, strings.Join(want, " or "))
}
