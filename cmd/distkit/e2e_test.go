package main

import (
	"context"
	"encoding/base64"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/scriptset"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/counter"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// The JSON documents as the package documentation describes them.
type (
	jCounter struct {
		Key       string `json:"key"`
		KeyBase64 string `json:"key_base64"`
		Value     int64  `json:"value"`
		Exists    bool   `json:"exists"`
	}
	jCounters struct {
		Prefix   string     `json:"prefix"`
		Pattern  string     `json:"pattern"`
		Counters []jCounter `json:"counters"`
	}
	jLease struct {
		Owner       string `json:"owner"`
		OwnerBase64 string `json:"owner_base64"`
		Acquisition string `json:"acquisition"`
		Token       int64  `json:"token"`
		AcquiredAt  string `json:"acquired_at"`
		TTLMs       int64  `json:"ttl_ms"`
	}
	jWaiter struct {
		Kind        string `json:"kind"`
		Owner       string `json:"owner"`
		OwnerBase64 string `json:"owner_base64"`
		Acquisition string `json:"acquisition"`
		TTLMs       int64  `json:"ttl_ms"`
		Position    int    `json:"position"`
	}
	jLock struct {
		Prefix     string    `json:"prefix"`
		Name       string    `json:"name"`
		NameBase64 string    `json:"name_base64"`
		Exists     bool      `json:"exists"`
		State      string    `json:"state"`
		Holder     *jLease   `json:"holder"`
		Readers    []jLease  `json:"readers"`
		Waiters    []jWaiter `json:"waiters"`
		Fence      int64     `json:"fence"`
		ServerTime string    `json:"server_time"`
	}
)

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return tm
}

