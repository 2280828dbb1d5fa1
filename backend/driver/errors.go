package driver

import (
	"errors"
	"regexp"
	"strings"

	"github.com/distkit-go/distkit/backend"
)

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

// NotApplied wraps cause so that it matches backend.ErrNotApplied (and still cause).
func NotApplied(cause error) error {
	if cause == nil || errors.Is(cause, backend.ErrNotApplied) {
		return cause
	}
	return &classified{class: backend.ErrNotApplied, cause: cause}
}

// Indeterminate wraps cause so that it matches backend.ErrIndeterminate (and still cause).
func Indeterminate(cause error) error {
	if cause == nil || errors.Is(cause, backend.ErrIndeterminate) {
		return cause
	}
	return &classified{class: backend.ErrIndeterminate, cause: cause}
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
// right class: backend.ErrNotApplied when the server refused the command before
// running it, a backend.ScriptError (ErrScript) otherwise. Drivers call it.
func ClassifyReply(script, msg string) error {
	msg = normalizeScriptError(msg)
	code, _, _ := strings.Cut(msg, " ")
	if refusedBeforeRun[code] {
		return NotApplied(&backend.ScriptError{Script: script, Msg: msg})
	}
	return &backend.ScriptError{Script: script, Msg: msg}
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
