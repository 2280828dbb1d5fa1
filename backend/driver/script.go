package driver

import (
	"crypto/sha1"
	"encoding/hex"

	"github.com/distkit-go/distkit/backend"
)

// GoFunc is the pure-Go implementation of a Script, run by the memory
// backend. It must have exactly the effects and result of the Lua source.
// An error it returns is reported as a backend.ScriptError with
// err.Error() as the message, as redis.error_reply would be.
type GoFunc func(st Store, keys, args []string) (backend.Value, error)

// Script is one atomic operation, declared once next to the primitive that
// uses it. It carries the Lua source run by Redis drivers and the Go
// implementation run by the memory backend; the conformance suite proves the
// two agree. Scripts must declare every key they touch in KEYS and read time
// only from the server (redis.call('TIME') / Store.Now).
//
// *Script implements backend.Script.
type Script struct {
	name string
	src  string
	sha  string
	fn   GoFunc
}

var _ backend.Script = (*Script)(nil)

// NewScript declares a script. name appears in errors; src is Lua; fn is
// the Go twin.
func NewScript(name, src string, fn GoFunc) *Script {
	sum := sha1.Sum([]byte(src))
	return &Script{name: name, src: src, sha: hex.EncodeToString(sum[:]), fn: fn}
}

// Name is the script's name.
func (s *Script) Name() string { return s.name }

// Source is the Lua source.
func (s *Script) Source() string { return s.src }

// SHA is the hex SHA-1 of the source, as EVALSHA expects.
func (s *Script) SHA() string { return s.sha }

// Run executes the Go implementation against st. Errors returned by the Go
// function become backend.ScriptError.
func (s *Script) Run(st Store, keys, args []string) (backend.Value, error) {
	v, err := s.fn(st, keys, args)
	if err != nil {
		if _, ok := err.(*backend.ScriptError); !ok {
			err = &backend.ScriptError{Script: s.name, Msg: err.Error()}
		}
		return backend.Value{}, err
	}
	return v, nil
}

// Runner is a backend.Script that also has a Go implementation; the memory
// backend runs scripts through it.
type Runner interface {
	backend.Script
	Run(st Store, keys, args []string) (backend.Value, error)
}
