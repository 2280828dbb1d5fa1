package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/distkit-go/distkit"
	"github.com/distkit-go/distkit/internal/keyspace"
	"github.com/distkit-go/distkit/primitives/instancecounter"
	"github.com/distkit-go/distkit/primitives/ratelimit"
)

// Exit codes.
const (
	exitOK       = 0
	exitNotFound = 1
	exitUsage    = 2
	exitBackend  = 3
)

// defaultURL is used when neither --url nor $DISTKIT_URL is set.
const defaultURL = "redis://127.0.0.1:6379"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv: os.Getenv, stdinTTY: isTerminal(os.Stdin),
	}))
}

// env is what a run sees of its process, so tests can run it in process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	stdinTTY       bool // confirmations can be asked on stdin
}

// isTerminal reports whether f is a character device (a terminal, or
// /dev/null, where a confirmation then reads EOF and declines).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// exitError carries an exit code. Its message, if any, is printed on
// stderr.
type exitError struct {
	code  int
	err   error
	hint  bool // a usage error: point to --help
	quiet bool // the message was printed already
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &exitError{code: exitNotFound, err: fmt.Errorf(format, args...)}
}

// exitCode maps an error to the documented exit codes: invalid input is a
// usage error, anything from the backend (or a deadline) a backend error.
func exitCode(err error) int {
	var e *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &e):
		return e.code
	case errors.Is(err, distkit.ErrInvalidKey), errors.Is(err, distkit.ErrInvalidOption):
		return exitUsage
	}
	return exitBackend
}

// opts are the flags, global and per verb.
type opts struct {
	url       string
	prefix    string
	json      bool
	timeout   time.Duration
	yes       bool
	limit     ratelimit.Limit
	buckets   int
	deadAfter time.Duration
	quoted    bool
}

// cli is one run of a command.
type cli struct {
	env
	o    opts
	set  map[string]bool // flags given on the command line
	conn *conn
	// base is the context of the whole run, without --timeout; cancels
	// are those of the contexts withTimeout made, run when the command ends.
	base    context.Context
	cancels []context.CancelFunc
}

// command is one NOUN VERB.
type command struct {
	noun, verb string
	args       string   // positional arguments, for messages
	min, max   int      // number of positional arguments (max -1: any)
	flags      []string // verb flags accepted besides the global ones
	offline    bool     // needs no connection
	// check validates arguments and flags before any connection is made.
	check func(c *cli, args []string) error
	run   func(ctx context.Context, c *cli, args []string) error
}

var commands = []command{
	{noun: "counter", verb: "get", args: "KEY...", min: 1, max: -1, check: checkKeys("key"), run: counterGet},
	{noun: "counter", verb: "set", args: "KEY VALUE", min: 2, max: 2, check: checkSet, run: counterSet},
	{noun: "counter", verb: "list", args: "[PATTERN]", min: 0, max: 1, check: checkPattern, run: counterList},
	{noun: "counter", verb: "del", args: "KEY", min: 1, max: 1, flags: []string{"yes"}, check: checkKeys("key"), run: counterDel},
	{noun: "counter", verb: "clear", min: 0, max: 0, flags: []string{"yes"}, run: counterClear},
	{noun: "icounter", verb: "get", args: "KEY...", min: 1, max: -1, check: checkKeys("key"), run: icounterGet},
	{noun: "icounter", verb: "instances", min: 0, max: 0, flags: []string{"dead-after"}, check: checkDeadAfter, run: icounterInstances},
	{noun: "lock", verb: "show", args: "NAME", min: 1, max: 1, check: checkKeys("name"), run: lockShow},
	{noun: "lock", verb: "list", args: "[PATTERN]", min: 0, max: 1, check: checkPattern, run: lockList},
	{noun: "lock", verb: "break", args: "NAME", min: 1, max: 1, flags: []string{"yes"}, check: checkKeys("name"), run: lockBreak},
	{noun: "limit", verb: "show", args: "KEY", min: 1, max: 1, flags: []string{"limit", "buckets"}, check: checkLimitShow, run: limitShow},
	{noun: "limit", verb: "reset", args: "KEY", min: 1, max: 1, flags: []string{"yes"}, check: checkKeys("key"), run: limitReset},
	{noun: "scripts", verb: "load", min: 0, max: 0, run: scriptsLoad},
	{noun: "version", offline: true, min: 0, max: 0, run: version},
}

// globalFlags are accepted anywhere on the command line.
var globalFlags = []string{"url", "prefix", "json", "timeout", "quoted"}

func newFlagSet(o *opts) *flag.FlagSet {
	fs := flag.NewFlagSet("distkit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.url, "url", "", "")
	fs.StringVar(&o.prefix, "prefix", distkit.DefaultPrefix, "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "")
	fs.BoolVar(&o.yes, "yes", false, "")
	fs.TextVar(&o.limit, "limit", ratelimit.Limit{}, "")
	fs.IntVar(&o.buckets, "buckets", ratelimit.DefaultBuckets, "")
	fs.DurationVar(&o.deadAfter, "dead-after", instancecounter.DefaultDeadAfter, "")
	fs.BoolVar(&o.quoted, "quoted", false, "")
	return fs
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, e env) int {
	err := runErr(ctx, args, e)
	var x *exitError
	if err != nil && !(errors.As(err, &x) && x.quiet) {
		fmt.Fprintf(e.stderr, "distkit: %v\n", err)
	}
	if errors.As(err, &x) && x.hint {
		fmt.Fprint(e.stderr, "Run 'distkit --help' for usage.\n")
	}
	return exitCode(err)
}

// hint is a usage error after which the pointer to --help helps.
func hint(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...), hint: true}
}

func runErr(ctx context.Context, args []string, e env) error {
	c := &cli{env: e, set: map[string]bool{}}
	fs := newFlagSet(&c.o)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) || (err == nil && len(pos) > 0 && pos[0] == "help") {
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	if err != nil {
		return hint("%v", err)
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if len(pos) == 0 {
		fmt.Fprint(e.stderr, usage)
		return &exitError{code: exitUsage, err: errors.New("no command"), quiet: true}
	}
	cmd, args, err := lookup(pos)
	if err != nil {
		return err
	}
	for name := range c.set {
		if !contains(globalFlags, name) && !contains(cmd.flags, name) {
			return hint("%s: flag --%s does not apply", cmd.name(), name)
		}
	}
	if len(args) < cmd.min || (cmd.max >= 0 && len(args) > cmd.max) {
		return hint("usage: distkit %s %s", cmd.name(), cmd.args)
	}
	if c.o.quoted {
		if err := unquoteArgs(cmd, args, &c.o.prefix); err != nil {
			return err
		}
	}
	if c.o.timeout <= 0 {
		return usageErr("--timeout %v must be positive", c.o.timeout)
	}
	if _, err := keyspace.Prefix(c.o.prefix); err != nil || c.o.prefix == "" {
		return usageErr("--prefix %q: must be 1 to %d bytes", c.o.prefix, distkit.MaxKeyLen)
	}
	if cmd.check != nil {
		if err := cmd.check(c, args); err != nil {
			return err
		}
	}
	if cmd.offline {
		return cmd.run(ctx, c, args)
	}
	if c.o.url == "" {
		c.o.url = e.getenv("DISTKIT_URL")
	}
	if c.o.url == "" {
		c.o.url = defaultURL
	}
	c.base = ctx
	defer func() {
		for _, cancel := range c.cancels {
			cancel()
		}
	}()
	ctx = c.withTimeout()
	if c.conn, err = dial(ctx, c.o.url); err != nil {
		return err
	}
	defer c.conn.close()
	return cmd.run(ctx, c, args)
}

func (cmd *command) name() string { return strings.TrimSpace(cmd.noun + " " + cmd.verb) }

// lookup finds the command named by the first positional arguments.
func lookup(pos []string) (*command, []string, error) {
	noun := pos[0]
	var verbs []string
	for i := range commands {
		cmd := &commands[i]
		if cmd.noun != noun {
			continue
		}
		if cmd.verb == "" {
			return cmd, pos[1:], nil
		}
		verbs = append(verbs, cmd.verb)
		if len(pos) > 1 && pos[1] == cmd.verb {
			return cmd, pos[2:], nil
		}
	}
	switch {
	case verbs == nil:
		return nil, nil, hint("unknown command %q", noun)
	case len(pos) == 1:
		return nil, nil, hint("%s: missing verb (one of: %s)", noun, strings.Join(verbs, ", "))
	}
	return nil, nil, hint("%s: unknown verb %q (one of: %s)", noun, pos[1], strings.Join(verbs, ", "))
}

// unquoteArgs decodes, for --quoted, the arguments (and the prefix) given
// in the Go-quoted form the tables show ("job\x00"), so that any byte,
// NUL included, can be addressed; an argument not starting with '"' is
// taken as it is (a table shows such strings unquoted). counter set's
// VALUE is a number, never quoted.
func unquoteArgs(cmd *command, args []string, prefix *string) error {
	unquote := func(what, s string) (string, error) {
		if !strings.HasPrefix(s, `"`) {
			return s, nil
		}
		u, err := strconv.Unquote(s)
		if err != nil {
			return "", usageErr("--quoted: %s %s is not a Go-quoted string", what, s)
		}
		return u, nil
	}
	var err error
	if *prefix, err = unquote("--prefix", *prefix); err != nil {
		return err
	}
	for i, a := range args {
		if cmd.noun == "counter" && cmd.verb == "set" && i == 1 {
			continue
		}
		if args[i], err = unquote("argument", a); err != nil {
			return err
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// parseArgs lets flags appear anywhere: it separates them from positional
// arguments (which may start with '-' only after "--", except negative
// numbers) and parses them with fs.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' || isNumber(a) {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return pos, nil
}

func isNumber(s string) bool {
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// checkKeys checks that every argument is a valid key (or name) as the
// library checks it.
func checkKeys(what string) func(*cli, []string) error {
	return func(_ *cli, args []string) error {
		for _, k := range args {
			if err := distkit.ValidateKey(what, k); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
		}
		return nil
	}
}

// checkPattern checks an optional PATTERN.
func checkPattern(_ *cli, args []string) error {
	if len(args) == 1 {
		if _, err := compileGlob(args[0]); err != nil {
			return usageErr("PATTERN %q: %v", args[0], err)
		}
	}
	return nil
}

// patternArg returns the PATTERN argument ("*" when absent), checked already.
func patternArg(args []string) (string, glob) {
	p := "*"
	if len(args) == 1 {
		p = args[0]
	}
	g, _ := compileGlob(p)
	return p, g
}
