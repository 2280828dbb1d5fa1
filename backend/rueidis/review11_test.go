package rueidis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
	"github.com/distkit-go/distkit/primitives/lock"
)

// wrapped is how hooks and instrumentation wrap a rueidis client (for
// example rueidishook.WithHook): a wrapper of a nil client is a nil client
// all the same (issue 11 item 5).
type wrapped struct{ rd.Client }

func TestReview11_NewRefusesWrappedNilClient(t *testing.T) {
	for name, c := range map[string]rd.Client{"*wrapper": &wrapped{}, "wrapper": wrapped{}} {
		b, err := rueidis.New(c)
		if errors.Is(err, backend.ErrInvalidOption) {
			continue
		}
		if err != nil {
			t.Errorf("New(%s of nil): %v, want ErrInvalidOption", name, err)
			continue
		}
		m, err := lock.NewMutex(b, "r11-nil", lock.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err = m.Lock(ctx)
		cancel()
		t.Errorf("New(%s of nil) accepted the client; Mutex.Lock then: %v", name, err)
		b.Close()
	}
}
