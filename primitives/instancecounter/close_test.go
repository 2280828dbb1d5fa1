package instancecounter_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit-go/distkit/backend/memory"
	"github.com/distkit-go/distkit/primitives/instancecounter"
)

// Close returns within its context while the background registration or
// heartbeat hangs on a backend that does not answer; the constructors do
// no I/O, so they do not hang either.
func TestCloseBoundedWhileBackendHangs(t *testing.T) {
	for _, kind := range []string{"Strict", "Lax"} {
		t.Run(kind, func(t *testing.T) {
			b := memory.New(memory.Options{})
			b.Latency(time.Hour)
			start := time.Now()
			var c instancecounter.Counter
			var err error
			if kind == "Strict" {
				c, err = instancecounter.NewStrict(b, instancecounter.Options{})
			} else {
				c, err = instancecounter.NewLax(b, instancecounter.Options{})
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("New%s took %v on a hung backend", kind, d)
			}
			time.Sleep(20 * time.Millisecond) // the registration is now waiting on the backend
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			start = time.Now()
			err = c.Close(ctx)
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Close took %v with a 100ms context", d)
			}
			if err == nil {
				t.Fatal("Close reported success although the slices could not be removed")
			}
		})
	}
}
