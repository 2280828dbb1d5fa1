package rueidis_test

import (
	"errors"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
)

// FromURL gives its client MaxFlushDelay = DefaultMaxFlushDelay unless the
// URL sets max_flush_delay, and refuses a bad one.
func TestFromURLFlushDelay(t *testing.T) {
	s := env.Server(t)
	for q, want := range map[string]time.Duration{
		"":                                   rueidis.DefaultMaxFlushDelay,
		"?max_flush_delay=0":                 0,
		"?max_flush_delay=50us":              50 * time.Microsecond,
		"?client_name=x&max_flush_delay=1ms": time.Millisecond,
	} {
		opt, err := rueidis.URLOptions("redis://" + s.Addr + "/0" + q)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		if opt.MaxFlushDelay != want {
			t.Errorf("%q: MaxFlushDelay %v, want %v", q, opt.MaxFlushDelay, want)
		}
		b, err := rueidis.FromURL("redis://" + s.Addr + "/0" + q)
		if err != nil {
			t.Fatalf("%q: %v", q, err)
		}
		if _, err := b.EvalScript(t.Context(), r11Witness, []string{"{fd}:k"}); err != nil {
			t.Errorf("%q: %v", q, err)
		}
		b.Close()
	}
	for _, q := range []string{"?max_flush_delay=soon", "?max_flush_delay=-1ms"} {
		if _, err := rueidis.FromURL("redis://" + s.Addr + q); !errors.Is(err, backend.ErrInvalidOption) {
			t.Errorf("%q: %v, want ErrInvalidOption", q, err)
		}
	}
}
