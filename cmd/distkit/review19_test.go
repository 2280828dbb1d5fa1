package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