func matchLines(t *testing.T, r result, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)` + p).MatchString(r.stdout) {
			t.Errorf("stdout does not match %q:\n%s", p, r.stdout)
		}
	}
}

// A contended Mutex and an RWMutex with two readers and a waiting writer,
// shown as a table and as JSON.
func TestLockShow(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	m := testkit.NewMutex(t, tg.b, "orders-42", lock.Options{Prefix: tg.prefix, Owner: "worker-1@host-a"})
	held, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Release(context.Background()) })
	waitFor := func(name, owner string, rw bool) {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			var g *lock.Guard
			var err error
			// A 1 s retry interval makes the writer's waiting mark live 3 s,
			// refreshed every second: it cannot lapse between two reads of a
			// loaded machine.
			opts := lock.Options{Prefix: tg.prefix, Owner: owner, RetryInterval: time.Second}
			if rw {
				g, err = testkit.NewRWMutex(t, tg.b, name, opts).Lock(wctx)
			} else {
				g, err = testkit.NewMutex(t, tg.b, name, opts).Lock(wctx)
			}
			if err == nil {
				<-wctx.Done()
				g.Release(context.Background())
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	waitFor("orders-42", "worker-2@host-b", false)

	var readers []*lock.Guard
	for _, owner := range []string{"reader-1@host-a", "reader-2@host-b"} {
		g, err := testkit.NewRWMutex(t, tg.b, "doc-7", lock.Options{Prefix: tg.prefix, Owner: owner}).RLock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, g)
		t.Cleanup(func() { g.Release(context.Background()) })
	}
	waitFor("doc-7", "writer-1@host-c", true)

	// The Mutex: held, with its holder's owner, acquisition, token and TTL,
	// and its waiter in the queue.
	testkit.Eventually(t, 5*time.Second, "the Mutex waiter in the queue", func() bool {
		r := tg.ok(t, "lock", "show", "orders-42", "--json")
		var l jLock
		decode(t, r, &l)
		return len(l.Waiters) == 1
	})
	r := tg.ok(t, "lock", "show", "orders-42")
	t.Logf("$ distkit lock show orders-42\n%s", r.stdout)
	tok := regexp.QuoteMeta(itoa(held.Token()))
	matchLines(t, r,
		`^name:\s+orders-42$`, `^state:\s+held \(exclusive\)$`, `^fence:\s+`+tok+` \(last token issued\)$`,
		`^ROLE\s+OWNER\s+ACQUISITION\s+TOKEN\s+ACQUIRED\s+TTL$`,
		`^holder\s+worker-1@host-a\s+[0-9a-z]+\s+`+tok+`\s+\d[.\dmµs]* ago\s+(2\d|30)(\.\d)?s$`,
		`^queued #1\s+worker-2@host-b\s+[0-9a-z]+\s+-\s+-\s+\S+s$`)
	r = tg.ok(t, "lock", "show", "orders-42", "--json")
	t.Logf("$ distkit lock show orders-42 --json\n%s", r.stdout)
	var l jLock
	decode(t, r, &l)
	if l.Name != "orders-42" || l.Prefix != tg.prefix || !l.Exists || l.State != "held" || l.Holder == nil ||
		l.Holder.Owner != "worker-1@host-a" || l.Holder.Token != held.Token() || l.Fence != held.Token() ||
		l.Holder.TTLMs <= 0 || l.Holder.TTLMs > 30000 || l.Holder.Acquisition == "" ||
		len(l.Readers) != 0 || len(l.Waiters) != 1 || l.Waiters[0].Kind != "queued" ||
		l.Waiters[0].Owner != "worker-2@host-b" || l.Waiters[0].Position != 1 || l.Waiters[0].TTLMs <= 0 {
		t.Fatalf("lock show orders-42: %+v (holder %+v), token %d", l, l.Holder, held.Token())
	}
	server := parseTime(t, l.ServerTime)
	if at := parseTime(t, l.Holder.AcquiredAt); at.After(server) || server.Sub(at) > time.Minute {
		t.Errorf("acquired_at %v, server time %v", at, server)
	}

	// The RWMutex: two readers and a writer waiting.
	testkit.Eventually(t, 5*time.Second, "the writer's waiting mark", func() bool {
		r := tg.ok(t, "lock", "show", "doc-7", "--json")
		l = jLock{}
		decode(t, r, &l)
		return len(l.Waiters) == 1
	})
	r = tg.ok(t, "lock", "show", "doc-7")
	t.Logf("$ distkit lock show doc-7\n%s", r.stdout)
	matchLines(t, r, `^state:\s+read \(2 readers\)$`,
		`^reader\s+reader-1@host-a\s+[0-9a-z]+\s+`+itoa(readers[0].Token())+`\s+\S+ ago\s+\S+s$`,
		`^reader\s+reader-2@host-b\s+[0-9a-z]+\s+`+itoa(readers[1].Token())+`\s+\S+ ago\s+\S+s$`,
		`^waiting writer\s+writer-1@host-c\s+[0-9a-z]+\s+-\s+-\s+\S+s$`)
	r = tg.ok(t, "lock", "show", "doc-7", "--json")
	t.Logf("$ distkit lock show doc-7 --json\n%s", r.stdout)
	l = jLock{}
	decode(t, r, &l)
	owners := map[string]int64{}
	for _, x := range l.Readers {
		owners[x.Owner] = x.Token
		if x.TTLMs <= 0 || x.AcquiredAt == "" {
			t.Errorf("reader %+v", x)
		}
	}
	if l.State != "read" || l.Holder != nil || len(l.Readers) != 2 || owners["reader-1@host-a"] != readers[0].Token() ||
		owners["reader-2@host-b"] != readers[1].Token() || len(l.Waiters) != 1 || l.Waiters[0].Kind != "writer" ||
		l.Waiters[0].Owner != "writer-1@host-c" || l.Waiters[0].TTLMs <= 0 || l.Waiters[0].Position != 1 || l.Fence != max(readers[0].Token(), readers[1].Token()) {
		t.Fatalf("lock show doc-7: %+v", l)
	}

	// A name never used: not found, exit 1, with the JSON document still printed.
	r = tg.expect(t, exitNotFound, "lock", "show", "never-used", "--json")
	l = jLock{}
	decode(t, r, &l)
	if l.Exists || l.State != "free" || l.Holder != nil || l.Readers == nil || l.Waiters == nil {
		t.Fatalf("absent lock: %+v", l)
	}
	if !strings.Contains(r.stderr, "not found") {
		t.Errorf("stderr: %q", r.stderr)
	}
}

