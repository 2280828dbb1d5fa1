package instancecounter_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/internal/icscript"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// opStub answers the Op script at once with a fixed state (a new version
// each time) and passes every other script on: what a Strict call costs
// in process, without the backend's own work.
type opStub struct {
	backend.Backend
	mu      sync.Mutex
	version int64
}

func (o *opStub) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	if s.Name() != icscript.Op.Name() {
		return o.Backend.EvalScript(ctx, s, keys, args...)
	}
	o.mu.Lock()
	o.version++
	v := strconv.FormatInt(o.version, 10)
	o.mu.Unlock()
	return backend.Arr(backend.Str("ok"), backend.Str(v), backend.Str(v), backend.Str("0"),
		backend.Str("1"), backend.Str("1"), backend.Str("0"), backend.Str("0")), nil
}

// The first call on a key costs Strict the same whatever the number of
// keys it used before. (Before: each new key copied the map of every key
// ever used, so touching n keys was quadratic.)
func TestStrictNewKeyCostIndependentOfKeys(t *testing.T) {
	ctx := context.Background()
	measure := func(old int) uint64 {
		s := newStrict(t, &opStub{Backend: memory.New(memory.Options{}).Connect()}, fmt.Sprint("strict-", old))
		for i := range old {
			if _, _, err := s.Inc(ctx, fmt.Sprint("old-", i), 1); err != nil {
				t.Fatal(err)
			}
		}
		// The least of three rounds: background work (heartbeats, other
		// tests' goroutines winding down) allocates too.
		best := uint64(1 << 62)
		for round := range 3 {
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = fmt.Sprint("new-", round, "-", i)
			}
			best = min(best, allocBytes(func() {
				for _, k := range keys {
					if _, _, err := s.Inc(ctx, k, 1); err != nil {
						t.Fatal(err)
					}
				}
			})/uint64(len(keys)))
		}
		return best
	}
	small, large := measure(100), measure(10_000)
	t.Logf("a new key allocates %d B after 100 keys, %d B after 10 000", small, large)
	if large > 2*small+1024 {
		t.Errorf("a new key allocates %d B after 10 000 keys, %d B after 100", large, small)
	}
}

// A comeback of a Strict instance reports only the keys with something to
// report (a slice, a Set or Del newer than the last Clear), not every key
// it ever used: keys whose slice went back to 0 stay out.
func TestStrictRejoinSendsOnlyNonZero(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	rec := &rejoinRecorder{Backend: b.Connect()}
	s, err := instancecounter.NewStrict(rec, instancecounter.Options{Prefix: "t", InstanceID: "strict", DeadAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	if err := s.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		k := fmt.Sprint("k", i)
		if _, _, err := s.Inc(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Dec(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Inc(ctx, "a", 3)
	s.Inc(ctx, "b", 4)
	b.FlushAll()
	rec.mu.Lock()
	rec.keys = nil
	rec.mu.Unlock()
	if _, _, err := s.Get(ctx, "a"); err != nil { // finds the instance absent: rejoins
		t.Fatal(err)
	}
	rec.mu.Lock()
	got := fmt.Sprint(rec.keys)
	rec.mu.Unlock()
	if got != "[2]" {
		t.Fatalf("rejoins reported %s keys, want one rejoin with the 2 keys that have a slice", got)
	}
	reader := newStrict(t, b.Connect(), "reader")
	for k, want := range map[string]int64{"a": 3, "b": 4, "k7": 0} {
		if c, _, err := reader.Get(ctx, k); err != nil || c != want {
			t.Fatalf("%s = %d, %v after the comeback; want %d", k, c, err, want)
		}
	}
}
