package httplimit_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/distkit-go/distkit/internal/redistest"
)

var env redistest.Env

func TestMain(m *testing.M) {
	code := m.Run()
	env.Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
