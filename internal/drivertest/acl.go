package drivertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
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

// deniedAfterWrite: a script writes a key the user may write, then calls a
// command on a key the user may not touch. The server refuses that call
// inside the running script, after the first write: the outcome must not
// be ErrNotApplied (the script ran and wrote), nor success.
func deniedAfterWrite(t *testing.T, env *redistest.Env, d Driver) {
	s := env.Server(t)
	ok := "{acl2}:ok:" + strings.ReplaceAll(t.Name(), "/", "-")
	if _, err := s.Do("ACL", "SETUSER", "dk-onekey", "on", ">pw", "resetkeys", "~"+ok, "+@all"); err != nil {
		t.Fatal(err)
	}
	b, err := d.FromURL("redis://dk-onekey:pw@" + s.Addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The denied key is not declared (the server would refuse the call
	// before running the script): the script names it in ARGV.
	_, err = b.EvalScript(ctx, writeThenDenied, []string{ok}, "{acl2}:denied")
	n, _ := s.Do("GET", ok)
	t.Logf("outcome %v; witness %s", err, n)
	if n != "1" {
		t.Fatalf("witness %q, want 1", n)
	}
	if err == nil || errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("a script denied a key after its first write: %v; want an error that is not ErrNotApplied", err)
	}
}

var writeThenDenied = driver.NewScript("acl-write-then-denied", `
redis.call('INCR', KEYS[1])
return redis.call('INCR', ARGV[1])
`, func(st driver.Store, keys, _ []string) (backend.Value, error) {
	return backend.Value{}, errors.New("ERR denied")
})
