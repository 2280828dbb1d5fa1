package rueidis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	rd "github.com/redis/rueidis"

	"github.com/distkit-go/distkit/backend"
	dkdriver "github.com/distkit-go/distkit/backend/driver"
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

// Keys in different Cluster slots are still refused before anything is
// sent (the builder's panic), as ErrNotApplied.
func TestReview11_CrossSlotStillNotApplied(t *testing.T) {
	c, err := rd.NewClient(rd.ClientOption{InitAddress: env.Cluster(t).Addrs(), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := rueidis.New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.EvalScript(context.Background(), r11Echo, []string{"a", "b"})
	if !errors.Is(err, backend.ErrNotApplied) {
		t.Fatalf("cross-slot keys: %v, want ErrNotApplied", err)
	}
}

var r11Echo = dkdriver.NewScript("r11-echo", `return 1`, func(dkdriver.Store, []string, []string) (backend.Value, error) {
	return backend.Int(1), nil
})
