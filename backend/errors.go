package backend

import (
	"errors"
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
	// ErrInvalidOption means an option or argument is out of range (for a
	// driver: a nil client, or a client configured in a way distkit cannot
	// drive safely). Nothing was sent to the server. The root package
	// re-exports it as distkit.ErrInvalidOption.
	ErrInvalidOption = errors.New("distkit: invalid option")
)

// ScriptError is a runtime error raised by a script, with the server's
// message. It matches ErrScript.
type ScriptError struct {
	Script string // the Script's name
	Msg    string // the message as the server (or the Go implementation) gave it
}

// Error returns the script's name and the server's message.
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
