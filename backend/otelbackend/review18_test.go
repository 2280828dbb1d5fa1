package otelbackend_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/driver"
	"github.com/distkit-go/distkit/backend/otelbackend"
	"github.com/distkit-go/distkit/primitives/counter"
)

// TestReview18_OutcomeFollowsErrorClass: the outcome class is the error
// class the driver gave. A call cancelled while in flight is
// ErrIndeterminate (rueidis and a go-redis pipeline wrap the context's
// error as such: it may have run), not "not_applied"; a reply the server
// refused before running the script (READONLY, BUSY, NOSCRIPT, MOVED: a
// ScriptError that also matches ErrNotApplied, which the primitives retry
// as never run) is "not_applied", not "script_error" (ErrScript means a
// script ran and raised an error).
func TestReview18_OutcomeFollowsErrorClass(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, otelbackend.OutcomeOK},
		{"cancelled in flight", driver.Indeterminate(context.Canceled), otelbackend.OutcomeIndeterminate},
		{"deadline in flight", driver.Indeterminate(context.DeadlineExceeded), otelbackend.OutcomeIndeterminate},
		{"wrapped cancelled in flight", fmt.Errorf("counter: flush: %w", driver.Indeterminate(context.Canceled)), otelbackend.OutcomeIndeterminate},
		{"cancelled before sending", driver.NotApplied(context.Canceled), otelbackend.OutcomeNotApplied},
		{"bare cancel", context.Canceled, otelbackend.OutcomeNotApplied},
		{"READONLY", driver.ClassifyReply("counter-inc", "READONLY You can't write against a read only replica."), otelbackend.OutcomeNotApplied},
		{"BUSY", driver.ClassifyReply("counter-inc", "BUSY Redis is busy running a script."), otelbackend.OutcomeNotApplied},
		{"script raised", driver.ClassifyReply("counter-inc", "DKOVERFLOW"), otelbackend.OutcomeScriptError},
		{"closed", driver.NotApplied(backend.ErrClosed), otelbackend.OutcomeNotApplied},
		{"lost reply", driver.Indeterminate(errors.New("EOF")), otelbackend.OutcomeIndeterminate},
	} {
		if got := otelbackend.Outcome(tc.err); got != tc.want {
			t.Errorf("%s: Outcome(%v) = %q, want %q", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestReview18_WrapNilIsRefused: bad input gets a clear error, never a
// panic. Wrap(nil) used to return a non-nil wrapper that every primitive
// constructor accepted (their "backend is nil" check saw the wrapper) and
// whose first call panicked with a nil dereference.
func TestReview18_WrapNilIsRefused(t *testing.T) {
	w := otelbackend.Wrap(nil, otelbackend.Options{})
	c, err := counter.NewStrict(w, counter.Options{Prefix: "r18"})
	if err == nil {
		defer func() {
			if p := recover(); p != nil {
				t.Errorf("NewStrict accepted Wrap(nil); Inc panicked: %v", p)
			}
		}()
		_, err := c.Inc(context.Background(), "a", 1)
		t.Errorf("NewStrict accepted Wrap(nil); Inc: %v", err)
		return
	}
	if !errors.Is(err, backend.ErrInvalidOption) {
		t.Errorf("NewStrict(Wrap(nil)): %v, want ErrInvalidOption", err)
	}
}
