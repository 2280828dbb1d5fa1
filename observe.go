package distkit

import "time"

// EventKind names a state change of a primitive's background work (a Lax
// flush loop, an instance heartbeat, a lock's lease renewal, a Hybrid
// limiter's sync). Each kind is reported once per transition, never once
// per call: a loop that keeps failing reports FlushFailing once, then
// FlushRecovered once when it succeeds again.
type EventKind int

// Event kinds. Their String form ("flush_failing", ...) is the event name
// in log lines.
const (
	// FlushFailing: a background flush failed, or the backend refused a
	// key's delta (the key is in the Lax's Failed, for example with
	// ErrOverflow), after the previous flush succeeded (the deltas stay
	// pending and are retried). Err says why.
	FlushFailing EventKind = iota + 1
	// FlushRecovered: a flush succeeded, with no key left refused, after
	// FlushFailing.
	FlushRecovered
	// HeartbeatFailing: an instance heartbeat failed after the previous
	// one succeeded. Err says why; the instance is declared dead by the
	// others if it keeps failing for DeadAfter.
	HeartbeatFailing
	// HeartbeatRecovered: a heartbeat succeeded after HeartbeatFailing.
	HeartbeatRecovered
	// InstanceDead: this instance found that the backend no longer had it
	// registered (declared dead after missing heartbeats for DeadAfter, or
	// the data was lost); it rejoins at once.
	InstanceDead
	// InstanceRejoined: this instance registered again and contributed its
	// slices back, after InstanceDead (or a registration lost otherwise).
	InstanceRejoined
	// LeaseRenewFailing: the lease renewal of a held lock, semaphore permit
	// or leader's term failed (it is retried until the lease's confirmed
	// expiry). Err says why.
	LeaseRenewFailing
	// LeaseRenewRecovered: a renewal succeeded after LeaseRenewFailing.
	LeaseRenewRecovered
	// LeaseLost: the lease of a held lock, semaphore permit or leader's
	// term was lost (renewal refused, expiry passed without a confirmed
	// renewal, or the Guard, Permit or Leadership was collected without
	// Release or Resign). Err is the cause (it matches ErrLeaseLost).
	LeaseLost
	// SyncDegraded: a Hybrid limiter's background sync failed for some
	// keys after the previous one succeeded; their decisions are degraded
	// (Decision.Degraded) until a sync succeeds. Err says why.
	SyncDegraded
	// SyncHealthy: a sync succeeded for every key, with no key left in
	// quarantine (rejected by the server, waiting for its retry), after
	// SyncDegraded.
	SyncHealthy
	// WatchFailing: the background reads of an Election.Observe loop
	// failed after the previous one succeeded (they are retried every
	// RetryInterval; terms go unreported meanwhile). Err says why.
	WatchFailing
	// WatchRecovered: a read of that loop succeeded after WatchFailing.
	WatchRecovered
)

var eventNames = [...]string{
	FlushFailing: "flush_failing", FlushRecovered: "flush_recovered",
	HeartbeatFailing: "heartbeat_failing", HeartbeatRecovered: "heartbeat_recovered",
	InstanceDead: "instance_dead", InstanceRejoined: "instance_rejoined",
	LeaseRenewFailing: "lease_renew_failing", LeaseRenewRecovered: "lease_renew_recovered",
	LeaseLost: "lease_lost", SyncDegraded: "sync_degraded", SyncHealthy: "sync_healthy",
	WatchFailing: "watch_failing", WatchRecovered: "watch_recovered",
}

// String returns the event's name, such as "flush_failing".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// Failing reports whether the event reports a failure (logged at level
// Warn) rather than a recovery (logged at Info).
func (k EventKind) Failing() bool {
	switch k {
	case FlushFailing, HeartbeatFailing, InstanceDead, LeaseRenewFailing, LeaseLost, SyncDegraded, WatchFailing:
		return true
	}
	return false
}

// Event is one state change of a primitive's background work, as given to
// an Observer.
type Event struct {
	Kind EventKind
	// Primitive is "counter", "instancecounter", "lock", "semaphore",
	// "election" or "ratelimit".
	Primitive string
	// Name is what the primitive is about: the prefix of a counter,
	// instance counter or limiter; the name of a lock, semaphore or
	// election.
	Name string
	// Instance is the instance id of an instance counter's events.
	Instance string
	// Err is the cause of a failing event, nil for a recovery.
	Err error
	// Time is when the primitive noticed the change (local clock).
	Time time.Time
}

// Observer is told every state change of the background work of the
// primitives whose Options name it. Observe is called synchronously from
// the goroutine that noticed the change (usually the primitive's
// background goroutine, possibly while it holds the primitive's flush
// slot): it must return quickly, must not block and must not call the
// primitive that reports the event (hand the event to a channel or a
// goroutine of yours for that). A panic in Observe is recovered (and
// logged at Error by the primitive's Logger, if any): the primitive keeps
// working.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }
