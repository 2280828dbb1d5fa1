package drivertest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/primitives/lock"
)

// releaseWithoutPublish: a user whose ACL grants every key and command but
// no Pub/Sub channel (Redis 7's default for new users) holds a lock.
// Release deletes the lock and then publishes on its channel, which the
// server refuses: Release must still report success, since the lock is
// gone, and the next Lock must succeed at once.
func releaseWithoutPublish(t *testing.T, env *redistest.Env, d Driver) {
	s := env.Server(t)
	if _, err := s.Do("ACL", "SETUSER", "dk-nopub", "on", ">pw", "~*", "+@all", "resetchannels"); err != nil {
		t.Fatal(err)
	}
	b, err := d.FromURL("redis://dk-nopub:pw@" + s.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := lock.NewMutex(b, "acl-"+strings.ReplaceAll(t.Name(), "/", "-"), lock.Options{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Release(ctx)
	if err != nil || st != lock.Released {
		t.Fatalf("Release without channel permission: state %v, err %v; want Released, nil", st, err)
	}
	g2, err := m.TryLock(ctx)
	if err != nil {
		t.Fatalf("TryLock after the release: %v", err)
	}
	if _, err := g2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
