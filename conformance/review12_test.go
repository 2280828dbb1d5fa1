package conformance_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/conformance"
)

// thirdParty stands for a driver written outside distkit with only its
// exported API: it holds its connection (here a memory client) in an
// unexported field, so nothing of the memory backend leaks through
// embedding, and implements backend.Backend method by method.
type thirdParty struct{ conn *memory.Backend }

func (d *thirdParty) EvalScript(ctx context.Context, s backend.Script, keys []string, args ...string) (backend.Value, error) {
	return d.conn.EvalScript(ctx, s, keys, args...)
}
func (d *thirdParty) EvalScripts(ctx context.Context, calls []backend.Call) []backend.Result {
	return d.conn.EvalScripts(ctx, calls)
}
func (d *thirdParty) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) error {
	return d.conn.Heartbeat(ctx, group, member, ttl)
}
func (d *thirdParty) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return d.conn.AcquireLease(ctx, key, owner, ttl)
}
func (d *thirdParty) RenewLease(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	return d.conn.RenewLease(ctx, key, owner, ttl)
}
func (d *thirdParty) ReleaseLease(ctx context.Context, key, owner string) (bool, error) {
	return d.conn.ReleaseLease(ctx, key, owner)
}
func (d *thirdParty) Close() error { return d.conn.Close() }

// thirdPartyNotifier adds the optional backend.Notifier.
type thirdPartyNotifier struct{ thirdParty }

func (d *thirdPartyNotifier) Subscribe(ctx context.Context, channel string) (<-chan struct{}, func(), error) {
	return d.conn.Subscribe(ctx, channel)
}

type thirdPartyHarness struct {
	server   *memory.Backend
	notifier bool
	fake     bool
}

func (h *thirdPartyHarness) NewBackend(*testing.T) backend.Backend {
	d := thirdParty{conn: h.server.Connect()}
	if h.notifier {
		return &thirdPartyNotifier{d}
	}
	return &d
}

func (h *thirdPartyHarness) Wait(_ *testing.T, d time.Duration) {
	if h.fake {
		h.server.Advance(d)
		return
	}
	time.Sleep(d + 20*time.Millisecond)
}

// fakeTimeHarness declares, as the Harness documentation says, that server
// time moves only with Wait.
type fakeTimeHarness struct{ *thirdPartyHarness }

func (fakeTimeHarness) FakeTime() bool { return true }

// A driver written against the exported API only, without the optional
// Notifier (locks fall back to polling), runs the whole suite. (The
// package example covers a driver that embeds its connection and has the
// Notifier; a real-time harness behaves the same, at twice the duration.)
func TestReview12_ThirdPartyDriverRunsWholeSuite(t *testing.T) {
	nh := func(*testing.T) conformance.Harness {
		return fakeTimeHarness{&thirdPartyHarness{server: memory.New(memory.Options{}), fake: true}}
	}
	conformance.RunBackend(t, nh)
	conformance.RunPrimitives(t, nh)
	conformance.RunParity(t, conformance.MemoryHarness, nh)
}
