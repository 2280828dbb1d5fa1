package backend

import (
	"errors"
	"regexp"
	"strings"
)

// Error classes every driver reports. Match them with errors.Is.
var (
	// ErrNotApplied means the operation certainly did not execute; a retry
	// is always safe.
	ErrNotApplied = errors.New("distkit: operation not applied")
	// ErrIndeterminate means the operation may or may not have executed
	// (timeout, connection lost after the request was sent).
	ErrIndeterminate = errors.New("distkit: operation outcome indeterminate")
	// ErrScript means a script ran and raised an error; see ScriptError.
	ErrScript = errors.New("distkit: script error")
	// ErrClosed means the backend (or the primitive) was closed. A call on a
	// closed backend fails with an error matching both ErrClosed and
	// ErrNotApplied.
	ErrClosed = errors.New("distkit: closed")
)

// ScriptError is a runtime error raised by a script, with the server's
// message. It matches ErrScript.
type ScriptError struct {
	Script string // the Script's name
	Msg    string // the message as the server (or the Go implementation) gave it
}

func (e *ScriptError) Error() string {
	return "distkit: script " + e.Script + ": " + e.Msg
}

// Is reports whether target is ErrScript.
func (e *ScriptError) Is(target error) bool { return target == ErrScript }

// Code returns the first word of the message (for example "DKOVERFLOW" or
// "WRONGTYPE"), which scripts use as a machine-readable error code.
func (e *ScriptError) Code() string {
	code, _, _ := strings.Cut(e.Msg, " ")
	return code
}

// classified joins a class sentinel with the underlying cause so that both
// errors.Is(err, class) and errors.Is(err, cause) hold.
type classified struct {
	class error
	cause error
}

func (e *classified) Error() string { return e.class.Error() + ": " + e.cause.Error() }
func (e *classified) Unwrap() []error {
	return []error{e.class, e.cause}
}

// NotApplied wraps cause so that it matches ErrNotApplied (and still cause).
func NotApplied(cause error) error {
	if cause == nil || errors.Is(cause, ErrNotApplied) {
		return cause
	}
	return &classified{class: ErrNotApplied, cause: cause}
}

// Indeterminate wraps cause so that it matches ErrIndeterminate (and still cause).
func Indeterminate(cause error) error {
	if cause == nil || errors.Is(cause, ErrIndeterminate) {
		return cause
	}
	return &classified{class: ErrIndeterminate, cause: cause}
}

// refusedBeforeRun lists error-reply codes with which Redis refuses a command
// before executing any of it.
var refusedBeforeRun = map[string]bool{
	"NOSCRIPT": true, "MOVED": true, "ASK": true, "TRYAGAIN": true,
	"CLUSTERDOWN": true, "CROSSSLOT": true, "LOADING": true, "READONLY": true,
	"MASTERDOWN": true, "NOREPLICAS": true, "BUSY": true, "NOAUTH": true,
	"NOPERM": true, "WRONGPASS": true,
}

// ClassifyReply turns an error reply of the server to a script call into the
// right class: ErrNotApplied when the server refused the command before
// running it, a *ScriptError (ErrScript) otherwise. Drivers call it.
func ClassifyReply(script, msg string) error {
	msg = normalizeScriptError(msg)
	code, _, _ := strings.Cut(msg, " ")
	if refusedBeforeRun[code] {
		return NotApplied(&ScriptError{Script: script, Msg: msg})
	}
	return &ScriptError{Script: script, Msg: msg}
}

var (
	// Older Redis and Lua emulators put the error of a redis.call raised in
	// a script behind a location: "ERR Error running script (call to
	// f_…): @user_script:3: WRONGTYPE …".
	scriptErrHead = regexp.MustCompile(`^(?:ERR )?Error (?:compiling|running) script \([^)]*\): (?:@user_script)?:\d+: `)
	// …and context after it: " script: <sha>, on @user_script:3." (Redis
	// 7) or a Lua stack traceback (emulators).
	scriptErrTail = regexp.MustCompile(`(?: script: [0-9a-f]+, on @user_script:\d+\.| stack traceback:.*)$`)
)

// normalizeScriptError strips what servers wrap around an error raised in
// a script, so that the message starts with its code on every server.
func normalizeScriptError(msg string) string {
	msg = scriptErrHead.ReplaceAllString(msg, "")
	return strings.TrimSpace(scriptErrTail.ReplaceAllString(msg, ""))
}
