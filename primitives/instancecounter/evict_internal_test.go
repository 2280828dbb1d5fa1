package instancecounter

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
)

// A flush reply for an entry that left the index while its delta was on
// its way (evicted as an Inc raced) is passed on to the key's current
// entry: the slice is remembered, and a comeback contributes it.
func TestLaxReplyOfUnlinkedEntryPassedOn(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Options{})
	l, err := NewLax(b.Connect(), Options{Prefix: "t", InstanceID: "lax", FlushInterval: time.Hour, DeadAfter: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, _, err := l.Get(ctx, "k"); err != nil { // registered
		t.Fatal(err)
	}
	l.Inc(ctx, "k", 5)
	e := l.lx.g.Lookup("k")
	l.lx.g.Retire(e) // what an eviction racing with the Inc leaves: the delta on an unlinked entry
	if l.lx.g.Lookup("k") != nil {
		t.Fatal("the entry is still linked")
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := l.lx.g.Lookup("k")
	if n == nil || n.X.mine.Load() != 5 {
		t.Fatalf("the key's current entry does not know its slice of 5 (%v)", n)
	}
	if c, m, _ := l.Inc(ctx, "k", 1); c != 6 || m != 6 {
		t.Fatalf("view after the reply was passed on: (%d, %d), want (6, 6)", c, m)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	b.FlushAll()
	if c, m, err := l.Get(ctx, "k"); err != nil || c != 6 || m != 6 {
		t.Fatalf("after the comeback: (%d, %d), %v; want (6, 6)", c, m, err)
	}
}
