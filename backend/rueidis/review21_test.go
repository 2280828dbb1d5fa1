package rueidis_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/distkit-go/distkit/backend"
	"github.com/distkit-go/distkit/backend/rueidis"
)

// Review 21: max_flush_delay values that cannot be what the user meant are
// refused with an error naming the parameter: a delay the write loop would
// sleep after every flush under concurrency that is far above any round
// trip ("1h", "2s": every concurrent call stalls that long, a unit typo
// such as "20ms" for "20us" makes the client 1000× slower), and the
// parameter given twice (before, the first silently won).
func TestReview21_FlushDelayBadValuesRefused(t *testing.T) {
	for _, q := range []string{
		"?max_flush_delay=1h",
		"?max_flush_delay=2s",
		"?max_flush_delay=20ms",
		"?max_flush_delay=20us&max_flush_delay=1ms",
	} {
		_, err := rueidis.URLOptions("redis://127.0.0.1:1/0" + q)
		if !errors.Is(err, backend.ErrInvalidOption) || !strings.Contains(err.Error(), "max_flush_delay") {
			t.Errorf("%q: %v, want ErrInvalidOption naming max_flush_delay", q, err)
		}
	}
	for _, q := range []string{"?max_flush_delay=0", "?max_flush_delay=100us", "?max_flush_delay=1ms"} {
		if _, err := rueidis.URLOptions("redis://127.0.0.1:1/0" + q); err != nil {
			t.Errorf("%q: %v", q, err)
		}
	}
}
