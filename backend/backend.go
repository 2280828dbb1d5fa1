package backend

import (
	"context"
	"time"
)

// Backend is what every primitive talks to. See the package documentation
// for the contract each method must honour and what each error class means.
type Backend interface {
	// EvalScript runs s atomically over keys (all in one Cluster hash slot)
	// with args, in one round trip in the common case.
	EvalScript(ctx context.Context, s Script, keys []string, args ...string) (Value, error)
	// EvalScripts sends several independent script calls in as few round
	// trips as the driver can. Each call is atomic on its own; results keep
	// input order and carry their own error.
	EvalScripts(ctx context.Context, calls []Call) []Result
	// Heartbeat marks member alive in group (a sorted set keyed by expiry)
	// until server-now + ttl.
	Heartbeat(ctx context.Context, group, member string, ttl time.Duration) error
	// AcquireLease sets key to owner for ttl when key is free or already
	// held by owner (refreshing the ttl); it reports whether owner now holds it.
	AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// RenewLease resets the ttl of key when owner holds it; it reports
	// whether it did.
	RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// ReleaseLease deletes key when owner holds it; it reports whether it did.
	ReleaseLease(ctx context.Context, key, owner string) (bool, error)
	// Close releases what the driver opened itself. Later calls fail with
	// ErrClosed (which also matches ErrNotApplied).
	Close() error
}

// Script is one atomic operation a primitive asks a backend to run: Lua
// source for Redis, identified by its SHA-1 for EVALSHA. Primitives declare
// their scripts with driver.NewScript, which also carries the Go twin the
// memory backend runs. Users never build one.
type Script interface {
	// Name identifies the script in errors, logs and traces.
	Name() string
	// Source is the Lua source.
	Source() string
	// SHA is the hex SHA-1 of Source, as EVALSHA expects.
	SHA() string
}

// Call is one script invocation of a batch.
type Call struct {
	Script Script
	Keys   []string
	Args   []string
}

// Result is the outcome of one Call of a batch.
type Result struct {
	Value Value
	Err   error
}

// Notifier is an optional capability: publish-and-subscribe on named
// channels, used by locks to wake waiters on release. Scripts publish with
// redis.call('PUBLISH', channel, msg) (Store.Publish in Go).
type Notifier interface {
	// Subscribe returns a channel that receives a value (coalesced: at most
	// one pending) each time a message is published on channel, and a
	// function that unsubscribes and releases resources. Notifications are
	// best effort: a subscriber must tolerate a lost one.
	Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error)
}

// Replicator is an optional capability: running a script and then, on the
// same connection and in the same round trip, Redis's WAIT, so that a
// primitive learns how many replicas acknowledged what the script wrote
// (locks use it for Options.MinReplicas). Both Redis drivers implement it;
// the memory backend, which has no replicas, does not.
type Replicator interface {
	// EvalScriptWait runs s as EvalScript does, then WAIT replicas
	// timeout on the connection that ran it, and returns the script's value
	// with the number of replicas that acknowledged every write made on
	// that connection so far (at most the number of replicas the server
	// has). replicas must be positive and timeout at least 1 ms (WAIT 0
	// would block forever); the call's ctx must outlast timeout. The error
	// classes are EvalScript's; when the script fails, acked is 0.
	EvalScriptWait(ctx context.Context, s Script, keys, args []string, replicas int, timeout time.Duration) (v Value, acked int, err error)
}

// Clock tells time. The memory backend takes its server time from one;
// primitives use one for client-side timing. SystemClock is the default.
type Clock interface {
	Now() time.Time
}

// SystemClock is the Clock of the operating system.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
