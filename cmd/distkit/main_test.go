package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/backend"
	rueidisbackend "github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/internal/redistest"
	"github.com/distkit-go/distkit/internal/testkit"
)

var servers redistest.Env

func TestMain(m *testing.M) {
	code := m.Run()
	servers.Stop()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// bin is the command, built once per test binary.
var bin struct {
	once      sync.Once
	dir, path string
	err       error
}

// binary builds cmd/distkit (as `go install` would) and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	bin.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			gobin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		if bin.dir, bin.err = os.MkdirTemp("", "distkit-cmd-"); bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "distkit")
		if out, err := exec.Command(gobin, "build", "-o", bin.path, ".").CombinedOutput(); err != nil {
			bin.err = fmt.Errorf("go build ./cmd/distkit: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
	args           []string
}

func (r result) String() string {
	return fmt.Sprintf("distkit %q: exit %d\nstdout:\n%s\nstderr:\n%s", r.args, r.code, r.stdout, r.stderr)
}

// exec runs the binary with stdin from a pipe (so not a terminal) and
// without $DISTKIT_URL unless extraEnv sets it.
func runBinary(t *testing.T, stdin string, extraEnv []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DISTKIT_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	r := result{args: args}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	r.stdout, r.stderr = o.String(), e.String()
	return r
}

// target is a Redis the test started, with a prefix of its own and a
// library backend on it to create state.
type target struct {
	name    string
	url     string
	prefix  string
	b       backend.Backend
	cluster *redistest.Cluster
	server  *redistest.Server
}

func serverTarget(t *testing.T) *target {
	s := servers.Server(t)
	return newTarget(t, "server", "redis://"+s.Addr, s, nil)
}

func clusterTarget(t *testing.T) *target {
	c := servers.Cluster(t)
	a := c.Addrs()
	url := "redis://" + a[0] + "?addr=" + strings.Join(a[1:], "&addr=")
	return newTarget(t, "cluster", url, nil, c)
}

func newTarget(t *testing.T, name, url string, s *redistest.Server, c *redistest.Cluster) *target {
	t.Helper()
	b, err := rueidisbackend.FromURL(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &target{name: name, url: url, prefix: testkit.Prefix(t), b: b, server: s, cluster: c}
}

// dk runs the binary against the target (--url and --prefix given).
func (tg *target) dk(t *testing.T, args ...string) result {
	t.Helper()
	return runBinary(t, "", nil, append([]string{"--url", tg.url, "--prefix", tg.prefix}, args...)...)
}

// ok runs dk and fails unless it exits 0.
func (tg *target) ok(t *testing.T, args ...string) result {
	t.Helper()
	r := tg.dk(t, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

// expect runs dk and fails unless it exits with code.
func (tg *target) expect(t *testing.T, code int, args ...string) result {
	t.Helper()
	r := tg.dk(t, args...)
	if r.code != code {
		t.Fatalf("want exit %d: %v", code, r)
	}
	return r
}

// decode parses r's stdout as exactly one JSON document of the shape of
// v, every field of which must be known to v: the documented field names
// are the contract.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode: %v\n%v", err, r)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document: %v", r)
	}
}
