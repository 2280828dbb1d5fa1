package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/distkit-go/distkit/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/help.golden")

// --help prints the usage on stdout and exits 0; the text is golden.
func TestHelpGolden(t *testing.T) {
	golden := filepath.Join("testdata", "help.golden")
	r := runBinary(t, "", nil, "--help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%v", r)
	}
	if *update {
		if err := os.WriteFile(golden, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != string(want) {
		t.Fatalf("--help differs from %s (go test -run TestHelpGolden -update ./cmd/distkit to accept):\n%s", golden, r.stdout)
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"lock", "show", "--help"}} {
		if r := runBinary(t, "", nil, args...); r.code != 0 || r.stdout != string(want) {
			t.Errorf("%q: exit %d, stdout differs", args, r.code)
		}
	}
	if r := runBinary(t, "", nil); r.code != exitUsage || r.stderr != string(want) || r.stdout != "" {
		t.Errorf("no arguments: %v", r)
	}
}

// Usage errors exit 2 with a message naming the problem, before any
// connection is made (the URL points nowhere).
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"lock"}, "lock: missing verb (one of: show, list, break)"},
		{[]string{"lock", "grab", "x"}, `lock: unknown verb "grab"`},
		{[]string{"lock", "show"}, "usage: distkit lock show NAME"},
		{[]string{"lock", "show", "a", "b"}, "usage: distkit lock show NAME"},
		{[]string{"counter", "get"}, "usage: distkit counter get KEY..."},
		{[]string{"counter", "get", ""}, "key is empty"},
		{[]string{"lock", "show", strings.Repeat("x", 1025)}, "longer than 1024"},
		{[]string{"counter", "get", "k", "--yes"}, "counter get: flag --yes does not apply"},
		{[]string{"lock", "show", "x", "--limit", "3/s"}, "lock show: flag --limit does not apply"},
		{[]string{"--nope", "version"}, "flag provided but not defined: -nope"},
		{[]string{"--timeout", "0s", "lock", "show", "x"}, "--timeout 0s must be positive"},
		{[]string{"--prefix", "", "lock", "show", "x"}, `--prefix ""`},
		{[]string{"counter", "list", "[a"}, "unclosed '['"},
		{[]string{"icounter", "instances", "--dead-after", "1ms"}, "--dead-after 1ms is below the minimum"},
		{[]string{"limit", "show", "k", "--limit", "100/m", "--buckets", "0"}, "--buckets 0 must be between 1 and"},
		{[]string{"limit", "show", "k", "--limit", "-1/s"}, "N -1 must be at least 1"},
		{[]string{"limit", "show", "k", "--limit", "100"}, "want N/UNIT"},
		{[]string{"limit", "show", "k", "--window", "1s"}, "flag provided but not defined: -window"},
	} {
		r := runBinary(t, "", nil, append([]string{"--url", "redis://127.0.0.1:1"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.msg) || r.stdout != "" {
			t.Errorf("%q: want exit 2 and %q: %v", tc.args, tc.msg, r)
		}
	}
}

// Flags go anywhere; "--" ends them; negative numbers are arguments.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		o    opts
	}{
		{[]string{"--json", "lock", "show", "x"}, "lock show x", opts{json: true}},
		{[]string{"lock", "show", "x", "--json", "--prefix", "p"}, "lock show x", opts{json: true, prefix: "p"}},
		{[]string{"counter", "set", "k", "-5", "--prefix=p"}, "counter set k -5", opts{prefix: "p"}},
		{[]string{"counter", "get", "--", "-k", "--json"}, "counter get -k --json", opts{}},
		{[]string{"-yes", "lock", "break", "-"}, "lock break -", opts{yes: true}},
	} {
		var o opts
		pos, err := parseArgs(newFlagSet(&o), tc.args)
		if err != nil || strings.Join(pos, " ") != tc.pos || o.json != tc.o.json || o.yes != tc.o.yes ||
			(tc.o.prefix != "" && o.prefix != tc.o.prefix) {
			t.Errorf("%q: %q %+v %v", tc.args, pos, o, err)
		}
	}
}

// A destructive verb asks on the terminal; only "y" or "yes" proceeds.
func TestConfirm(t *testing.T) {
	ctx := context.Background()
	tg := serverTarget(t)
	c := testkit.NewStrict(t, tg.b, tg.prefix)
	for _, tc := range []struct {
		answer string
		tty    bool
		code   int
		left   int64
	}{
		{"n\n", true, exitUsage, 1},
		{"", true, exitUsage, 1}, // EOF, e.g. /dev/null
		{"yes\n", false, exitUsage, 1},
		{"YES\n", true, exitOK, 0},
	} {
		if _, err := c.Set(ctx, "k", 1); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"--url", tg.url, "--prefix", tg.prefix, "counter", "del", "k"},
			env{stdin: strings.NewReader(tc.answer), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }, stdinTTY: tc.tty})
		v, _ := c.Get(ctx, "k")
		if code != tc.code || v != tc.left {
			t.Errorf("answer %q (tty %v): exit %d, value %d; want %d, %d\nstderr: %s", tc.answer, tc.tty, code, v, tc.code, tc.left, stderr.String())
		}
		if tc.tty && !strings.HasPrefix(stderr.String(), "delete counter k (value 1, prefix "+tg.prefix+")? [y/N] ") {
			t.Errorf("prompt: %q", stderr.String())
		}
	}
}

// The list patterns follow Redis's glob syntax, byte by byte.
func TestGlob(t *testing.T) {
	names := []string{"", "a", "ab", "abc", "a*c", "user:42", "user:", "x\xffy", "[x]", `a\b`, "-"}
	for _, p := range []string{"*", "a*", "a?c", "a\\*c", "*:*", "user:*", "[ax]*", "[^a]*", "[a-b]b*", "x?y", `a\\b`, "?", "[!a]", "\\[x\\]"} {
		g, err := compileGlob(p)
		if err != nil {
			t.Fatalf("%q: %v", p, err)
		}
		for _, n := range names {
			// path.Match agrees with Redis for names without '/' (it spells
			// negation '^' only).
			want, _ := path.Match(strings.ReplaceAll(p, "[!", "[^"), n)
			if got := g.match(n); got != want {
				t.Errorf("%q on %q: %v, want %v", p, n, got, want)
			}
			if want && !strings.HasPrefix(n, g.literalPrefix()) {
				t.Errorf("%q: literal prefix %q, but %q matches", p, g.literalPrefix(), n)
			}
		}
	}
	for _, p := range []string{"[", "[a", `a\`, "[]"} {
		if _, err := compileGlob(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}
