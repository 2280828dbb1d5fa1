package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
	"github.com/distkit-go/distkit/primitives/election"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/lock"
	"github.com/distkit-go/distkit/primitives/semaphore"
)

// runIn runs the command in process with a non-terminal stdin.
func runIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var o, e bytes.Buffer
	code := run(context.Background(), args, env{stdin: strings.NewReader(stdin), stdout: &o, stderr: &e,
		getenv: func(string) string { return "" }})
	return result{stdout: o.String(), stderr: e.String(), code: code, args: args}
}

// A URL that does not parse must not have its password echoed in the
// error message: the help promises the password is never printed.
func TestReview19_PasswordNotEchoedOnBadURL(t *testing.T) {
	for _, u := range []string{
		"redis://user:hunter2@127.0.0.1:12x",
		"redis://user:hunter2@127.0.0.1:1/%zz",
		"redis://:hunter2@[::1",
		"redis://user:hunter2@127.0.0.1:1?db=x",
		"redis://user:hunter2@127.0.0.1:1/abc",
		"rediss://user:hunter2@127.0.0.1:1?dial_timeout=nope",
	} {
		r := runIn(t, "", "--url", u, "counter", "get", "x")
		if r.code != exitUsage || strings.Contains(r.stderr+r.stdout, "hunter2") {
			t.Errorf("%v", r)
		}
	}
}

// A counter that closed is not alive: Close leaves its id in the
// instances zset with a fresh expiry (and a "-:<nonce>" registration) for
// DeadAfter, but no heartbeat will come. icounter instances must not show
// it as alive, nor its Close as its last heartbeat.
func TestReview19_ClosedInstanceNotAlive(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	live := testkit.NewInstanceCounter(t, tg.b, instancecounter.Options{Prefix: tg.prefix, InstanceID: "api-1", DeadAfter: time.Minute})
	if _, _, err := live.Inc(ctx, "conns", 1); err != nil {
		t.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		id := "closed-" + strconv.FormatBool(keep)
		c, err := instancecounter.NewStrict(tg.b, instancecounter.Options{Prefix: tg.prefix, InstanceID: id,
			DeadAfter: time.Minute, KeepSlicesOnClose: keep})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Inc(ctx, "conns", 2); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var is struct {
		Prefix      string `json:"prefix"`
		ServerTime  string `json:"server_time"`
		DeadAfterMs int64  `json:"dead_after_ms"`
		Instances   []struct {
			ID              string `json:"id"`
			Alive           bool   `json:"alive"`
			Closed          bool   `json:"closed"`
			LastHeartbeatAt string `json:"last_heartbeat_at"`
			ExpiresAt       string `json:"expires_at"`
			Slices          int    `json:"slices"`
		} `json:"instances"`
	}
	r := tg.ok(t, "icounter", "instances", "--json", "--dead-after", "1m")
	if err := json.Unmarshal([]byte(r.stdout), &is); err != nil {
		t.Fatalf("%v: %v", err, r)
	}
	if len(is.Instances) != 3 {
		t.Fatalf("%v", r)
	}
	for _, x := range is.Instances {
		closed := x.ID != "api-1"
		if x.Alive == closed {
			t.Errorf("instance %s: alive %v after Close: %v", x.ID, x.Alive, r)
		}
	}
	r = tg.ok(t, "icounter", "instances", "--dead-after", "1m")
	matchLines(t, r, `^api-1\s+yes\s`, `^closed-false\s+no \(closed\)\s`, `^closed-true\s+no \(closed\)\s`)
}

// slowAnswer is an operator who reads the prompt for a while before
// typing the answer.
type slowAnswer struct {
	delay  time.Duration
	answer string
	done   bool
}

func (s *slowAnswer) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	time.Sleep(s.delay)
	s.done = true
	return copy(p, s.answer), nil
}

// --timeout bounds the work with the backend ("give up after D"), not the
// time an operator takes to read the confirmation prompt: a "y" typed
// after --timeout must still do what it confirmed.
func TestReview19_TimeoutDoesNotCountThePrompt(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	c := testkit.NewStrict(t, tg.b, tg.prefix)
	if _, err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--url", tg.url, "--prefix", tg.prefix, "--timeout", "500ms", "counter", "del", "k"},
		env{stdin: &slowAnswer{delay: 1500 * time.Millisecond, answer: "y\n"}, stdout: &stdout, stderr: &stderr,
			getenv: func(string) string { return "" }, stdinTTY: true})
	v, _ := c.Get(ctx, "k")
	if code != exitOK || v != 0 {
		t.Fatalf("exit %d, value %d after a confirmed del\nstdout: %s\nstderr: %s", code, v, stdout.String(), stderr.String())
	}
}