// raw is a JSON string field's bytes: from its *_base64 sibling when set.
func raw(t *testing.T, s, b64 string) string {
	t.Helper()
	if b64 == "" {
		return s
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatalf("base64 %q: %v", b64, err)
	}
	return string(b)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// lock break deletes the leases but not the fencing counter: the broken
// holder finds out (Lost), the next holder's token is higher.
func TestLockBreak(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	m := testkit.NewMutex(t, tg.b, "stuck", lock.Options{Prefix: tg.prefix, Owner: "crashed-worker", TTL: time.Second})
	g, err := m.Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := tg.expect(t, exitUsage, "lock", "break", "stuck") // stdin is a pipe: no one to ask
	if !strings.Contains(r.stderr, "--yes") || r.stdout != "" {
		t.Fatalf("%v", r)
	}
	if g.State() != lock.Acquired {
		t.Fatal("refused break changed the lock")
	}
	r = tg.ok(t, "lock", "break", "stuck", "--yes", "--json")
	var out struct {
		Prefix     string  `json:"prefix"`
		Name       string  `json:"name"`
		NameBase64 string  `json:"name_base64"`
		Holder     *jLease `json:"holder"`
		Readers    int     `json:"readers_removed"`
		Fence      int64   `json:"fence"`
	}
	decode(t, r, &out)
	if out.Name != "stuck" || out.Holder == nil || out.Holder.Owner != "crashed-worker" || out.Holder.Token != g.Token() ||
		out.Readers != 0 || out.Fence != g.Token() {
		t.Fatalf("break: %+v", out)
	}
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the broken holder's guard was not told within 10s")
	}
	var l jLock
	decode(t, tg.ok(t, "lock", "show", "stuck", "--json"), &l)
	if l.State != "free" || l.Fence != g.Token() {
		t.Fatalf("after break: %+v", l)
	}
	tg.expect(t, exitNotFound, "lock", "break", "stuck", "--yes")
	g2, err := testkit.NewMutex(t, tg.b, "stuck", lock.Options{Prefix: tg.prefix}).TryLock(ctx)
	if err != nil || g2.Token() <= g.Token() {
		t.Fatalf("next holder: %v, token %d after %d", err, g2.Token(), g.Token())
	}
	testkit.Release(t, g2)

	// Readers are broken too, as a table.
	rg, err := testkit.NewRWMutex(t, tg.b, "shared", lock.Options{Prefix: tg.prefix, Owner: "r"}).RLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r = tg.ok(t, "--yes", "lock", "break", "shared")
	if want := "broke lock shared: no holder, 1 reader(s); fence stays at " + itoa(rg.Token()) + "\n"; r.stdout != want {
		t.Fatalf("got %q, want %q", r.stdout, want)
	}
	rg.Release(ctx)
}

