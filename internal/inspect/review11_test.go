package inspect_test

import (
	"context"
	"runtime"
	"testing"

	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/inspect"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/lock"
)

// An operator whose ACL grants every key and command but no Pub/Sub
// channel (Redis 7's default for new users) breaks a lock: the break
// deletes the lease and then publishes on the lock's channel, which the
// server refuses. BreakLock must report what it removed, not an error
// after the lease is already gone (issue 11 item 6, as in Release).
func TestReview11_BreakLockWithoutChannelPermission(t *testing.T) {
	ctx := context.Background()
	s := env.Server(t)
	if _, err := s.Do("ACL", "SETUSER", "dk-r11-nopub", "on", ">pw", "~*", "+@all", "resetchannels"); err != nil {
		t.Fatal(err)
	}
	owner := backends(t)["redis"](t)
	prefix := testkit.Prefix(t)
	m := testkit.NewMutex(t, owner, "m", lock.Options{Prefix: prefix})
	g, err := m.TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the guard reachable: a collected Guard is reported Lost and
	// released in the background, which would empty the lock under the test.
	defer runtime.KeepAlive(g)
	op, err := rueidisbackend.FromURL("redis://dk-r11-nopub:pw@" + s.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	l, err := inspect.ReadLock(ctx, op, prefix, "m")
	if err != nil || l.Holder == nil {
		t.Fatalf("ReadLock: %+v, %v", l, err)
	}
	got, err := inspect.BreakLock(ctx, op, prefix, l)
	after, rerr := inspect.ReadLock(ctx, op, prefix, "m")
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil || !got.Holder {
		t.Fatalf("BreakLock without channel permission: %+v, %v (lease still there: %v); want the holder removed and no error",
			got, err, after.Holder != nil)
	}
}