// The URL forms the help documents that the other tests do not run: a
// Sentinel group's master (master_set) and a server on a Unix socket.
func TestReview19_SentinelAndUnixURLs(t *testing.T) {
	ctx := context.Background()
	t.Run("sentinel", func(t *testing.T) {
		g := servers.Sentinel(t)
		s := g.SentinelAddrs()
		url := "redis://" + s[0] + "?addr=" + strings.Join(s[1:], "&addr=") + "&master_set=" + g.Name
		tg := newTarget(t, "sentinel", url, nil, nil)
		c := testkit.NewStrict(t, tg.b, tg.prefix)
		if _, err := c.Set(ctx, "a:b", 7); err != nil {
			t.Fatal(err)
		}
		matchLines(t, tg.ok(t, "counter", "get", "a:b"), `^a:b\s+7$`)
		master, err := g.MasterAddr()
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Nodes []struct {
				Addr   string `json:"addr"`
				Role   string `json:"role"`
				Loaded int    `json:"loaded"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(tg.ok(t, "scripts", "load", "--json").stdout), &out); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, n := range out.Nodes {
			found = found || (n.Addr == master && n.Role == "master")
		}
		if !found {
			t.Fatalf("scripts load through Sentinel: %+v, master %s", out, master)
		}
	})
	t.Run("unix", func(t *testing.T) {
		sock := t.TempDir() + "/redis.sock"
		s, err := redistest.Start(redistest.Options{Args: []string{"--unixsocket", sock, "--unixsocketperm", "700"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		tg := newTarget(t, "unix", "unix://"+sock, s, nil)
		c := testkit.NewStrict(t, tg.b, tg.prefix)
		if _, err := c.Set(ctx, "k", 3); err != nil {
			t.Fatal(err)
		}
		matchLines(t, tg.ok(t, "counter", "get", "k"), `^k\s+3$`)
		matchLines(t, tg.ok(t, "scripts", "load"), `^\S+\s+master\s+\d+$`)
	})
}

// A server that accepts connections and never answers is given up on
// after --timeout (exit 3), for a read and for a destructive verb.
func TestReview19_SilentServerBoundedByTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // never answered
		}
	}()
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	go func() { // accepts connections and never answers them
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l2.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	seeds := "redis://u:hunter2@" + l.Addr().String() + "?addr=" + l2.Addr().String()
	sentinel := seeds + "&master_set=m"
	for i, args := range [][]string{{"counter", "get", "x"}, {"lock", "break", "x", "--yes"}, {"scripts", "load"}, {"counter", "list"}, {"lock", "list"}, {"version"}} {
		url := []string{"redis://u:hunter2@" + l.Addr().String(), seeds, sentinel}[i%3]
		start := time.Now()
		r := runBinary(t, "", nil, append([]string{"--url", url, "--timeout", "700ms"}, args...)...)
		if args[0] == "version" {
			if r.code != exitOK {
				t.Errorf("version needs no server: %v", r)
			}
			continue
		}
		if d := time.Since(start); r.code != exitBackend || d > 5*time.Second || strings.Contains(r.stderr, "hunter2") {
			t.Errorf("after %v: %v", d, r)
		}
	}
}

// A prefix is a user string like a key (Options.Prefix takes any bytes):
// when it is not valid UTF-8, every JSON document that carries "prefix"
// must carry its exact bytes in "prefix_base64", as it does for keys.
func TestReview19_PrefixBase64(t *testing.T) {
	tg := serverTarget(t)
	tg.prefix = "\xff" + tg.prefix
	want := base64.StdEncoding.EncodeToString([]byte(tg.prefix))
	tg.ok(t, "counter", "set", "k", "1")
	for _, args := range [][]string{
		{"counter", "get", "k"}, {"counter", "list"}, {"counter", "set", "k", "2"},
		{"lock", "list"}, {"icounter", "instances"},
		{"counter", "del", "k", "--yes"}, {"counter", "clear", "--yes"},
	} {
		r := tg.ok(t, append(args, "--json")...)
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		if doc["prefix_base64"] != want {
			t.Errorf("%q: prefix_base64 %v, want %s\n%v", args, doc["prefix_base64"], want, r)
		}
	}
	for _, args := range [][]string{{"lock", "show", "x"}, {"limit", "show", "x"}, {"icounter", "get", "x"}} {
		r := tg.expect(t, exitNotFound, append(args, "--json")...)
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
			t.Fatal(err)
		}
		if doc["prefix_base64"] != want {
			t.Errorf("%q: prefix_base64 %v, want %s\n%v", args, doc["prefix_base64"], want, r)
		}
	}
}

// Semaphore and election keys share a lock's hash tag; they must not show
// as locks (nor as counters), even under the name of a real lock.
func TestReview19_SemaphoreAndElectionAreNotLocks(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	g, err := testkit.NewMutex(t, tg.b, "l", lock.Options{Prefix: tg.prefix, Owner: "locker"}).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Release(context.Background()) })
	for _, name := range []string{"s", "l"} {
		s, err := semaphore.New(tg.b, name, 1, semaphore.Options{Prefix: tg.prefix, Owner: "sem-owner"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.TryAcquire(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Release(context.Background()) })
	}
	for _, name := range []string{"e", "l"} {
		e, err := election.New(tg.b, name, election.Options{Prefix: tg.prefix, Owner: "candidate"})
		if err != nil {
			t.Fatal(err)
		}
		ld, err := e.Campaign(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ld.Resign(context.Background()) })
	}
	var out struct {
		Locks []jLock `json:"locks"`
	}
	r := tg.ok(t, "lock", "list", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Locks) != 1 || out.Locks[0].Name != "l" || out.Locks[0].Holder == nil || out.Locks[0].Holder.Owner != "locker" ||
		len(out.Locks[0].Waiters) != 0 || len(out.Locks[0].Readers) != 0 {
		t.Fatalf("%v", r)
	}
	tg.expect(t, exitNotFound, "lock", "show", "s")
	tg.expect(t, exitNotFound, "lock", "show", "e")
	tg.expect(t, exitNotFound, "lock", "break", "s", "--yes")
	if r := tg.ok(t, "counter", "list"); r.stdout != "KEY  VALUE\n" {
		t.Fatalf("%v", r)
	}
}

// Two Mutex waiters show in arrival order ("queued #1", "queued #2"); a
// break of the holder lets the head take the lock with a higher token,
// and the other one moves up to #1.
func TestReview19_QueueOrderAndBreak(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	held, err := testkit.NewMutex(t, tg.b, "q", lock.Options{Prefix: tg.prefix, Owner: "holder"}).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { held.Release(context.Background()) })
	type taken struct {
		owner string
		g     *lock.Guard
	}
	got := make(chan taken, 2)
	show := func() jLock {
		var l jLock
		decode(t, tg.ok(t, "lock", "show", "q", "--json"), &l)
		return l
	}
	for i, owner := range []string{"first", "second"} {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			g, err := testkit.NewMutex(t, tg.b, "q", lock.Options{Prefix: tg.prefix, Owner: owner, RetryInterval: time.Second}).Lock(wctx)
			if err == nil {
				got <- taken{owner, g}
				<-wctx.Done()
				g.Release(context.Background())
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
		testkit.Eventually(t, 5*time.Second, owner+" in the queue", func() bool { return len(show().Waiters) == i+1 })
	}
	l := show()
	if l.Waiters[0].Owner != "first" || l.Waiters[0].Position != 1 || l.Waiters[1].Owner != "second" || l.Waiters[1].Position != 2 {
		t.Fatalf("%+v", l.Waiters)
	}
	matchLines(t, tg.ok(t, "lock", "show", "q"), `^queued #1\s+first\s`, `^queued #2\s+second\s`)
	tg.ok(t, "lock", "break", "q", "--yes")
	var tk taken
	select {
	case tk = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no waiter took the broken lock within 10s")
	}
	g := tk.g
	if tk.owner != "first" || g.Token() <= held.Token() {
		t.Fatalf("after break: %s took it with token %d (broken: %d)", tk.owner, g.Token(), held.Token())
	}
	l = show()
	if l.Holder == nil || l.Holder.Owner != "first" || l.Holder.Token != g.Token() || l.Fence != g.Token() ||
		len(l.Waiters) != 1 || l.Waiters[0].Owner != "second" || l.Waiters[0].Position != 1 {
		t.Fatalf("after break: %+v %+v", l, l.Holder)
	}
}

// Every usage error exits 2 before any connection is made (the URL points
// nowhere), with a message on stderr and nothing on stdout.
func TestReview19_UsageExitCodes(t *testing.T) {
	long := strings.Repeat("k", 100000)
	for _, args := range [][]string{
		{}, {"nope"}, {"counter"}, {"counter", "nope"}, {"counter", "get"}, {"counter", "set", "k"},
		{"counter", "set", "k", "x"}, {"counter", "set", "k", "9223372036854775808"}, {"counter", "get", ""},
		{"counter", "get", long}, {"counter", "list", "["}, {"counter", "list", `a\`}, {"counter", "list", "a", "b"},
		{"counter", "del", "k", "extra"}, {"counter", "clear", "x"}, {"counter", "get", "k", "--yes"},
		{"icounter", "instances", "--dead-after", "1ms"}, {"icounter", "instances", "x"}, {"icounter", "get", "k", "--dead-after", "1m"},
		{"lock", "show"}, {"lock", "show", "a", "b"}, {"lock", "break", ""}, {"lock", "list", "[a"},
		{"limit", "show", "k", "--limit", "5/x"}, {"limit", "show", "k", "--buckets", "5"},
		{"limit", "show", "k", "--limit", "5/s", "--buckets", "0"}, {"limit", "reset", "k", "--limit", "5/s"},
		{"scripts", "load", "x"}, {"scripts"}, {"version", "x"}, {"version", "--yes"},
		{"--timeout", "0", "version"}, {"--timeout", "-1s", "counter", "get", "k"}, {"--timeout", "abc", "version"},
		{"--prefix", "", "counter", "get", "k"}, {"--nope", "version"}, {"--url", "http://x", "counter", "get", "k"},
		{"--url", "redis://127.0.0.1:1", "--url"},
	} {
		r := runIn(t, "", append([]string{"--url", "redis://127.0.0.1:1"}, args...)...)
		if r.code != exitUsage || r.stdout != "" || r.stderr == "" {
			t.Errorf("%v", r)
		}
	}
}

// A key or lock name with a NUL byte (the library takes any bytes) is
// listed, Go-quoted, but no command line can carry it as it is: with
// --quoted, an argument in the quoted form the tables show addresses it.
func TestReview19_NULKeysAddressable(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	c := testkit.NewStrict(t, tg.b, tg.prefix)
	if _, err := c.Set(ctx, "a\x00b", 5); err != nil {
		t.Fatal(err)
	}
	g, err := testkit.NewMutex(t, tg.b, "job\x00\xff", lock.Options{Prefix: tg.prefix, Owner: "o", TTL: time.Second}).Lock(ctx) // renews every 1/3 s: learns of the break soon
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release(ctx)
	matchLines(t, tg.ok(t, "counter", "list"), `^"a\\x00b"\s+5$`)
	matchLines(t, tg.ok(t, "lock", "list"), `^"job\\x00\\xff"\s+held\s`)
	matchLines(t, tg.ok(t, "counter", "get", "--quoted", `"a\x00b"`), `^"a\\x00b"\s+5$`)
	matchLines(t, tg.ok(t, "--quoted", "counter", "list", `"a\x00*"`), `^"a\\x00b"\s+5$`)
	matchLines(t, tg.ok(t, "lock", "show", "--quoted", `"job\x00\xff"`), `^holder\s+o\s`)
	tg.ok(t, "lock", "break", "--quoted", `"job\x00\xff"`, "--yes")
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the broken holder was not told")
	}
	// Plain arguments stay as given under --quoted; a malformed quoted one is a usage error.
	if _, err := c.Set(ctx, "plain", 1); err != nil {
		t.Fatal(err)
	}
	matchLines(t, tg.ok(t, "--quoted", "counter", "get", "plain"), `^plain\s+1$`)
	tg.expect(t, exitUsage, "--quoted", "counter", "get", `"a\q"`)
	tg.ok(t, "--quoted", "counter", "set", `"a\x00b"`, "-3")
	if v, _ := c.Get(ctx, "a\x00b"); v != -3 {
		t.Fatalf("counter set --quoted: %d", v)
	}
	tg.ok(t, "--quoted", "counter", "del", `"a\x00b"`, "--yes")
}

// answerAfter runs act when the prompt is read (the operator is reading
// it), then answers.
type answerAfter struct {
	act    func()
	answer string
	done   bool
}

func (a *answerAfter) Read(p []byte) (int, error) {
	if a.done {
		return 0, io.EOF
	}
	a.act()
	a.done = true
	return copy(p, a.answer), nil
}

// The holder lock break showed releases while the operator reads the
// prompt and someone else takes the lock: the "y" must not break the new
// holder (exit 1, nothing broken, the fence untouched).
func TestReview19_BreakSparesTheHolderTakenDuringThePrompt(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	old, err := testkit.NewMutex(t, tg.b, "race", lock.Options{Prefix: tg.prefix, Owner: "old"}).Lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var next *lock.Guard
	in := &answerAfter{answer: "y\n", act: func() {
		if _, err := old.Release(ctx); err != nil {
			t.Error(err)
		}
		g, err := testkit.NewMutex(t, tg.b, "race", lock.Options{Prefix: tg.prefix, Owner: "new"}).TryLock(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		next = g
	}}
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--url", tg.url, "--prefix", tg.prefix, "lock", "break", "race"},
		env{stdin: in, stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }, stdinTTY: true})
	if next == nil {
		t.Fatal("no new holder")
	}
	defer next.Release(ctx)
	if code != exitNotFound || !strings.Contains(stderr.String(), "holder old") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout.String(), stderr.String())
	}
	var l jLock
	decode(t, tg.ok(t, "lock", "show", "race", "--json"), &l)
	if l.Holder == nil || l.Holder.Owner != "new" || l.Holder.Token != next.Token() || l.Fence != next.Token() || next.State() != lock.Acquired {
		t.Fatalf("after the refused break: %+v %+v", l, l.Holder)
	}
}

// icounter get and icounter instances agree on a counter that closed with
// KeepSlicesOnClose: its slice is still counted until its id expires, and
// is marked closed in both views.
func TestReview19_ClosedSliceMarkedInGet(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	c, err := instancecounter.NewStrict(tg.b, instancecounter.Options{Prefix: tg.prefix, InstanceID: "gone",
		DeadAfter: time.Minute, KeepSlicesOnClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Inc(ctx, "conns", 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Counters []struct {
			Cumulative int64 `json:"cumulative"`
			Slices     []struct {
				Instance string `json:"instance"`
				Alive    bool   `json:"alive"`
				Closed   bool   `json:"closed"`
			} `json:"slices"`
		} `json:"counters"`
	}
	r := tg.ok(t, "icounter", "get", "conns", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Counters) != 1 || doc.Counters[0].Cumulative != 2 || len(doc.Counters[0].Slices) != 1 || !doc.Counters[0].Slices[0].Closed {
		t.Fatalf("%v", r)
	}
	matchLines(t, tg.ok(t, "icounter", "get", "conns"), `^conns\s+gone\s+2\s+yes \(closed\)$`)
}

// PATTERN follows Redis's glob syntax, in which a reversed range [z-a] is
// the range [a-z] (stringmatchlen swaps its ends).
func TestReview19_GlobReversedRange(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{{"[z-a]", "m", true}, {"[^z-a]", "m", false}, {"x[9-0]", "x5", true}, {"[z-a]", "A", false}} {
		g, err := compileGlob(tc.p)
		if err != nil || g.match(tc.s) != tc.want {
			t.Errorf("%q matches %q: %v (%v), want %v", tc.p, tc.s, g.match(tc.s), err, tc.want)
		}
	}
}

// Stored data not in distkit's layout (another program's keys under
// distkit's names) is a backend error, exit 3, for every reading verb.
func TestReview19_ForeignDataExit3(t *testing.T) {
	tg := serverTarget(t)
	p := tg.prefix
	lk := keyspace.Lock(p, "l")
	ic := keyspace.InstanceCounter(p)
	for _, cmd := range [][]string{
		{"SET", keyspace.CounterHash(p), "x"},
		{"SET", lk.Lock, "no-colon"},
		{"SET", keyspace.RateLimit(p, "r").Counts, "x"},
		{"SET", ic.Instances, "x"},
		{"SET", ic.Total, "x"},
	} {
		if _, err := tg.server.Do(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"counter", "get", "k"}, {"counter", "list"}, {"counter", "clear", "--yes"}, {"counter", "set", "k", "1"},
		{"lock", "show", "l"}, {"lock", "list"}, {"lock", "break", "l", "--yes"},
		{"limit", "show", "r"}, {"limit", "reset", "r", "--yes"},
		{"icounter", "instances"}, {"icounter", "get", "k"},
	} {
		r := tg.dk(t, args...)
		if r.code != exitBackend || r.stderr == "" {
			t.Errorf("%v", r)
		}
	}
}