// lock list finds every lock of the prefix on every Cluster master;
// counter list every counter; lock show works on any slot.
func TestList(t *testing.T) {
	ctx := context.Background()
	for _, mk := range []func(*testing.T) *target{serverTarget, clusterTarget} {
		tg := mk(t)
		t.Run(tg.name, func(t *testing.T) {
			names := []string{"a", "b", "c", "d", "e", "user:1", "user:2", "odd \x00\xff*"}
			for _, n := range names {
				g, err := testkit.NewMutex(t, tg.b, n, lock.Options{Prefix: tg.prefix, Owner: "o"}).TryLock(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == "e" {
					testkit.Release(t, g) // free, but its fence remains
				} else {
					t.Cleanup(func() { g.Release(context.Background()) })
				}
			}
			// Keys of another prefix and of a rate limiter are not locks of this one.
			testkit.NewMutex(t, tg.b, "a", lock.Options{Prefix: tg.prefix + "x"}).TryLock(ctx)
			if ok, err := testkit.NewRedisLimiter(t, tg.b, ratelimit.Options{Prefix: tg.prefix}).Absolute().Allow(ctx, "a", ratelimit.PerSecond(1)); !ok || err != nil {
				t.Fatal(ok, err)
			}
			if tg.cluster != nil {
				slots := map[string]bool{}
				for _, n := range names {
					slots[keyslotOwner(t, tg, n)] = true
				}
				if len(slots) < 2 {
					t.Fatalf("test locks all on one master: %v", slots)
				}
			}
			var out struct {
				Prefix  string  `json:"prefix"`
				Pattern string  `json:"pattern"`
				Locks   []jLock `json:"locks"`
			}
			decode(t, tg.ok(t, "lock", "list", "--json"), &out)
			var got []string
			for _, l := range out.Locks {
				got = append(got, raw(t, l.Name, l.NameBase64))
				want := "held"
				if l.Name == "e" {
					want = "free"
				}
				if l.State != want || l.Fence == 0 {
					t.Errorf("lock %q: %+v", l.Name, l)
				}
			}
			want := slices.Clone(names)
			slices.Sort(want)
			if !slices.Equal(got, want) || out.Pattern != "*" {
				t.Fatalf("lock list: %q (pattern %q), want %q", got, out.Pattern, want)
			}
			r := tg.ok(t, "lock", "list", "user:*")
			t.Logf("$ distkit lock list 'user:*'\n%s", r.stdout)
			matchLines(t, r, `^NAME\s+STATE\s+OWNER\s+TOKEN\s+TTL\s+READERS\s+WAITING\s+FENCE$`,
				`^user:1\s+held\s+o\s+\d+\s+\S+s\s+0\s+-\s+\d+$`, `^user:2\s+held\s+o\s+`)
			if n := strings.Count(r.stdout, "\n"); n != 3 {
				t.Errorf("want a header and 2 locks:\n%s", r.stdout)
			}
			r = tg.ok(t, "lock", "list", `odd*\*`)
			matchLines(t, r, `^"odd \\x00\\xff\*"\s+held`)
			for _, n := range names[:5] {
				var l jLock
				decode(t, tg.ok(t, "lock", "show", n, "--json"), &l)
				if l.Name != n || l.Fence == 0 {
					t.Errorf("lock show %s: %+v", n, l)
				}
			}

			c := testkit.NewStrict(t, tg.b, tg.prefix)
			for i := range 50 {
				if _, err := c.Set(ctx, "k"+strconv.Itoa(i), int64(i)); err != nil {
					t.Fatal(err)
				}
			}
			var cs jCounters
			decode(t, tg.ok(t, "counter", "list", "k1*", "--json"), &cs)
			if len(cs.Counters) != 11 || cs.Counters[0].Key != "k1" || cs.Counters[10].Key != "k19" || cs.Counters[10].Value != 19 {
				t.Fatalf("counter list k1*: %+v", cs)
			}
		})
	}
}

// keyslotOwner names the master holding lock name's keys.
func keyslotOwner(t *testing.T, tg *target, name string) string {
	t.Helper()
	key := keyspace.Lock(tg.prefix, name).Fence
	for _, n := range tg.cluster.Nodes {
		if r, err := n.Do("EXISTS", key); err == nil && r == "1" { // other masters answer MOVED
			return n.Addr
		}
	}
	t.Fatalf("no master holds %q", key)
	return ""
}

// Counters: get, set (negative values too), list with patterns, del and
// clear with confirmation.
func TestCounters(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	c := testkit.NewStrict(t, tg.b, tg.prefix)
	bin := "\x01\xff:k" // any byte but NUL, which no command line can carry
	for k, v := range map[string]int64{"orders": 42, "user:42": 7, "user:43": -1, bin: 9} {
		if _, err := c.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	r := tg.ok(t, "counter", "get", "orders", "user:42")
	if want := "KEY      VALUE\norders   42\nuser:42  7\n"; r.stdout != want {
		t.Fatalf("got\n%s\nwant\n%s", r.stdout, want)
	}
	r = tg.expect(t, exitNotFound, "counter", "get", "orders", "absent", "--json")
	var cs jCounters
	decode(t, r, &cs)
	if cs.Prefix != tg.prefix || len(cs.Counters) != 2 || cs.Counters[0] != (jCounter{Key: "orders", Value: 42, Exists: true}) ||
		cs.Counters[1] != (jCounter{Key: "absent"}) {
		t.Fatalf("%+v", cs)
	}
	// A key that is not UTF-8 travels in key_base64.
	cs = jCounters{}
	decode(t, tg.ok(t, "counter", "get", "--json", "--", bin), &cs)
	if cs.Counters[0].KeyBase64 == "" || raw(t, cs.Counters[0].Key, cs.Counters[0].KeyBase64) != bin || cs.Counters[0].Value != 9 {
		t.Fatalf("%+v", cs)
	}
	tg.ok(t, "counter", "set", "orders", "-5")
	if v, _ := c.Get(ctx, "orders"); v != -5 {
		t.Fatalf("after set: %d", v)
	}
	tg.expect(t, exitUsage, "counter", "set", "orders", "1.5")
	tg.expect(t, exitUsage, "counter", "set", "orders", "9223372036854775808")

	r = tg.ok(t, "counter", "list", "user:*")
	if want := "KEY      VALUE\nuser:42  7\nuser:43  -1\n"; r.stdout != want {
		t.Fatalf("got\n%s\nwant\n%s", r.stdout, want)
	}
	cs = jCounters{}
	decode(t, tg.ok(t, "counter", "list", "--json"), &cs)
	if len(cs.Counters) != 4 || cs.Pattern != "*" || raw(t, cs.Counters[0].Key, cs.Counters[0].KeyBase64) != bin {
		t.Fatalf("%+v", cs)
	}
	r = tg.ok(t, "counter", "list")
	matchLines(t, r, `^"\\x01\\xff:k"\s+9$`)

	r = tg.expect(t, exitUsage, "counter", "del", "orders")
	if v, _ := c.Get(ctx, "orders"); v != -5 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("refused del: value %d, %v", v, r)
	}
	r = tg.ok(t, "counter", "del", "orders", "--yes")
	if r.stdout != "deleted counter orders (value was -5)\n" {
		t.Fatalf("%v", r)
	}
	tg.expect(t, exitNotFound, "counter", "del", "orders", "--yes")
	var del struct {
		Prefix    string `json:"prefix"`
		Key       string `json:"key"`
		KeyBase64 string `json:"key_base64"`
		Value     int64  `json:"value"`
	}
	decode(t, tg.ok(t, "counter", "del", "--yes", "--json", "--", bin), &del)
	if del.Prefix != tg.prefix || raw(t, del.Key, del.KeyBase64) != bin || del.Value != 9 {
		t.Fatalf("%+v", del)
	}
	tg.expect(t, exitUsage, "counter", "clear")
	var cl struct {
		Prefix  string `json:"prefix"`
		Cleared int64  `json:"cleared"`
	}
	decode(t, tg.ok(t, "counter", "clear", "--yes", "--json"), &cl)
	if cl.Cleared != 2 {
		t.Fatalf("%+v", cl)
	}
	if vs, _ := c.GetAll(ctx, "user:42", "user:43"); slices.Max(vs) != 0 || slices.Min(vs) != 0 {
		t.Fatalf("after clear: %v", vs)
	}
}

// Instance counters: one live instance and one dead (its heartbeat
// expired, its slice not yet removed).
func TestInstanceCounters(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	live := testkit.NewInstanceCounter(t, tg.b, instancecounter.Options{Prefix: tg.prefix, InstanceID: "api-1", DeadAfter: time.Minute})
	if _, _, err := live.Inc(ctx, "conns", 4); err != nil {
		t.Fatal(err)
	}
	dead, err := instancecounter.NewStrict(tg.b, instancecounter.Options{Prefix: tg.prefix, InstanceID: "api-2",
		DeadAfter: 200 * time.Millisecond, KeepSlicesOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dead.Inc(ctx, "conns", 3); err != nil {
		t.Fatal(err)
	}
	if err := dead.Close(ctx); err != nil {
		t.Fatal(err)
	}
	type jInstance struct {
		ID              string `json:"id"`
		IDBase64        string `json:"id_base64"`
		Alive           bool   `json:"alive"`
		Closed          bool   `json:"closed"`
		LastHeartbeatAt string `json:"last_heartbeat_at"`
		ExpiresAt       string `json:"expires_at"`
		Slices          int    `json:"slices"`
	}
	var is struct {
		Prefix      string      `json:"prefix"`
		ServerTime  string      `json:"server_time"`
		DeadAfterMs int64       `json:"dead_after_ms"`
		Instances   []jInstance `json:"instances"`
	}
	testkit.Eventually(t, 5*time.Second, "api-2 dead", func() bool {
		decode(t, tg.ok(t, "icounter", "instances", "--json", "--dead-after", "1m"), &is)
		return len(is.Instances) == 2 && is.Instances[1].Closed && !parseTime(t, is.Instances[1].ExpiresAt).After(parseTime(t, is.ServerTime))
	})
	now := parseTime(t, is.ServerTime)
	a1 := is.Instances[0]
	if a1.ID != "api-1" || !a1.Alive || a1.Closed || a1.Slices != 1 || is.Instances[1].ID != "api-2" || is.Instances[1].Slices != 1 ||
		is.DeadAfterMs != 60000 || !parseTime(t, a1.ExpiresAt).After(now) || parseTime(t, a1.LastHeartbeatAt).After(now) {
		t.Fatalf("%+v", is)
	}
	r := tg.ok(t, "icounter", "instances", "--dead-after", "1m")
	t.Logf("$ distkit icounter instances --dead-after 1m\n%s", r.stdout)
	matchLines(t, r, `^ID\s+ALIVE\s+LAST HEARTBEAT\s+EXPIRES\s+SLICES$`,
		`^api-1\s+yes\s+\S+ ago\s+in \S+s\s+1$`, `^api-2\s+no \(closed\)\s+\S+ ago\s+\S+ ago\s+1$`)

	r = tg.ok(t, "icounter", "get", "conns")
	t.Logf("$ distkit icounter get conns\n%s", r.stdout)
	matchLines(t, r, `^KEY\s+CUMULATIVE\s+STORED\s+EPOCH\s+INSTANCES$`, `^conns\s+4\s+7\s+0\s+2 \(1 dead\)$`,
		`^conns\s+api-1\s+4\s+yes$`, `^conns\s+api-2\s+3\s+no$`)
	var ic struct {
		Prefix     string `json:"prefix"`
		ServerTime string `json:"server_time"`
		Counters   []struct {
			Key        string `json:"key"`
			KeyBase64  string `json:"key_base64"`
			Exists     bool   `json:"exists"`
			Cumulative int64  `json:"cumulative"`
			Stored     int64  `json:"stored"`
			Epoch      int64  `json:"epoch"`
			Slices     []struct {
				Instance       string `json:"instance"`
				InstanceBase64 string `json:"instance_base64"`
				Value          int64  `json:"value"`
				Alive          bool   `json:"alive"`
				Registered     bool   `json:"registered"`
				Closed         bool   `json:"closed"`
			} `json:"slices"`
		} `json:"counters"`
	}
	decode(t, tg.expect(t, exitNotFound, "icounter", "get", "conns", "absent", "--json"), &ic)
	c := ic.Counters[0]
	if len(ic.Counters) != 2 || c.Key != "conns" || c.Cumulative != 4 || c.Stored != 7 || len(c.Slices) != 2 ||
		c.Slices[0].Instance != "api-1" || !c.Slices[0].Alive || c.Slices[1].Value != 3 || c.Slices[1].Alive ||
		!c.Slices[1].Registered || !c.Slices[1].Closed || c.Slices[0].Closed || ic.Counters[1].Exists {
		t.Fatalf("%+v", ic)
	}
	// What the library says next agrees with the cumulative shown.
	if total, _, err := live.Get(ctx, "conns"); err != nil || total != 4 {
		t.Fatalf("library Get: %d, %v", total, err)
	}
}

// limit show places the window in time by its stored geometry; with
// --limit it says what the library's Peek answers; limit reset empties it
// with the library's Reset.
func TestLimit(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	rl := testkit.NewRedisLimiter(t, tg.b, ratelimit.Options{Prefix: tg.prefix})
	lim := ratelimit.Per(5, 8*time.Second) // buckets of 80 ms
	for range 3 {
		if ok, err := rl.Absolute().Allow(ctx, "client:7", lim); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	type jBucket struct {
		StartAt string `json:"start_at"`
		Count   int64  `json:"count"`
		Live    bool   `json:"live"`
	}
	type jLimit struct {
		Prefix         string    `json:"prefix"`
		Key            string    `json:"key"`
		KeyBase64      string    `json:"key_base64"`
		Exists         bool      `json:"exists"`
		ServerTime     string    `json:"server_time"`
		WindowMs       int64     `json:"window_ms"`
		BucketMs       int64     `json:"bucket_ms"`
		Count          int64     `json:"count"`
		StoredTotal    int64     `json:"stored_total"`
		Limit          string    `json:"limit"`
		Capacity       *int64    `json:"capacity"`
		Remaining      *int64    `json:"remaining"`
		RetryAfterMs   *int64    `json:"retry_after_ms"`
		ReleaseAfterMs *int64    `json:"release_after_ms"`
		Note           string    `json:"note"`
		TTLMs          int64     `json:"ttl_ms"`
		Buckets        []jBucket `json:"buckets"`
	}
	var l jLimit
	decode(t, tg.ok(t, "limit", "show", "client:7", "--json"), &l)
	if !l.Exists || l.Count != 3 || l.StoredTotal != 3 || l.Limit != "" || l.Remaining != nil || l.WindowMs != 8000 || l.BucketMs != 80 ||
		l.TTLMs <= 7000 || len(l.Buckets) == 0 || !l.Buckets[0].Live || l.Note != "" {
		t.Fatalf("without --limit: %+v", l)
	}
	l = jLimit{}
	decode(t, tg.ok(t, "limit", "show", "client:7", "--limit", "5/8s", "--json"), &l)
	if l.Limit != "5/8s" || *l.Capacity != 5 || *l.Remaining != 2 || *l.RetryAfterMs != 0 || *l.ReleaseAfterMs <= 7000 || l.Note != "" {
		t.Fatalf("with --limit: %+v", l)
	}
	for range 2 {
		if ok, err := rl.Absolute().Allow(ctx, "client:7", lim); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	d, err := rl.Absolute().Inc(ctx, "client:7", lim, 1)
	if err != nil || d.Allowed {
		t.Fatalf("6th request: %+v, %v", d, err)
	}
	l = jLimit{}
	decode(t, tg.ok(t, "limit", "show", "client:7", "--limit", "5/8s", "--json"), &l)
	retry := time.Duration(*l.RetryAfterMs) * time.Millisecond
	if *l.Remaining != 0 || l.Count != 5 || retry <= 0 || (retry-d.RetryAfter).Abs() > 2*time.Second {
		t.Fatalf("full window: %+v; retry %v, the limiter's %v", l, retry, d.RetryAfter)
	}
	if st, _ := rl.Absolute().Peek(ctx, "client:7", lim); st.Count != 5 {
		t.Fatalf("limit show consumed: %+v", st)
	}
	r := tg.ok(t, "limit", "show", "client:7", "--limit", "5/8s")
	t.Logf("$ distkit limit show client:7 --limit 5/8s\n%s", r.stdout)
	matchLines(t, r, `^window:\s+8s in 100 buckets of 80ms$`, `^count:\s+5 in the window now \(stored total 5\)$`,
		`^limit:\s+5/8s \(5 per window\)$`, `^remaining:\s+0$`, `^next allowed:\s+in \d+(\.\d)?s$`)
	// Another limit than the one the window was written under: said so.
	l = jLimit{}
	decode(t, tg.ok(t, "limit", "show", "client:7", "--limit", "10/m", "--json"), &l)
	if !strings.Contains(l.Note, "re-date") || *l.Remaining != 5 {
		t.Fatalf("--limit of another period: %+v", l)
	}

	tg.expect(t, exitUsage, "limit", "show", "client:7", "--limit", "5 per fortnight")
	tg.expect(t, exitUsage, "limit", "show", "client:7", "--limit", "0/s")
	tg.expect(t, exitUsage, "limit", "show", "client:7", "--buckets", "10")
	tg.expect(t, exitUsage, "limit", "reset", "client:7")
	tg.ok(t, "limit", "reset", "client:7", "--yes")
	if ok, err := rl.Absolute().Allow(ctx, "client:7", lim); !ok || err != nil {
		t.Fatalf("after reset: %v, %v", ok, err)
	}
	tg.expect(t, exitNotFound, "limit", "show", "absent")
	tg.expect(t, exitNotFound, "limit", "reset", "absent", "--yes")
}

// scripts load puts every script in the cache of every node.
func TestScriptsLoad(t *testing.T) {
	for _, mk := range []func(*testing.T) *target{serverTarget, clusterTarget} {
		tg := mk(t)
		t.Run(tg.name, func(t *testing.T) {
			nodes := []string{}
			do := func(args ...string) []string {
				var out []string
				if tg.server != nil {
					r, err := tg.server.Do(args...)
					if err != nil {
						t.Fatal(err)
					}
					return []string{r}
				}
				for _, n := range tg.cluster.Nodes {
					r, err := n.Do(args...)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, r)
				}
				return out
			}
			if tg.server != nil {
				nodes = append(nodes, tg.server.Addr)
			} else {
				nodes = tg.cluster.Addrs()
			}
			do("SCRIPT", "FLUSH")
			var out struct {
				Scripts []struct {
					Name string `json:"name"`
					SHA  string `json:"sha"`
				} `json:"scripts"`
				Nodes []struct {
					Addr   string `json:"addr"`
					Role   string `json:"role"`
					Loaded int    `json:"loaded"`
				} `json:"nodes"`
			}
			decode(t, tg.ok(t, "scripts", "load", "--json"), &out)
			all := scriptset.All()
			if len(out.Scripts) != len(all) || len(out.Nodes) != len(nodes) {
				t.Fatalf("%+v", out)
			}
			shas := []string{"SCRIPT", "EXISTS"}
			for i, s := range all {
				if out.Scripts[i].Name != s.Name() || out.Scripts[i].SHA != s.SHA() {
					t.Errorf("script %d: %+v, want %s %s", i, out.Scripts[i], s.Name(), s.SHA())
				}
				shas = append(shas, s.SHA())
			}
			for _, n := range out.Nodes {
				if !slices.Contains(nodes, n.Addr) || n.Role != "master" || n.Loaded != len(all) {
					t.Errorf("node %+v", n)
				}
			}
			for i, r := range do(shas...) {
				if strings.Count(r, "1") != len(all) {
					t.Errorf("node %s: SCRIPT EXISTS %q", nodes[i], r)
				}
			}
			r := tg.ok(t, "scripts", "load")
			matchLines(t, r, `^NODE\s+ROLE\s+LOADED$`, `^127\.0\.0\.1:\d+\s+master\s+\d+$`, `^counter-inc\s+[0-9a-f]{40}$`)
		})
	}
}

// The server comes from $DISTKIT_URL without --url; a server that is not
// there is a backend error (exit 3).
func TestURL(t *testing.T) {
	tg := serverTarget(t)
	if _, err := counter.NewStrict(tg.b, counter.Options{Prefix: tg.prefix}); err != nil {
		t.Fatal(err)
	}
	r := runBinary(t, "", []string{"DISTKIT_URL=" + tg.url}, "--prefix", tg.prefix, "counter", "list")
	if r.code != 0 || r.stdout != "KEY  VALUE\n" {
		t.Fatalf("%v", r)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://user:secret@" + l.Addr().String()
	l.Close()
	r = runBinary(t, "", nil, "--url", closed, "counter", "get", "x")
	if r.code != exitBackend || !strings.Contains(r.stderr, "connect") || strings.Contains(r.stderr, "secret") {
		t.Fatalf("%v", r)
	}
	r = runBinary(t, "", nil, "--url", "http://x", "counter", "get", "x")
	if r.code != exitUsage {
		t.Fatalf("%v", r)
	}
}
